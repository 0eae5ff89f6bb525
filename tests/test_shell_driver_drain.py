"""ShellDriver's reset waits for CTRL.DRAINED, on a fake port (no simulator): how long it waits,
what it says when an engine never drains, and what it does with a shell older than the bit."""

from __future__ import annotations

import pytest

from fiberflow.errors import DeviceError
from fiberflow.host.devices.shell_driver import ShellDriver
from fiberflow.overlay import regmap
from fiberflow.overlay.regmap import HOST

CTRL = HOST.offset("CTRL")
CPU_RESET = HOST.reg("CTRL").field("CPU_RESET").mask
DRAINED = HOST.reg("CTRL").field("DRAINED").mask


class FakePort:
    """Registers of a two-engine shell. Once CPU_RESET is written, DRAINED is set after
    ``drain_cycles`` elapsed cycles (never with None); engines in ``stuck`` keep counting
    DMA_BUSY."""

    clock_mhz = 100.0

    def __init__(self, version: int, drain_cycles: int | None, stuck: tuple[int, ...] = ()) -> None:
        self.version, self.drain_cycles, self.stuck = version, drain_cycles, stuck
        self.cycles = 0
        self.reset_at: int | None = None
        self.hard_resets = 0

    def read_reg(self, offset: int) -> int:
        regs = {
            HOST.offset("ID"): regmap.ID_MAGIC,
            HOST.offset("VERSION"): self.version,
            HOST.offset("CONFIG0"): 4 | 2 << 8 | 8 << 16 | 1 << 24,
            HOST.offset("CONFIG1"): 16384,
            HOST.offset("CONFIG2"): 32768,
        }
        if offset == CTRL:
            held = self.reset_at is not None
            done = (
                held
                and self.drain_cycles is not None
                and self.cycles - self.reset_at >= self.drain_cycles
            )
            return (CPU_RESET if held else 0) | (DRAINED if done else 0)
        for e in range(2):
            if offset == HOST.offset("DMA_BUSY", e):
                return self.cycles if e in self.stuck else 7
        return regs.get(offset, 0)

    def write_reg(self, offset: int, value: int) -> None:
        if offset == CTRL:
            if value & CPU_RESET:
                self.reset_at = self.reset_at if self.reset_at is not None else self.cycles
            else:
                self.reset_at = None

    def write_block(self, offset: int, words: object) -> None:
        pass

    def elapse(self, cycles: int) -> None:
        self.cycles += cycles

    def hard_reset(self) -> None:
        self.hard_resets += 1


def test_reset_waits_for_drained() -> None:
    port = FakePort(regmap.VERSION, drain_cycles=2500)
    driver = ShellDriver(port)
    driver.reset()
    assert port.hard_resets == 1
    # Polled every 1000 cycles: released at the first poll that saw DRAINED.
    assert 2500 <= port.cycles <= 3500
    assert port.reset_at is not None  # no firmware loaded: the engines stay held


def test_an_engine_that_never_drains_is_named() -> None:
    port = FakePort(regmap.VERSION, drain_cycles=None, stuck=(1,))
    driver = ShellDriver(port)
    with pytest.raises(DeviceError, match=r"DMA engine\(s\) 1 \(AXI port m_axi1\) did not"):
        driver.reset()
    assert 100_000 <= port.cycles <= 110_000  # the wait is bounded


def test_a_shell_without_drained_gets_a_fixed_wait() -> None:
    port = FakePort(0x0002_0000, drain_cycles=None)
    ShellDriver(port).reset()  # DRAINED never reads 1 here, and is not waited for
    assert port.cycles == 100_000
