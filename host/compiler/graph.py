"""The SAM graph a compiled expression becomes: one node per primitive of the overlay
(``fiberflow.overlay``), joined by typed streams.

A node names its primitive by the overlay's registry name (``scan_compressed``, ``repeater``,
``intersect``, ...), so the graph says exactly which hardware blocks an expression needs. One
node is not a primitive: ``root``, the start of an operand's fiber tree (its single root
reference, then done). A stream that feeds several nodes stands for a fork in hardware.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class StreamType(Enum):
    CRD = "crd"  # coordinates
    REF = "ref"  # references (positions in an operand's next level or its values)
    VAL = "val"  # values (fp32 or int32 bit patterns)
    SIG = "sig"  # a repeater's signal


# node kind -> its outputs
OUTPUTS: dict[str, dict[str, StreamType]] = {
    "root": {"ref": StreamType.REF},
    "scan_dense": {"crd": StreamType.CRD, "ref": StreamType.REF},
    "scan_compressed": {"crd": StreamType.CRD, "ref": StreamType.REF},
    "repeat_sig": {"sig": StreamType.SIG},
    "repeater": {"ref": StreamType.REF},
    "intersect": {"crd": StreamType.CRD, "ref0": StreamType.REF, "ref1": StreamType.REF},
    "union": {"crd": StreamType.CRD, "ref0": StreamType.REF, "ref1": StreamType.REF},
    "alu": {"val": StreamType.VAL},
    "reduce": {"val": StreamType.VAL},
    "spacc": {"crd": StreamType.CRD, "val": StreamType.VAL},
    "crddrop": {"outer": StreamType.CRD, "inner": StreamType.CRD},
    "array_read": {"val": StreamType.VAL},
    "write_compressed": {},
    "array_write": {},
}

# node kind -> its block's name in overlay/primitives/registry.py, what ``fiberflow lint`` builds
# (None: not hardware)
BLOCKS: dict[str, str | None] = {
    kind: None if kind == "root" else "spacc64" if kind == "spacc" else kind for kind in OUTPUTS
}


@dataclass(frozen=True)
class Stream:
    """Output ``port`` of node ``node``."""

    node: int
    port: str

    def __repr__(self) -> str:
        return f"n{self.node}.{self.port}"


@dataclass
class Node:
    id: int
    kind: str
    inputs: dict[str, Stream]
    params: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def outputs(self) -> dict[str, StreamType]:
        return OUTPUTS[self.kind]


class Graph:
    """Nodes in the order they were added, which is an order they can run in."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []

    def add(self, kind: str, inputs: dict[str, Stream] | None = None, label: str = "",
            **params: Any) -> Node:  # fmt: skip
        if kind not in OUTPUTS:
            raise ValueError(f"no primitive {kind!r}")
        inputs = inputs or {}
        for s in inputs.values():
            if not (0 <= s.node < len(self.nodes)) or s.port not in self.nodes[s.node].outputs:
                raise ValueError(f"{kind}: no stream {s!r} to read")
        node = Node(len(self.nodes), kind, inputs, params, label)
        self.nodes.append(node)
        return node

    def type_of(self, s: Stream) -> StreamType:
        return self.nodes[s.node].outputs[s.port]

    def count(self) -> dict[str, int]:
        """How many nodes of each kind: the blocks a lane for this graph would need."""
        out: dict[str, int] = {}
        for n in self.nodes:
            out[n.kind] = out.get(n.kind, 0) + 1
        return out

    def to_dot(self) -> str:
        """The graph in Graphviz's dot language: nodes labelled with their primitive and what
        they work on, edges with the stream's type."""
        colours = {StreamType.CRD: "blue", StreamType.REF: "darkgreen",
                   StreamType.VAL: "red", StreamType.SIG: "gray40"}  # fmt: skip
        lines = ["digraph sam {", "  rankdir=TB;", '  node [shape=box, fontname="Helvetica"];']
        for n in self.nodes:
            text = n.kind + (f"\\n{n.label}" if n.label else "")
            shape = "ellipse" if n.kind == "root" else "box"
            lines.append(f'  n{n.id} [label="{text}", shape={shape}];')
        for n in self.nodes:
            for port, s in n.inputs.items():
                t = self.type_of(s)
                lines.append(
                    f'  n{s.node} -> n{n.id} [label="{t.value}", color={colours[t]}, '
                    f'fontcolor={colours[t]}, tooltip="{s.port} to {port}"];'
                )
        lines.append("}")
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        kinds = ", ".join(f"{k} x{v}" for k, v in self.count().items())
        return f"<SAM graph: {len(self.nodes)} nodes: {kinds}>"
