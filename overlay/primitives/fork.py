"""Broadcast (fork): one input stream copied to ``n`` outputs.

Ports: sink ``i``; sources ``o0`` .. ``o{n-1}``. Each output sees every token exactly once. The
fork is eager: an output that is ready takes the token at once, and the input token is released
in the cycle the last output takes it (combinational, no added latency; one token per cycle when
every output is ready).
"""

from __future__ import annotations

from fiberflow.overlay.primitives.primitive import Primitive, eager_fork
from fiberflow.overlay.primitives.stream import Token


class Fork(Primitive):
    def __init__(self, n: int = 2) -> None:
        super().__init__()
        i = self.sink("i")
        outs = [self.source(f"o{k}") for k in range(n)]
        # # #
        for o in outs:
            self.comb += [o.data.eq(i.data), o.kind.eq(i.kind)]
        eager_fork(self, i.valid, i.ready, outs)


def model(tokens: list[Token], n: int = 2) -> list[list[Token]]:
    return [list(tokens) for _ in range(n)]
