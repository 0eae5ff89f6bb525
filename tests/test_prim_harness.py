"""The stream harness itself: it must catch broken transfer rules and hangs."""

import pytest
from migen import Signal

from fiberflow.errors import DeviceError, DeviceTimeoutError
from fiberflow.overlay.primitives.primitive import Primitive
from fiberflow.overlay.primitives.stream import parse
from fiberflow.overlay.sim.simharness import StreamSim

pytestmark = pytest.mark.rtl


class Fickle(Primitive):
    """Breaks rule 2: its output token changes every cycle, taken or not."""

    def __init__(self) -> None:
        super().__init__()
        i, o = self.sink("i"), self.source("o")
        n = Signal(32)
        self.sync += n.eq(n + 1)
        self.comb += [o.valid.eq(i.valid), o.data.eq(n), o.kind.eq(i.kind), i.ready.eq(o.ready)]


class Stuck(Primitive):
    """Never produces anything."""

    def __init__(self) -> None:
        super().__init__()
        i, o = self.sink("i"), self.source("o")
        r = Signal()
        self.sync += r.eq(~r)
        self.comb += [i.ready.eq(r), o.data.eq(i.data), o.kind.eq(i.kind)]


def test_changing_a_stalled_token_is_caught():
    sim = StreamSim("bad_fickle", Fickle())
    with pytest.raises(DeviceError, match="transfer rule"):
        sim.run([parse("1 2 3 4 5 6 7 8 S0 D")], p_ready=0.3, seed=1)


def test_a_hang_times_out_with_context():
    sim = StreamSim("bad_stuck", Stuck())
    with pytest.raises(DeviceTimeoutError, match="after 500 cycles"):
        sim.run([parse("1 S0 D")], max_cycles=500)
