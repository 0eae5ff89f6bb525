"""Every primitive, by name: what ``fiberflow lint`` and ``fiberflow bench primitives`` build.

A new primitive takes three touches: its block, its model, and a line here.
"""

from __future__ import annotations

from collections.abc import Callable

from fiberflow.overlay.primitives import (
    alu,
    array,
    crddrop,
    fifo,
    fork,
    join,
    reduce,
    repeat,
    scanner,
    spacc,
    writer,
)
from fiberflow.overlay.primitives.primitive import Primitive

PRIMITIVES: dict[str, Callable[[], Primitive]] = {
    "scan_compressed": scanner.CompressedScanner,
    "scan_dense": scanner.DenseScanner,
    "repeat_sig": repeat.RepeatSigGen,
    "repeater": repeat.Repeater,
    "intersect": join.Intersecter,
    "union": join.Unioner,
    "alu": alu.Alu,
    "reduce": reduce.Reducer,
    "spacc64": lambda: spacc.SparseAccumulator(64),
    "crddrop": crddrop.CoordDropper,
    "array_read": array.ArrayReader,
    "array_write": array.ArrayWriter,
    "write_compressed": writer.CompressedWriter,
    "write_dense": writer.DenseWriter,
    "fifo16": lambda: fifo.StreamFifo(16),
    "fork2": lambda: fork.Fork(2),
}
