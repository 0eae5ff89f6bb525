"""A placeholder lane: the control interface of a lane, without the dataflow inside.

It stands in the seats where the lanes built from the kernel set go (same control ports: eight
configuration words, ``start``, ``busy``, ``done``, ``error``, ``stall``), so the registers,
the firmware's lane sequencing and its watchdog can be built and tested first. Started, it
stays busy for ``cfg[0]`` cycles, then reports done, with ``error`` if ``cfg[1]`` bit 0 is set.
``cfg[0] = 0xFFFFFFFF`` is a lane that, in practice, never finishes: the watchdog test uses it.
"""

from __future__ import annotations

from migen import If, Module, Signal

from fiberflow.overlay import regmap

__all__ = ["PlaceholderLane"]


class PlaceholderLane(Module):
    """
    Attributes
    ----------
    cfg : list of Signal(32), in
        ``regmap.LANE_CFG_WORDS`` configuration words (word 0: cycles to stay busy; word 1
        bit 0: finish with ``error``), constant while ``busy``.
    start : Signal(), in
        One-cycle start pulse; restarts a running lane.
    busy, done, error : Signal(), out
        ``done`` and ``error`` are cleared by ``start``.
    stall : Signal(), out
        Busy but blocked; always 0 here (there are no streams).
    """

    def __init__(self) -> None:
        self.cfg = [Signal(32, name=f"cfg{w}") for w in range(regmap.LANE_CFG_WORDS)]
        self.start = Signal()
        self.busy = Signal()
        self.done = Signal()
        self.error = Signal()
        self.stall = Signal()

        # # #

        left = Signal(32)
        fail = self.cfg[1][0]
        self.sync += [
            If(
                self.start,
                left.eq(self.cfg[0]),
                self.busy.eq(self.cfg[0] != 0),
                self.done.eq(self.cfg[0] == 0),
                self.error.eq((self.cfg[0] == 0) & fail),
            ).Elif(
                self.busy,
                left.eq(left - 1),
                If(left == 1, self.busy.eq(0), self.done.eq(1), self.error.eq(fail)),
            )
        ]
