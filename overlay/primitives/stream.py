"""The overlay's one stream type: SAM tokens on LiteX valid/ready endpoints.

A token is a 32-bit data word plus a 2-bit kind (see ``docs/streams.md`` for the transfer rules):

======  =====  ============================================================
kind    code   data word
======  =====  ============================================================
VAL     0      the value, coordinate or reference (the stream's role says which)
STOP    1      the stop level n (S0, S1, ...)
DONE    2      0; the last token of a stream
EMPTY   3      0; an empty reference ("N" in SAM), emitted by the unioner
======  =====  ============================================================

In hardware a stream is a LiteX ``stream.Endpoint(TOKEN_LAYOUT)``; ``first``/``last`` are unused
(tied low), because stop tokens carry the nesting. In Python a token is a frozen dataclass
(:class:`Val`, :class:`Stop`, :class:`Done`, :class:`Empty`). Simulation harnesses pass tokens
as 64-bit words ``kind << 32 | data`` (:func:`encode` / :func:`decode`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Union

import numpy as np

DATA_WIDTH = 32
KIND_WIDTH = 2
TOKEN_LAYOUT = [("data", DATA_WIDTH), ("kind", KIND_WIDTH)]


class Kind(IntEnum):
    VAL = 0
    STOP = 1
    DONE = 2
    EMPTY = 3


@dataclass(frozen=True)
class Val:
    """A value, coordinate or reference: an unsigned 32-bit word (fp32 values as their bits)."""

    value: int

    def __repr__(self) -> str:
        return f"{self.value}"


@dataclass(frozen=True)
class Stop:
    """Stop token of level ``level``: ends a fiber (S0) and ``level`` enclosing fibers."""

    level: int

    def __repr__(self) -> str:
        return f"S{self.level}"


@dataclass(frozen=True)
class Done:
    """The last token of a stream."""

    def __repr__(self) -> str:
        return "D"


@dataclass(frozen=True)
class Empty:
    """An empty reference: the side of a union that has no element here."""

    def __repr__(self) -> str:
        return "N"


Token = Union[Val, Stop, Done, Empty]  # noqa: UP007 (isinstance-friendly alias)
DONE = Done()
EMPTY = Empty()


def encode(tok: Token) -> int:
    """Token -> 64-bit word ``kind << 32 | data``."""
    if isinstance(tok, Val):
        return int(tok.value) & 0xFFFFFFFF
    if isinstance(tok, Stop):
        return (Kind.STOP << 32) | tok.level
    if isinstance(tok, Done):
        return Kind.DONE << 32
    if isinstance(tok, Empty):
        return Kind.EMPTY << 32
    raise TypeError(f"a stream token must be Val, Stop, Done or Empty, not {tok!r}")


def decode(word: int) -> Token:
    """64-bit word -> token (inverse of :func:`encode`)."""
    word = int(word)
    kind, data = word >> 32, word & 0xFFFFFFFF
    if kind == Kind.VAL:
        return Val(data)
    if kind == Kind.STOP:
        return Stop(data)
    if kind == Kind.DONE:
        return DONE
    if kind == Kind.EMPTY:
        return EMPTY
    raise ValueError(f"not a token word: {word:#x} (kind {kind} is not 0..3)")


def encode_many(tokens: Iterable[Token]) -> np.ndarray:
    return np.array([encode(t) for t in tokens], dtype=np.uint64)


def decode_many(words: Sequence[int] | np.ndarray) -> list[Token]:
    return [decode(w) for w in words]


def parse(text: str) -> list[Token]:
    """Tokens from the notation the docs use: ``"1 2 S0 N D"`` (for tests and examples)."""
    out: list[Token] = []
    for word in text.split():
        if word == "D":
            out.append(DONE)
        elif word == "N":
            out.append(EMPTY)
        elif word[0] == "S":
            out.append(Stop(int(word[1:])))
        else:
            out.append(Val(int(word, 0)))
    return out


def fiber_tree_tokens(tree: object, depth: int | None = None) -> list[Token]:
    """The SAM token stream of a nested list of fibers, with stops and a final done.

    ``[[1, 2], [3]]`` -> ``1 2 S0 3 S1 D``; a flat list ``[1, 2]`` -> ``1 2 S0 D``. Every fiber
    at the innermost level ends with one stop; the stop that ends the last fiber of an enclosing
    fiber is raised by one level per enclosing fiber it also ends.
    """
    out: list[Token] = []

    def depth_of(t: object) -> int:
        if isinstance(t, list):
            inner = [depth_of(x) for x in t if isinstance(x, list)]
            return 1 + (max(inner) if inner else 0)
        return 0

    d = depth_of(tree) if depth is None else depth

    def walk(t: list, level: int) -> None:
        # level: this list's nesting level counted from the innermost (0 = innermost fibers).
        if level == 0:
            out.extend(Val(int(v)) for v in t)
            out.append(Stop(0))
            return
        for child in t:
            walk(child, level - 1)
        if t and isinstance(out[-1], Stop):
            out[-1] = Stop(out[-1].level + 1)
        else:
            out.append(Stop(level))

    if d == 0:
        raise ValueError("fiber_tree_tokens needs a list")
    walk(tree, d - 1)  # type: ignore[arg-type]
    out.append(DONE)
    return out
