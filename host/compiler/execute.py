"""The token-level executor: runs a SAM graph on the overlay primitives' own Python reference
models (the ones the RTL tests check the hardware against), one whole stream at a time.

Each node reads its input streams complete and writes its output streams complete; the graph's
node order is a topological order. With ``trace=True`` every stream is kept, by its name
(``"n3.crd"``: node 3's output ``crd``), for teaching and debugging.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fiberflow.errors import DeviceError, ToolchainError
from fiberflow.host.compiler.graph import Graph, Stream
from fiberflow.host.formats.formats import COMPRESSED
from fiberflow.overlay.primitives.ops import Op
from fiberflow.overlay.primitives.stream import DONE, Empty, Stop, Token, Val


@dataclass(frozen=True)
class Operand:
    """An operand as the executor reads it: per level, ``("d", size)`` or ``("s", pos,
    crd)``, and the values as 32-bit words."""

    levels: tuple[tuple, ...]
    words: np.ndarray  # uint32


@dataclass(frozen=True)
class Ops:
    """The semiring's ALU operations and identity for the run's dtype."""

    add: Op
    mul: Op
    sub: Op | None
    identity: int


@dataclass(frozen=True)
class Written:
    """What reached the writers: per result level its coordinate stream, and the values;
    and the streams asked for by ``keep``."""

    levels: tuple[list[Token], ...]
    values: list[Token]
    kept: tuple[list[Token], ...]
    tokens: int  # tokens that crossed all streams
    trace: dict[str, list[Token]] | None


def run(graph: Graph, operands: dict[str, Operand], ops: Ops, sizes: dict[str, int],
        out_levels: tuple[int, ...], out_values: int, keep: tuple[Stream, ...] = (),
        trace: bool = False) -> Written:  # fmt: skip
    """Run ``graph``; ``sizes`` gives each index's dimension (for the sparse accumulator)."""
    try:  # the models live beside their Migen code
        from fiberflow.overlay.primitives import (
            alu,
            array,
            crddrop,
            join,
            reduce,
            repeat,
            scanner,
            spacc,
        )
    except ImportError as e:
        raise ToolchainError(
            f"the token-level engine runs the primitives' reference models, which need "
            f"Migen ({e}): pip install 'fiberflow[hw]'; the named kernels' fast paths "
            "(engine='fast') do not"
        ) from None
    streams: dict[Stream, list[Token]] = {}
    held = 0  # tokens in all streams so far
    written: dict[int, object] = {}
    alu_op = {"add": ops.add, "mul": ops.mul, "sub": ops.sub}
    for n in graph.nodes:
        ins = {port: streams[s] for port, s in n.inputs.items()}
        p = n.params
        out: dict[str, list[Token]]
        if n.kind == "root":
            out = {"ref": [Val(0), DONE]}
        elif n.kind in ("scan_dense", "scan_compressed"):
            level = operands[p["tensor"]].levels[p["level"]]
            at = np.array([t.value for t in ins["ref"] if isinstance(t, Val)], np.int64)
            if level[0] == COMPRESSED:  # (the coordinates of every referenced fiber)
                seg = np.asarray(level[1], np.int64)
                scanned = int((seg[at + 1] - seg[at]).sum())
            else:  # (a dense level: every coordinate under every reference)
                scanned = len(at) * level[1]
            _budget(held + 2 * scanned, p["tensor"], p["level"], len(at), scanned)
            if level[0] == COMPRESSED:
                c, r = scanner.model_compressed(ins["ref"], level[1], level[2])
            else:
                c, r = scanner.model_dense(ins["ref"], level[1])
            out = {"crd": c, "ref": r}
        elif n.kind == "repeat_sig":
            out = {"sig": repeat.model_sig(ins["crd"])}
        elif n.kind == "repeater":
            out = {"ref": repeat.model(ins["ref"], ins["sig"])}
        elif n.kind in ("intersect", "union"):
            c, r0, r1 = join.model(ins["crd0"], ins["ref0"], ins["crd1"], ins["ref1"],
                                   n.kind == "union")  # fmt: skip
            out = {"crd": c, "ref0": r0, "ref1": r1}
        elif n.kind == "array_read":
            refs = ins["ref"]
            vals = array.model_read(refs, operands[p["tensor"]].words)
            if ops.identity:
                # A union's missing side reads the semiring's zero (the hardware reader gives
                # 0, which is plus_times's).
                vals = [Val(ops.identity) if isinstance(r, Empty) else v
                        for r, v in zip(refs, vals, strict=True)]  # fmt: skip
            out = {"val": vals}
        elif n.kind == "alu":
            op = alu_op[p["op"]]
            assert op is not None
            out = {"val": alu.model(ins["a"], ins["b"], op)}
        elif n.kind == "reduce":
            vals = reduce.model(ins["val"], ops.add, ops.identity)
            out = {"val": closing(ins["crd"], vals) if "crd" in ins else vals}
        elif n.kind == "spacc":
            c, v = spacc.model(ins["crd"], ins["val"], ops.add, size=max(1, sizes[p["index"]]))
            out = {"crd": c, "val": v}
        elif n.kind == "crddrop":
            o, i = crddrop.model(ins["outer"], ins["inner"])
            out = {"outer": o, "inner": i}
        elif n.kind in ("write_compressed", "array_write"):
            # What reaches a writer is kept as it is: the host builds the result from it with
            # the level above (levels()), which a writer alone cannot see.
            written[n.id] = ins["crd" if n.kind == "write_compressed" else "val"]
            out = {}
        else:  # pragma: no cover - Graph.add accepts only the kinds above
            raise ValueError(n.kind)
        for port, toks in out.items():
            streams[Stream(n.id, port)] = toks
            held += len(toks)
    return Written(
        tuple(written[k] for k in out_levels),  # type: ignore[misc]
        written[out_values],  # type: ignore[arg-type]
        tuple(streams[k] for k in keep),
        sum(len(t) for t in streams.values()),
        {repr(s): t for s, t in streams.items()} if trace else None,
    )


