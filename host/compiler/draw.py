"""A picture of a SAM graph (SVG, PNG or PDF) with matplotlib: nodes in layers by their depth
from the operands' roots, edges coloured by stream type as in :meth:`Graph.to_dot`. For
Graphviz's layout, write the dot text and run ``dot`` instead."""

from __future__ import annotations

from pathlib import Path

from fiberflow.errors import ToolchainError
from fiberflow.host.compiler.graph import Graph, StreamType

COLOURS = {StreamType.CRD: "blue", StreamType.REF: "darkgreen", StreamType.VAL: "red",
           StreamType.SIG: "gray"}  # fmt: skip


def draw(graph: Graph, path: Path) -> None:
    """Write ``graph`` to ``path``; the suffix chooses the format (.svg, .png, .pdf)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ToolchainError(
            "drawing a graph needs matplotlib (pip install matplotlib, or the dev extra); "
            "or write .dot and use Graphviz"
        ) from None
    depth: dict[int, int] = {}
    for n in graph.nodes:  # (in an order inputs come first)
        depth[n.id] = 1 + max((depth[s.node] for s in n.inputs.values()), default=-1)
    layers: dict[int, list[int]] = {}
    for n in graph.nodes:
        layers.setdefault(depth[n.id], []).append(n.id)
    width = max(len(ids) for ids in layers.values())
    where = {}
    for d, ids in layers.items():
        for k, i in enumerate(ids):
            where[i] = ((k - (len(ids) - 1) / 2) * 2.2, -d * 1.2)
    fig = Figure(figsize=(max(6.0, 2.3 * width), max(4.0, 1.25 * len(layers))))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_axis_off()
    for n in graph.nodes:
        for s in n.inputs.values():
            colour = COLOURS[graph.type_of(s)]
            ax.annotate("", xy=where[n.id], xytext=where[s.node], zorder=1,
                        arrowprops={"arrowstyle": "->", "color": colour, "shrinkA": 14,
                                    "shrinkB": 14, "lw": 0.9})  # fmt: skip
    for n in graph.nodes:
        text = n.kind + (f"\n{n.label}" if n.label else "")
        box = "round,pad=0.3" if n.kind == "root" else "square,pad=0.3"
        ax.text(*where[n.id], text, ha="center", va="center", fontsize=7, zorder=2,
                bbox={"boxstyle": box, "fc": "white", "ec": "black", "lw": 0.8})  # fmt: skip
    xs = [p[0] for p in where.values()]
    ys = [p[1] for p in where.values()]
    ax.set_xlim(min(xs) - 1.3, max(xs) + 1.3)
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)
    fig.savefig(path, format=Path(path).suffix[1:].lower(), bbox_inches="tight")
