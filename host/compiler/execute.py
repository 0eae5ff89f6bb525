"""The token-level executor: runs a SAM graph on the overlay primitives' own Python reference
models (the ones the RTL tests check the hardware against), one whole stream at a time.

Each node reads its input streams complete and writes its output streams complete; the graph's
node order is a topological order. With ``trace=True`` every stream is kept, by its name
(``"n3.crd"``: node 3's output ``crd``), for teaching and debugging.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fiberflow.host.compiler.graph import Graph, Stream
from fiberflow.host.formats import COMPRESSED
from fiberflow.overlay import alu, array, crddrop, join, reduce, repeat, scanner, spacc, writer
from fiberflow.overlay.alu import Op
from fiberflow.overlay.stream import DONE, Empty, Token, Val


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
    """What the writers wrote: per result level its (seg, crd), and the values."""

    levels: tuple[tuple[np.ndarray, np.ndarray], ...]
    words: np.ndarray
    tokens: int  # tokens that crossed all streams
    trace: dict[str, list[Token]] | None


def run(graph: Graph, operands: dict[str, Operand], ops: Ops, sizes: dict[str, int],
        out_levels: tuple[int, ...], out_values: int, trace: bool = False) -> Written:  # fmt: skip
    """Run ``graph``; ``sizes`` gives each index's dimension (for the sparse accumulator)."""
    streams: dict[Stream, list[Token]] = {}
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
            out = {"val": reduce.model(ins["val"], ops.add, ops.identity)}
        elif n.kind == "spacc":
            c, v = spacc.model(ins["crd"], ins["val"], ops.add, size=max(1, sizes[p["index"]]))
            out = {"crd": c, "val": v}
        elif n.kind == "crddrop":
            o, i = crddrop.model(ins["outer"], ins["inner"])
            out = {"outer": o, "inner": i}
        elif n.kind == "write_compressed":
            written[n.id] = writer.model_compressed(ins["crd"])
            out = {}
        elif n.kind == "array_write":
            toks = ins["val"]
            written[n.id] = array.model_write(toks, sum(isinstance(t, Val) for t in toks))
            out = {}
        else:  # pragma: no cover - Graph.add accepts only the kinds above
            raise ValueError(n.kind)
        for port, toks in out.items():
            streams[Stream(n.id, port)] = toks
    levels = tuple(written[k] for k in out_levels)  # type: ignore[misc]
    words = written[out_values]
    assert isinstance(words, np.ndarray)
    return Written(
        levels,  # type: ignore[arg-type]
        words,
        sum(len(t) for t in streams.values()),
        {repr(s): t for s, t in streams.items()} if trace else None,
    )
