"""When a lane starts: on the CPU's ``LANE_CTRL.START``, or armed, once its tile has landed.

A lane armed with a transfer's number (``LANE_CTRL.ARM`` and ``SEQ``) starts itself once its DMA
engine has finished that transfer (``completed - seq``, 16-bit, not negative) and the lane is
idle, so its start waits neither for the CPU to notice the transfer nor for its writes
(docs/firmware.md, the walk). A start is decided into a flip-flop (``go``); in the next cycle
the configuration words are latched for the lane and the start pulse given. So the CPU may
write the next tile's words while the lane runs, and the latch's enable and the start come
from flip-flops, not from the CPU's write decode (whose routing to the tile buffer's address
was the 1-lane shell's routed ECP5 critical path). The arming compare is registered too
(``reached``, a cycle behind the engine's count): the count, a 16-bit subtract and the lane
share no cycle.
"""

from __future__ import annotations

from migen import If, Module, Mux, Signal

__all__ = ["LaneStart"]


class LaneStart(Module):
    """The start, configuration latch and status of one lane (one seat of the shell).

    Parameters
    ----------
    words : int
        Configuration words latched at each start.

    Attributes
    ----------
    reset : Signal(), in
        The CPU's reset: disarms, forgets a run, clears ``failed``.
    wr : Signal(), in
        A write of ``LANE_CTRL`` this cycle, with its fields ``w_start``, ``w_arm``,
        ``w_clear`` and ``w_seq`` (Signal(16)). Every write sets the arming (``w_arm`` 0
        disarms); ``w_start`` starts the lane (a running one restarts); ``w_clear`` clears
        ``failed``.
    completed : Signal(16), in
        The lane's DMA engine's count of finished transfers.
    cfg_in : list of Signal(32), in
        The configuration words as the CPU wrote them.
    done, error : Signal(), in
        The lane's own flags (cleared by its start).
    start : Signal(), out
        The lane's start pulse, from a flip-flop.
    cfg : list of Signal(32), out
        The words the lane runs with: ``cfg_in`` as it was in the cycle before ``start``.
    pending : Signal(), out
        A start is pending (armed, decided or pulsing): ``LANE_STATUS.ARMED``.
    idle : Signal(), out
        Not running, no start decided or pulsing (``DMA_CTRL.AFTER_LANE`` waits for it).
    failed : Signal(), out
        A run since the last clear ended with ``error``.
    """

    def __init__(self, words: int) -> None:
        self.reset, self.wr = Signal(), Signal()
        self.w_start, self.w_arm, self.w_clear = Signal(), Signal(), Signal()
        self.w_seq = Signal(16)
        self.completed = Signal(16)
        self.cfg_in = [Signal(32, name=f"cfg_in{w}") for w in range(words)]
        self.done, self.error = Signal(), Signal()
        self.start = Signal()
        self.cfg = [Signal(32, name=f"cfg{w}") for w in range(words)]
        self.pending, self.idle, self.failed = Signal(), Signal(), Signal()

        # # #

        armed, reached, go, fire = Signal(), Signal(), Signal(), Signal()
        seq = Signal(16)
        since = Signal(16)  # transfers finished since the armed one
        running = Signal()  # started, its end not yet seen
        # A run ends when the lane is done after its start pulse (in the pulse's cycle, DONE
        # is still the last run's).
        ends = Signal()
        self.comb += [
            since.eq(self.completed - seq),
            Signal(15, name="since_low_unused").eq(since[:15]),  # its sign tells
            self.idle.eq(~running & ~go & ~self.start),
            fire.eq(armed & reached & self.idle),
            self.pending.eq(armed | go | self.start),
            ends.eq(running & self.done & ~self.start),
        ]
        self.sync += [
            go.eq(Mux(self.wr, self.w_start, fire)),
            self.start.eq(go),
            If(go, *[q.eq(c) for q, c in zip(self.cfg, self.cfg_in, strict=True)]),
            reached.eq(armed & ~since[15] & ~self.wr & ~fire),
            If(self.reset, armed.eq(0), seq.eq(0), running.eq(0)).Else(
                If(self.wr, armed.eq(self.w_arm), seq.eq(self.w_seq)).Elif(fire, armed.eq(0)),
                If(go, running.eq(1)).Elif(ends, running.eq(0)),
            ),
            If(self.reset | (self.wr & self.w_clear), self.failed.eq(0)).Elif(
                ends & self.error, self.failed.eq(1)
            ),
        ]