# Tokens the token-level run may hold at once (about 60 bytes each: some 1.5 GB). What can
# exceed it is a level scanned under many references (SAM co-iterates x with every row of A,
# whole when x is dense): refused before the scan, with what to do instead.
MAX_TOKENS = 25_000_000


def _budget(total: int, tensor: str, level: int, refs: int, scanned: int) -> None:
    if total > MAX_TOKENS:
        raise DeviceError(
            f"the token-level run would hold about {total:,} tokens, more than its "
            f"{MAX_TOKENS:,}: {tensor}'s level {level} is scanned under each of {refs:,} "
            f"references, {scanned:,} coordinates in all (an operand without the outer "
            f"indices is read again for each of their coordinates). Give {tensor} fewer "
            "stored entries, or run a kernel that has a fast path (docs/compiler.md)"
        )


def closing(crd: list[Token], vals: list[Token]) -> list[Token]:
    """``vals`` (a reducer's output) without the values it sent at stops that close no fiber.

    The reducer sends a value at every stop, and a stream cannot say whether a stop after a
    stop closes an empty fiber or none (an empty outer fiber's stop, passed down): the
    coordinates of the level the values belong to, ``crd``, can. A value facing one of
    their stops is such a one.
    """
    out: list[Token] = []
    q = 0
    for t in crd:
        if isinstance(t, Stop) and isinstance(vals[q], Val):
            q += 1
        v = vals[q]
        if isinstance(t, Val) != isinstance(v, Val) or isinstance(t, Stop) != isinstance(v, Stop):
            raise AssertionError(f"a reducer's output has {v!r} where {t!r} stands")
        out.append(v)
        q += 1
    return out


def levels(streams: tuple[list[Token], ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each result level's (seg, crd), from the coordinate streams that reached its writers.

    A level writer alone cannot tell "no fiber" from "one empty fiber" where a stop follows
    a stop: a scanner given no references and one given a reference to an empty fiber both
    send only the higher stop. The level above tells: where it has coordinates ``c1 .. cn``
    then a stop ``Sm``, the level below has their ``n`` fibers, the first ``n - 1`` ended by
    ``S0`` and the last by ``S(m+1)``; where it has a bare ``Sm``, the level below has a bare
    ``S(m+1)``.
    """
    out: list[tuple[np.ndarray, np.ndarray]] = []
    above: list[Token] | None = None
    for toks in streams:
        if above is None:  # the first level: the root's one fiber
            fibers = [[t.value for t in toks if isinstance(t, Val)]]
        else:
            fibers = []
            pos, run = 0, 0
            for t in above:
                if isinstance(t, Val):
                    run += 1
                    continue
                if not isinstance(t, Stop):
                    break
                for f in range(max(run, 1)):
                    fiber = []
                    while isinstance(toks[pos], Val):
                        fiber.append(toks[pos].value)
                        pos += 1
                    end = toks[pos]
                    pos += 1
                    want = 0 if f < run - 1 else t.level + 1
                    if not isinstance(end, Stop) or end.level != want or (run == 0 and fiber):
                        raise AssertionError(f"level {len(out)}: {end!r} where S{want} belongs")
                    if run:
                        fibers.append(fiber)
                run = 0
        seg = np.zeros(len(fibers) + 1, np.int64)
        np.cumsum([len(f) for f in fibers], out=seg[1:])
        out.append((seg, np.array([c for f in fibers for c in f], np.int64)))
        above = toks
    return out
