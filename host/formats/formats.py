"""TACO-style tensor format strings.

A format names one level kind per mode, in storage order: ``d`` (dense) or ``s`` (compressed:
a segment array and a coordinate array). An optional ``:`` suffix gives the mode ordering, i.e.
which logical mode is stored at each level::

    "ds"      CSR: rows dense, columns compressed
    "ss"      DCSR
    "ds:1,0"  CSC: level 0 stores mode 1 (columns), level 1 stores mode 0 (rows)
    "d"       a dense vector
    "sss"     CSF for a 3-D tensor
"""

from __future__ import annotations

from dataclasses import dataclass

from fiberflow.errors import FormatError

MAX_NDIM = 8
DENSE = "d"
COMPRESSED = "s"


@dataclass(frozen=True)
class Format:
    """A parsed format: ``levels[k]`` is the kind of storage level ``k`` and ``order[k]`` the
    logical mode that level stores."""

    levels: tuple[str, ...]
    order: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.levels)

    @classmethod
    def parse(cls, spec: str | Format, ndim: int | None = None) -> Format:
        """Parse ``spec``; when ``ndim`` is given, check that the format has that many modes."""
        if isinstance(spec, Format):
            fmt = spec
        else:
            if not isinstance(spec, str):
                raise FormatError(f"a format must be a string such as 'ds', not {spec!r}")
            kinds, _, ordering = spec.strip().partition(":")
            if not kinds or any(ch not in (DENSE, COMPRESSED) for ch in kinds):
                raise FormatError(
                    f"format {spec!r}: use one letter per mode, 'd' (dense) or 's' (compressed), "
                    "optionally followed by a mode ordering such as ':1,0'"
                )
            if len(kinds) > MAX_NDIM:
                raise FormatError(f"format {spec!r} has {len(kinds)} modes; at most {MAX_NDIM}")
            if ordering:
                try:
                    order = tuple(int(part) for part in ordering.split(","))
                except ValueError:
                    raise FormatError(
                        f"format {spec!r}: the mode ordering must be comma-separated integers, "
                        "e.g. 'ds:1,0'"
                    ) from None
            else:
                order = tuple(range(len(kinds)))
            if sorted(order) != list(range(len(kinds))):
                raise FormatError(
                    f"format {spec!r}: the mode ordering must be a permutation of "
                    f"0..{len(kinds) - 1}"
                )
            fmt = cls(tuple(kinds), order)
        if ndim is not None and fmt.ndim != ndim:
            raise FormatError(
                f"format {str(fmt)!r} describes {fmt.ndim} mode(s) but the tensor has {ndim}; "
                f"give one letter per mode, e.g. {default_sparse(ndim)!r}"
            )
        return fmt

    def __str__(self) -> str:
        text = "".join(self.levels)
        if self.order != tuple(range(self.ndim)):
            text += ":" + ",".join(str(m) for m in self.order)
        return text


def default_sparse(ndim: int) -> str:
    """The default compressed format of a given rank: CSR for matrices, CSF otherwise."""
    if ndim == 1:
        return "s"
    if ndim == 2:
        return "ds"
    return "s" * ndim


def default_dense(ndim: int) -> str:
    return "d" * ndim
