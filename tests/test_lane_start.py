"""overlay/lanes/lane_start.py against a reference model, under random CPU writes, a random engine
count and a lane that runs for random times: the start pulse, the latched words, ARMED, the
idle flag and FAILED, cycle by cycle; and what they promise: an armed lane never starts before
its transfer has finished or while it runs, and a disarmed one never starts."""

from __future__ import annotations

import random

import pytest

pytest.importorskip("migen")

from migen.sim import run_simulation

from fiberflow.overlay.lanes.lane_start import LaneStart

WORDS = 3


class Model:
    """The start logic as docs/overlay.md states it, one cycle per step: a start is decided
    (a write's START, or armed, the transfer reached a cycle ago and the lane idle), the words
    latched and the pulse given a cycle later."""

    def __init__(self) -> None:
        self.armed = self.reached = self.go = self.start = self.running = self.failed = 0
        self.seq = 0
        self.cfg = [0] * WORDS

    def outputs(self) -> tuple:
        idle = int(not (self.running or self.go or self.start))
        pending = int(self.armed or self.go or self.start)
        return self.start, tuple(self.cfg), pending, idle, self.failed

    def step(self, wr, w_start, w_arm, w_clear, w_seq, completed, cfg_in, done, error) -> None:
        idle = not (self.running or self.go or self.start)
        fire = self.armed and self.reached and idle
        since_neg = (completed - self.seq) & 0x8000
        ends = self.running and done and not self.start
        go = w_start if wr else fire
        if self.go:
            self.cfg = list(cfg_in)
        self.reached = int(self.armed and not since_neg and not wr and not fire)
        if wr:
            self.armed, self.seq = w_arm, w_seq
        elif fire:
            self.armed = 0
        if self.go:
            self.running = 1
        elif ends:
            self.running = 0
        if wr and w_clear:
            self.failed = 0
        elif ends and error:
            self.failed = 1
        self.start, self.go = self.go, int(go)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lane_start_follows_the_model(seed: int) -> None:
    rng = random.Random(seed)
    dut = LaneStart(WORDS)
    model = Model()
    seen = {"armed starts": 0, "cpu starts": 0, "failed": 0}

    def bench():
        completed, busy_left, done, error = 0, 0, 1, 0
        armed_seq = None  # what the CPU last armed, for the properties
        cpu_starts = set()  # the cycles of the CPU's STARTs (each pulse comes 2 cycles later)
        history = [(None, 0, 0)] * 4  # per cycle: the arming after its writes, count, lane
        for cycle in range(4000):
            # the engine finishes a transfer now and then
            if rng.random() < 0.08:
                completed = (completed + 1) & 0xFFFF
            wr = int(rng.random() < 0.04)
            w_start = int(wr and rng.random() < 0.25)
            w_arm = int(wr and not w_start and rng.random() < 0.8)
            w_clear = int(wr and rng.random() < 0.2)
            w_seq = (completed + rng.randint(-2, 6)) & 0xFFFF
            cfg_in = [rng.getrandbits(32) for _ in range(WORDS)]
            for sig, v in (
                (dut.wr, wr),
                (dut.w_start, w_start),
                (dut.w_arm, w_arm),
                (dut.w_clear, w_clear),
                (dut.w_seq, w_seq),
                (dut.completed, completed),
                (dut.done, done),
                (dut.error, error),
            ):
                yield sig.eq(v)  # fmt: skip
            for s, v in zip(dut.cfg_in, cfg_in, strict=True):
                yield s.eq(v)
            yield  # (inputs settle)
            words = []
            for c in dut.cfg:
                words.append((yield c))
            got = (
                (yield dut.start),
                tuple(words),
                (yield dut.pending),
                (yield dut.idle),
                (yield dut.failed),
            )
            assert got == model.outputs(), (cycle, got, model.outputs())
            # (a start pulse of this cycle was decided two cycles ago, from the lane of then
            # and from the arming and the count of the cycle before: `reached` is registered)
            history.append((armed_seq, completed, busy_left))
            if got[0] and cycle - 2 not in cpu_starts:  # an armed start: what it promises
                seq, count, _ = history[-4]
                _, _, running = history[-3]
                assert seq is not None, "a disarmed lane started"
                assert (count - seq) & 0x8000 == 0, "started before its transfer"
                assert running == 0, "started while running"
                seen["armed starts"] += 1
            seen["failed"] += got[4]
            model.step(wr, w_start, w_arm, w_clear, w_seq, completed, cfg_in, done, error)
            # the lane: a start clears done and runs for a while
            if got[0]:
                busy_left, done, error = rng.randint(1, 40), 0, int(rng.random() < 0.2)
            elif busy_left:
                busy_left -= 1
                done = int(busy_left == 0)
            if wr:
                armed_seq = w_seq if w_arm else None
                seen["cpu starts"] += w_start
                if w_start:
                    cpu_starts.add(cycle)
        assert seen["armed starts"] > 20 and seen["cpu starts"] > 5 and seen["failed"] > 0, seen

    run_simulation(dut, bench())


def test_a_disarmed_lane_never_starts() -> None:
    dut = LaneStart(1)

    def bench():
        yield dut.done.eq(1)
        yield dut.wr.eq(1)
        yield dut.w_arm.eq(1)
        yield dut.w_seq.eq(5)
        yield
        yield dut.w_arm.eq(0)  # disarm before the transfer finishes
        yield
        yield dut.wr.eq(0)
        for count in range(0, 20):
            yield dut.completed.eq(count)
            yield
            assert not (yield dut.start)
        assert not (yield dut.pending) and (yield dut.idle)

    run_simulation(dut, bench())
