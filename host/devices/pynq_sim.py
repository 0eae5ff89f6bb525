"""A simulated PYNQ board: a ``pynq.Device`` whose PL is the rtl device's Verilator shell.

With ``ff.open("pynq", overlay=DIR, emulate=True)`` the real ``pynq`` package loads the overlay,
maps its registers and allocates buffers, exactly as on a board; only the device underneath is
simulated. :class:`SimulatedPynqDevice` is that device:

* its registers (``REGISTER_RW`` capability, so every access reaches the model with its side
  effects): the overlay's AXI4-Lite block at the control base goes to
  :meth:`RtlShell.read_reg` / ``write_reg``; the PS clock registers that PYNQ programs on
  download (Zynq-7000 SLCR, UltraScale+ CRL_APB) are a small dictionary seeded with the PLL
  settings of a real board, so that PYNQ's clock code has something to divide by; anything
  else is a bus error;
* its memory: :meth:`allocate` returns ``pynq.buffer.PynqBuffer`` arrays over memory the shell's
  DDR model serves, with ``device_address`` the simulated physical address;
* its "bitstream": :meth:`download` resets the shell (the PL after configuration, CPU held in
  reset), and :meth:`get_bitfile_metadata` parses the ``.hwh`` itself with pynqmetadata (the
  board's ``EmbeddedDevice`` also converts it to an XRT xclbin with ``xclbinutil``, a tool
  that only exists on a board image);
* time: :meth:`elapse` simulates fabric cycles (a board just lets them pass).

It is never discovered by PYNQ (``_probe_`` returns nothing) and never becomes
``Device.active_device``: fiberflow passes it explicitly to ``Overlay``, ``MMIO`` and
``allocate``. Nothing in pynq is patched. One pynq detail is process-wide: ``pynq.ps.Clocks``
keeps the clock implementation of the first device it saw (``Clocks._real_instance``), so
:func:`prepare_clocks` drops it before an overlay is loaded on a new simulated device.

Importing this module imports pynq (install it in its own environment: docs/deploy.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pynq.buffer import PynqBuffer
from pynq.pl_server.device import Device

from fiberflow.boards import hwh
from fiberflow.errors import DeviceError
from fiberflow.host.devices.rtl import RtlShell

__all__ = ["SimulatedPynqDevice", "prepare_clocks"]

# pynq's PS reference clocks (pynq.ps DEFAULT_SRC_CLK_MHZ): 50 MHz (Zynq-7000),
# 33.333 MHz (UltraScale+).
_REF_MHZ = {"armv7l": 50.0, "aarch64": 100.0 / 3}

# Zynq-7000 SLCR (UG585 appendix B): ARM/DDR/IO PLL control (PLL_FDIV in bits 18:12) and
# FPGA0..3_CLK_CTRL (SRCSEL 5:4, DIVISOR0 13:8, DIVISOR1 25:20). Seeded like a PYNQ-Z2's
# boot configuration: ARM PLL 1300 MHz, DDR PLL 1050 MHz, IO PLL at the rate the emulation
# .hwh divides (1000 MHz).
_ZYNQ_IO_PLL = 0xF800_0108
_ZYNQ_FCLK = 0xF800_0170
_ZYNQ_REGS = {
    0xF800_0100: 26 << 12,
    0xF800_0104: 21 << 12,
    _ZYNQ_IO_PLL: round(hwh.ZYNQ_PLL_MHZ / _REF_MHZ["armv7l"]) << 12,
    **{_ZYNQ_FCLK + 0x10 * n: 0 for n in range(4)},
}
# UltraScale+ CRL_APB (UG1087): IOPLL_CTRL (FBDIV bits 14:8) and PL0..3_REF_CTRL (SRCSEL 2:0,
# DIVISOR0 13:8, DIVISOR1 21:16). Seeded with the IO PLL at the emulation .hwh's 1500 MHz.
_ZU_IOPLL = 0xFF5E_0020
_ZU_PL0 = 0xFF5E_00C0
_ZU_REGS = {
    _ZU_IOPLL: round(hwh.ZYNQMP_PLL_MHZ / _REF_MHZ["aarch64"]) << 8,
    0xFF5E_0024: 0,
    0xFF5E_0030: 0,
    **{_ZU_PL0 + 4 * n: 0 for n in range(4)},
}


def prepare_clocks() -> None:
    """Forget the clock implementation pynq bound to an earlier device (see the module
    docstring); the next overlay load binds it to the device it is given."""
    from pynq.ps import Clocks

    if "_real_instance" in vars(Clocks):
        delattr(Clocks, "_real_instance")


class _SimBuffer(PynqBuffer):
    """A PynqBuffer over simulated DDR; freeing it gives the memory back to the shell."""

    def freebuffer(self) -> None:
        owner = self.__dict__.pop("_fiberflow_owner", None)  # only the allocation, not views
        if owner is not None:
            shell, buf = owner
            if not buf.freed and shell._h is not None:
                shell.free(buf)
        self.freed = True


class SimulatedPynqDevice(Device):
    """A PYNQ board whose PL is a simulated fiberflow shell (see the module docstring).

    Parameters
    ----------
    shell : RtlShell
        The Verilator model of the overlay (with its DDR model).
    arch : {"armv7l", "aarch64"}
        The board's processor: Zynq-7000 or Zynq UltraScale+ (selects pynq's clock code).
    control_base, control_range : int
        Where the overlay's AXI4-Lite block sits in the PS address map (from the ``.hwh``).
    """

    # pynq registers Device subclasses by priority (EmbeddedDevice 50, XrtDevice 100); an
    # unused value, and _probe_ returns nothing, so pynq never picks this device by itself.
    _probe_priority_ = 9017

    @classmethod
    def _probe_(cls) -> list[Any]:
        return []

    def __init__(self, shell: RtlShell, *, arch: str, control_base: int, control_range: int):
        if arch not in _REF_MHZ:
            raise DeviceError(f"unknown board processor {arch!r}; expected armv7l or aarch64")
        super().__init__("fiberflow-sim")
        self.name = f"fiberflow simulated {arch} board"
        self.arch = arch
        self.capabilities = {"REGISTER_RW": True}
        self.shell = shell
        self.control_base = int(control_base)
        self.control_range = int(control_range)
        self._ps = dict(_ZYNQ_REGS if arch == "armv7l" else _ZU_REGS)
        self.downloads = 0

    # -- registers (pynq.MMIO with REGISTER_RW calls these) ---------------------------------
    def _word_addresses(self, address: int, length: int) -> range:
        if address % 4 or length % 4 or length <= 0:
            raise DeviceError(
                f"register access at {address:#x} of {length} bytes is not whole words"
            )
        return range(address, address + length, 4)

    def read_registers(self, address: int, length: int) -> bytes:
        out = bytearray()
        for a in self._word_addresses(address, length):
            out += self._read_word(a).to_bytes(4, "little")
        return bytes(out)

    def write_registers(self, address: int, data: bytes) -> None:
        raw = bytes(data)
        for i, a in enumerate(self._word_addresses(address, len(raw))):
            self._write_word(a, int.from_bytes(raw[4 * i : 4 * i + 4], "little"))

    def _read_word(self, a: int) -> int:
        offset = a - self.control_base
        if 0 <= offset < self.control_range:
            return self.shell.read_reg(offset)
        if a in self._ps:
            return self._ps[a]
        raise DeviceError(f"bus error: nothing answers at {a:#x} on the simulated board")

    def _write_word(self, a: int, value: int) -> None:
        offset = a - self.control_base
        if 0 <= offset < self.control_range:
            self.shell.write_reg(offset, value)
        elif a in self._ps:
            self._ps[a] = value & 0xFFFF_FFFF
        else:
            raise DeviceError(f"bus error: nothing answers at {a:#x} on the simulated board")

    def fabric_clock_mhz(self, index: int = 0) -> float:
        """The fabric clock ``index`` as pynq programmed it into the PS registers."""
        if self.arch == "armv7l":
            ctrl = self._ps[_ZYNQ_FCLK + 0x10 * index]
            pll = self._ps[_ZYNQ_IO_PLL] >> 12 & 0x7F
            d0, d1 = ctrl >> 8 & 0x3F, ctrl >> 20 & 0x3F
        else:
            ctrl = self._ps[_ZU_PL0 + 4 * index]
            pll = self._ps[_ZU_IOPLL] >> 8 & 0x7F
            d0, d1 = ctrl >> 8 & 0x3F, ctrl >> 16 & 0x3F
        if not (pll and d0 and d1):
            return 0.0
        return _REF_MHZ[self.arch] * pll / (d0 * d1)

    # -- the bitstream ------------------------------------------------------------------------
    def get_bitfile_metadata(self, bitfile_name: str, partial: bool = False) -> Any:
        # The parser the installed pynq's own board device uses: pynq 3.1 ships it as
        # pynq.metadata.runtime_metadata_parser, pynq 4.0 takes pynqmetadata.views.runtime's.
        from pynq.pl_server import embedded_device
        from pynqmetadata.frontends import Metadata

        parser_class = embedded_device.RuntimeMetadataParser

        hwh = Path(bitfile_name).with_suffix(".hwh")
        if not hwh.is_file():
            raise DeviceError(f"{hwh} is missing; the overlay needs its .hwh next to the .bit")
        return parser_class(Metadata(input=hwh))

    def download(self, bitstream: Any, parser: Any = None) -> None:
        """'Configure the PL': the shell comes up as after power-on (CPU held in reset)."""
        self.shell.reset()
        self.downloads += 1
        self.post_download(bitstream, parser, self.name)

    # -- memory -------------------------------------------------------------------------------
    def allocate(self, shape: Any, dtype: Any = "u4", **kwargs: Any) -> Any:
        dt = np.dtype(dtype)
        count = int(np.prod(shape)) if np.ndim(shape) else int(shape)
        buf = self.shell.alloc(max(count * dt.itemsize, 1))
        pb = _SimBuffer(
            shape,
            dt,
            buffer=buf.array,
            device=self,
            device_address=buf.address,
            bo=buf.address,
            coherent=False,
        )
        pb._fiberflow_owner = (self.shell, buf)
        return pb

    def flush(self, bo: Any, offset: int, ptr: int, size: int) -> None:
        pass  # the DDR model reads the host's memory itself: nothing to write back

    def invalidate(self, bo: Any, offset: int, ptr: int, size: int) -> None:
        pass

    # -- time and reset (fiberflow's board port uses these when present) -----------------------
    def elapse(self, cycles: int) -> None:
        """Simulate ``cycles`` fabric cycles (on a board the host just waits). A breach of the
        memory ports' AXI rules in them (``RtlShell.rule_breaches``) raises, where a board
        could hang or write the wrong memory."""
        before = self.shell.rule_breaches
        self.shell.step(int(cycles))
        self.shell.check_rules(before)

    def drop_in_flight(self) -> None:
        """The shell's hard reset: clear the faults a test injected, so the DMA engines can
        drain (the CPU stays held: the board driver holds it and reloads the firmware itself)."""
        self.shell.hard_reset()
