"""A placeholder lane: the control interface of a lane, without the dataflow inside.

It stands where the lanes built from the kernel set's SAM graphs go, so the registers, the
firmware's lane sequencing and its watchdog can be built and tested first. Started, it stays
busy for ``cfg0`` cycles, then reports done (``cfg0 = 0xFFFFFFFF`` is a lane that, in practice,
never finishes: the watchdog test uses it).
"""

from __future__ import annotations

from migen import If, Module, Signal

__all__ = ["PlaceholderLane"]


class PlaceholderLane(Module):
    """
    Attributes
    ----------
    cfg0, cfg1 : Signal(32), in
        Configuration words (cfg0: cycles to stay busy; cfg1 unused).
    start : Signal(), in
        One-cycle start pulse; restarts a running lane.
    busy, done : Signal(), out
        ``done`` is cleared by ``start``.
    stall : Signal(), out
        Busy but blocked; always 0 here (there are no streams yet).
    """

    def __init__(self) -> None:
        self.cfg0 = Signal(32)
        self.cfg1 = Signal(32)
        self.start = Signal()
        self.busy = Signal()
        self.done = Signal()
        self.stall = Signal()

        # # #

        left = Signal(32)
        self.sync += [
            If(
                self.start,
                left.eq(self.cfg0),
                self.busy.eq(self.cfg0 != 0),
                self.done.eq(self.cfg0 == 0),
            ).Elif(
                self.busy,
                left.eq(left - 1),
                If(left == 1, self.busy.eq(0), self.done.eq(1)),
            )
        ]
