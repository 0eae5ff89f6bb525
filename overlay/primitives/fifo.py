"""Stream FIFO: LiteX's ``stream.SyncFIFO`` on the token layout.

Ports: sink ``i``, source ``o``. Tokens leave in the order they arrive, unchanged. With
``buffered=False`` (default) the FIFO is first-word-fall-through: latency 1 cycle, one token per
cycle in and out; ``depth`` tokens of storage.
"""

from __future__ import annotations

from litex.soc.interconnect import stream

from fiberflow.overlay.primitives.primitive import Primitive
from fiberflow.overlay.primitives.stream import TOKEN_LAYOUT, Token


class StreamFifo(Primitive):
    def __init__(self, depth: int = 16, buffered: bool = False) -> None:
        super().__init__()
        i = self.sink("i")
        o = self.source("o")
        # # #
        self.submodules.fifo = fifo = stream.SyncFIFO(TOKEN_LAYOUT, depth, buffered=buffered)
        self.comb += [i.connect(fifo.sink), fifo.source.connect(o)]


def model(tokens: list[Token]) -> list[Token]:
    """A FIFO passes its stream through unchanged."""
    return list(tokens)
