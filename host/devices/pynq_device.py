"""The ``"pynq"`` device: the fiberflow overlay on a PYNQ board, driven through the pynq package.

``ff.open("pynq", overlay=DIR)`` takes a ``fiberflow build`` folder (``DIR/manifest.json``,
``DIR/overlay/fiberflow.bit`` + ``.hwh`` from Vivado, ``DIR/firmware.bin``) and

1. downloads the bitstream with ``pynq.Overlay`` (which also sets the fabric clock from the
   ``.hwh``) and finds the overlay's control block in the ``.hwh``'s address map;
2. maps it with ``pynq.MMIO`` and checks the shell's ID and register-map version;
3. loads the control firmware into the shell's CPU;
4. then runs jobs with the same protocol as the rtl device
   (:class:`fiberflow.host.devices.shell_driver.ShellDriver`): buffers from ``pynq.allocate``
   (physically contiguous; ``Buffer.flush`` / ``invalidate`` map onto the PynqBuffer's), a
   doorbell, a wait with a timeout, errors decoded into messages, statistics from the hardware
   counters.

``emulate=True`` runs the same code with the real pynq package on a simulated board
(:mod:`fiberflow.host.devices.pynq_sim`): the overlay's registers and DDR are the rtl device's
Verilator model, and the ``.hwh`` is the one ``fiberflow build`` writes for emulation
(``DIR/emulation/``, see :mod:`fiberflow.boards.hwh`).

pynq is imported lazily (only when a pynq device is opened). Supported: pynq 3.1 (PYNQ-Z1/Z2
images) and 4.0 (UltraScale+ images); the differences handled here are the buffer address
attribute (``device_address``, ``physical_address`` before 3.0) and the ``allocate`` target
keyword. No pynq global is relied on: the pynq device is chosen once and passed explicitly to
``Overlay``, ``MMIO`` and ``allocate``; ``Device.active_device`` is never read or set.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from fiberflow.errors import DeviceError, ToolchainError
from fiberflow.host import energy
from fiberflow.host.devices.device import DEFAULT_TIMEOUT, Buffer
from fiberflow.host.devices.shell_jobs import ShellDeviceMethods, ShellJobs, check_timeout, guarded
from fiberflow.host.stats import RunStats
from fiberflow.overlay.regmap import HOST

__all__ = ["PynqBuffer", "PynqDevice", "import_pynq"]


def import_pynq() -> Any:
    """The pynq package, or a ToolchainError saying how to get it."""
    try:
        import pynq
    except ImportError as exc:
        raise ToolchainError(
            f"the pynq device needs the pynq package ({exc}). On a board it is part of the "
            "PYNQ image (run Python from its environment: source /etc/profile.d/pynq_venv.sh). "
            "To emulate a board, install it in its own virtualenv, since it pins numpy < 2: "
            "pip install 'pynq==3.1.*' 'pycparser<3' (docs/deploy.md)"
        ) from None
    return pynq


class PynqBuffer(Buffer):
    """A fiberflow Buffer over a ``pynq.allocate`` array (contiguous, possibly cached)."""

    def __init__(self, pynq_buffer: Any, nbytes: int, device: PynqDevice) -> None:
        address = getattr(pynq_buffer, "device_address", None)
        if address is None:  # pynq < 3.0
            address = pynq_buffer.physical_address
        super().__init__(pynq_buffer.view(np.uint8)[:nbytes], int(address), device)
        self.pynq_buffer = pynq_buffer

    def flush(self) -> None:
        self.pynq_buffer.flush()

    def invalidate(self) -> None:
        self.pynq_buffer.invalidate()


class _Port:
    """The :class:`ShellPort` of a pynq device: MMIO, pynq buffers, real (or simulated) time."""

    name = "pynq"

    def __init__(self, device: PynqDevice) -> None:
        self.device = device
        self.clock_mhz = device.clock_mhz

    def read_reg(self, offset: int) -> int:
        return int(self.device._mmio.read(offset)) & 0xFFFF_FFFF

    def write_reg(self, offset: int, value: int) -> None:
        self.device._mmio.write(offset, int(value) & 0xFFFF_FFFF)

    def write_block(self, offset: int, words: np.ndarray) -> None:
        self.device._mmio.write(offset, np.asarray(words, "<u4").tobytes())

    def alloc(self, nbytes: int) -> Buffer:
        return self.device.alloc(nbytes)

    def free(self, buffer: Buffer) -> None:
        self.device.free(buffer)

    def elapse(self, cycles: int) -> None:
        elapse = getattr(self.device.pynq_device, "elapse", None)
        if elapse is not None:  # a simulated board: simulate the cycles
            elapse(cycles)
        else:
            time.sleep(cycles / (self.clock_mhz * 1e6))

    def hard_reset(self) -> None:
        # Nothing to do on a board: the DMA engines drain their bursts themselves, and the
        # driver waits for CTRL.DRAINED. A simulated board clears the faults a test injected
        # (a hung DDR), as a power cycle would.
        heal = getattr(self.device.pynq_device, "drop_in_flight", None)
        if heal is not None:
            heal()


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / "manifest.json"
    if not path.is_file():
        raise DeviceError(
            f"{folder} is not a fiberflow build folder (no manifest.json); pass the folder "
            "written by `fiberflow build --board NAME -o DIR` and copied to the board"
        )
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
        int(manifest["board"]["control_base"]) + int(manifest["overlay"]["control_range"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DeviceError(f"{path} is not a valid fiberflow manifest ({exc}); rebuild") from None
    return manifest


def _find_control(ip_dict: dict[str, Any], wrapper: str) -> tuple[str, int, int]:
    """The overlay's entry in pynq's ip_dict: (name, physical address, range)."""
    hits = [
        (name, d)
        for name, d in ip_dict.items()
        if f":{wrapper}:" in str(d.get("type", "")) and d.get("phys_addr") is not None
    ]
    if len(hits) != 1:
        known = ", ".join(f"{n} ({d.get('type')})" for n, d in ip_dict.items()) or "none"
        raise DeviceError(
            f"the overlay's .hwh has {len(hits)} blocks of type {wrapper} with an address, not "
            f"1 (blocks: {known}); is this the .hwh of a fiberflow build?"
        )
    name, d = hits[0]
    return name, int(d["phys_addr"]), int(d["addr_range"])


class PynqDevice(ShellDeviceMethods):
    """The fiberflow overlay on a PYNQ board (or an emulated one). See the module docstring.

    Parameters
    ----------
    overlay : path
        A ``fiberflow build`` folder.
    emulate : bool
        Run on a simulated board (pynq with the rtl device's Verilator model); needs the hw
        extra and pynq.
    download : bool
        Configure the PL (default). ``False`` attaches to an overlay already loaded.
    firmware : bytes or path, optional
        The control firmware image (default: the folder's ``firmware.bin``).
    pynq_device : pynq.Device, optional
        The pynq device to use (default: the board's own, the first pynq finds).
    ddr : DdrModel, optional
        Emulation only: the simulated DDR's timing.
    board_power_w : float, optional
        The board's measured power in watts (a USB or PMBus reading), in place of the board
        file's estimate in every run's ``energy_j`` (docs/energy.md).

    Thread-safe: every method holds the device's lock (an ``RLock``), so threads sharing the
    device take turns and each job has the shell to itself (its doorbell rings at ``wait``).
    A timeout, a failed job or a ``KeyboardInterrupt`` during a wait resets the shell before
    the error propagates; ``timeout=`` covers the whole call. A closed device refuses every
    call with a DeviceError.

    Resident images are checked against their CRC at ``put`` only, not before every job as on
    the emu and rtl devices (``recheck_images``): the board's Arm cores read and checksum
    DDR far slower than the fabric runs the job. A simulated board checks every job.
    """

    name = "pynq"

    @property
    def recheck_images(self) -> bool:
        return self._emulated

    def __init__(
        self,
        overlay: Any,
        *,
        emulate: bool = False,
        download: bool = True,
        firmware: Any = None,
        pynq_device: Any = None,
        ddr: Any = None,
        board_power_w: float | None = None,
    ) -> None:
        pynq = import_pynq()
        self._lock = threading.RLock()
        self.folder = Path(overlay)
        self.manifest = _read_manifest(self.folder)
        board, ov = self.manifest["board"], self.manifest["overlay"]
        self.energy = energy.from_manifest(board, board_power_w)
        self.last_stats: RunStats | None = None
        self._buffers: dict[int, PynqBuffer] = {}
        self._closed = False
        self._emulated = bool(emulate)
        if emulate:
            if pynq_device is not None:
                raise DeviceError("pass either emulate=True or pynq_device, not both")
            bit = self._emulation_bitstream()
            pynq_device = self._simulated_board(ov, board, ddr)
        else:
            if ddr is not None:
                raise DeviceError("ddr= only applies to an emulated board (emulate=True)")
            bit = self.folder / self.manifest.get("outputs", {}).get(
                "bitstream", "overlay/fiberflow.bit"
            )
            for f in (bit, bit.with_suffix(".hwh")):
                if not f.is_file():
                    raise DeviceError(
                        f"{f} is missing: run Vivado on the build folder first (the command is "
                        f"in {self.folder / 'manifest.json'} under vivado.command; "
                        "docs/deploy.md), or pass emulate=True to run on a simulated board"
                    )
            if pynq_device is None:
                pynq_device = self._board_device(pynq)
        self.pynq_device = pynq_device
        try:
            self.overlay = pynq.Overlay(str(bit), download=download, device=pynq_device)
        except DeviceError:
            raise
        except Exception as exc:
            raise DeviceError(f"pynq could not load {bit}: {type(exc).__name__}: {exc}") from exc
        self.ip_name, base, span = _find_control(self.overlay.ip_dict, ov.get("wrapper", ""))
        if base != int(board["control_base"]):
            raise DeviceError(
                f"the .hwh maps the overlay at {base:#x} but the build expects "
                f"{int(board['control_base']):#x}; the .hwh and manifest.json are from "
                "different builds"
            )
        self.control_base, self.control_range = base, span
        self._mmio = pynq.MMIO(base, span, device=pynq_device)
        self.clock_mhz = self._clock_mhz()
        self.bus_bytes_per_cycle = int(ov["bus_bytes_per_cycle"])

        from fiberflow.host.devices.shell_driver import ShellDriver
        from fiberflow.overlay import regmap

        self._driver = ShellDriver(_Port(self))  # checks the ID register
        version = self.read_reg(HOST.offset("VERSION"))
        # The firmware this fiberflow loads needs its own minor version's registers (2.2: the
        # lanes' arming, which its walker relies on); a later minor only adds.
        if version >> 16 != regmap.VERSION >> 16 or version & 0xFFFF < regmap.VERSION & 0xFFFF:
            major, minor = regmap.VERSION >> 16, regmap.VERSION & 0xFFFF
            raise DeviceError(
                f"the overlay's register map is version {version >> 16}.{version & 0xFFFF}; "
                f"this fiberflow needs {major}.{minor} or a later {major}.x: rebuild the "
                "overlay with this fiberflow version, or install the one that built it"
            )
        self.info = self._driver.info
        self._jobs = ShellJobs(self, self._driver)
        self.lanes = self.info.lanes
        self.load_overlay(firmware=firmware)

    # -- setting up ---------------------------------------------------------------------------
    @staticmethod
    def _board_device(pynq: Any) -> Any:
        devices = list(pynq.Device.devices)
        embedded = [d for d in devices if type(d).__name__ == "EmbeddedDevice"]
        if not (embedded or devices):
            raise DeviceError(
                "pynq finds no FPGA device here: run on a PYNQ board, as root, in the PYNQ "
                "Python environment; or pass emulate=True to run on a simulated board"
            )
        return (embedded or devices)[0]

    def _emulation_bitstream(self) -> Path:
        from fiberflow.boards import hwh

        bit = self.folder / hwh.EMULATION_DIR / "fiberflow.bit"
        if not (bit.is_file() and bit.with_suffix(".hwh").is_file()):
            try:  # folders from older builds: write the pair now
                hwh.write_emulation_pair(self.folder, self.manifest)
            except OSError as exc:
                raise DeviceError(
                    f"cannot write the emulation .hwh into {self.folder} ({exc}); "
                    "rebuild the folder with `fiberflow build`"
                ) from None
        return bit

    def _simulated_board(self, ov: dict[str, Any], board: dict[str, Any], ddr: Any) -> Any:
        try:
            from fiberflow.host.devices import pynq_sim
            from fiberflow.host.devices.rtl import RtlShell
            from fiberflow.overlay.shell.top import ShellConfig
        except ImportError as exc:
            raise ToolchainError(
                f"emulating a board needs the hardware toolchain ({exc}); "
                "install it with: pip install 'fiberflow[hw]'"
            ) from None
        params = dict(ov["params"])
        if "kernels" in params:
            params["kernels"] = tuple(params["kernels"])
        try:
            config = ShellConfig(**params)
        except (TypeError, ValueError) as exc:
            raise DeviceError(
                f"the build's overlay parameters {params} are invalid: {exc}"
            ) from None
        shell = RtlShell(config, ddr)
        arch = "armv7l" if board["ps"] == "ps7" else "aarch64"
        pynq_sim.prepare_clocks()
        return pynq_sim.SimulatedPynqDevice(
            shell,
            arch=arch,
            control_base=int(board["control_base"]),
            control_range=int(ov["control_range"]),
        )

    def _clock_mhz(self) -> float:
        measured = getattr(self.pynq_device, "fabric_clock_mhz", None)
        if measured is not None:  # the simulated board: what pynq actually programmed
            mhz = float(measured())
        else:
            try:
                from pynq.ps import Clocks

                mhz = float(Clocks.fclk0_mhz)
            except Exception:  # the clock registers are not readable: trust the build
                mhz = float(self.manifest["board"]["fabric_clock_mhz"])
        want = float(self.manifest["board"]["fabric_clock_mhz"])
        if not abs(mhz - want) <= 0.02 * want:
            raise DeviceError(
                f"the fabric clock is {mhz:g} MHz after loading the overlay, but the build "
                f"was made for {want:g} MHz; check the .hwh's PS clock settings"
            )
        return mhz

    @guarded
    def load_overlay(self, bitstream: Any = None, firmware: Any = None) -> None:
        """(Re)load the control firmware; ``bitstream=True`` downloads the bitstream again
        first. ``firmware``: bytes, a path, or None for the build folder's ``firmware.bin``."""
        if bitstream is not None and bitstream is not False:
            if bitstream is not True:
                raise DeviceError(
                    "the pynq device loads its build folder's bitstream; open another "
                    "device with ff.open('pynq', overlay=OTHER_DIR) for another one"
                )
            self.overlay.download()
        if firmware is None:
            path = self.folder / "firmware.bin"
            image = path.read_bytes() if path.is_file() else None
        elif isinstance(firmware, (bytes, bytearray)):
            image = bytes(firmware)
        else:
            image = Path(firmware).read_bytes()
        self._driver.load_firmware(image)
        self._wait_until_idle()

    def _wait_until_idle(self, timeout: float = 5.0) -> None:
        """Wait for the firmware's first STATUS = IDLE (sequence 0). Until then STATUS may
        still hold an earlier session's DONE for the sequence number the next job will use
        (after download=False), which a wait would take for that job's."""
        from fiberflow.overlay import regmap

        idle = {s.name: s.value for s in regmap.STATES}["IDLE"]
        status = HOST.offset("STATUS")
        port = self._driver.port
        deadline = time.monotonic() + timeout
        waited = 0
        while True:
            value = self.read_reg(status)
            if value == idle:
                return
            if time.monotonic() > deadline or waited > 50_000_000:
                raise DeviceError(
                    f"the control firmware did not start (STATUS {value:#010x} after "
                    f"{timeout:g} s); is the overlay loaded? Try download=True"
                )
            port.elapse(1000)
            waited += 1000

    # -- memory -------------------------------------------------------------------------------
    @guarded
    def alloc(self, nbytes: int) -> Buffer:
        """Contiguous, zero-filled DDR of ``nbytes`` bytes (``pynq.allocate``)."""
        if nbytes <= 0:
            raise DeviceError(f"cannot allocate {nbytes} bytes; ask for at least 1")
        size = -(-int(nbytes) // 64) * 64  # whole cache lines: flushes never touch a neighbour
        pynq = import_pynq()
        try:
            pb = pynq.allocate((size,), np.uint8, target=self.pynq_device)
        except DeviceError:
            raise
        except Exception as exc:
            raise DeviceError(
                f"pynq could not allocate {size} contiguous bytes ({exc}); free buffers "
                "(and resident matrices) you no longer need"
            ) from exc
        buf = PynqBuffer(pb, int(nbytes), self)
        pb[:] = 0
        pb.flush()
        self._buffers[buf.address] = buf
        return buf

    @guarded
    def free(self, buffer: Buffer) -> None:
        live = self._buffers.get(buffer.address)
        if buffer.freed or id(live) != id(buffer):
            raise DeviceError(f"{buffer!r} is not a live buffer of this device; free it once")
        del self._buffers[buffer.address]
        buffer.freed = True
        assert isinstance(buffer, PynqBuffer)
        buffer.pynq_buffer.freebuffer()

    @property
    def dtypes(self) -> tuple[np.dtype, ...]:
        """The value types the overlay computes in (CONFIG0.VTYPE: 1 fp32, 2 int32, 3 both)."""
        vt = self.info.value_type
        return tuple(np.dtype(d) for bit, d in ((1, np.float32), (2, np.int32)) if vt & bit)

    @guarded
    def pack_to_fit(self, t: Any) -> Any:
        """Pack tensor ``t`` with the largest tiles that fit this overlay's buffers: the
        column span from :meth:`tile_limits`, rows cut until every tile fits a tile
        buffer. (``ff.put`` / ``ff.spmv`` call this when no ``tile=`` is given.)"""
        return self._jobs.pack_to_fit(
            t, self.dtypes, larger="build the overlay with a larger --tile-bytes"
        )

    @guarded
    def fitting_tile(self, A: Any, dtype: Any = None) -> tuple[int, int]:
        """The tile shape :meth:`pack_to_fit` picks for ``A`` (to pack it the same way
        elsewhere, e.g. on the emulator)."""
        from fiberflow.host.devices.resident import as_csr_tensor

        tile = self.pack_to_fit(as_csr_tensor(A, dtype)).tile
        return int(tile[0]), int(tile[1])

    # -- registers ----------------------------------------------------------------------------
    @guarded
    def read_reg(self, offset: int) -> int:
        self._check_reg(offset)
        return int(self._mmio.read(offset)) & 0xFFFF_FFFF

    @guarded
    def write_reg(self, offset: int, value: int) -> None:
        self._check_reg(offset)
        self._mmio.write(offset, int(value) & 0xFFFF_FFFF)

    def _check_reg(self, offset: int) -> None:
        if offset % 4 or not 0 <= offset < self.control_range:
            raise DeviceError(
                f"register offset {offset:#x} is not a word inside the overlay's "
                f"{self.control_range:#x}-byte control block"
            )

    # -- jobs ---------------------------------------------------------------------------------
    @guarded
    def submit(self, job: Buffer) -> int:
        """Check and queue the job whose descriptor is at the start of ``job``; return its
        id. Its doorbell rings at :meth:`wait` (one job on the shell at a time, whatever the
        threads do). An SpMM whose B / C rows do not fit the lanes' buffers with its matrix's
        tiles runs there in column blocks, see
        :class:`~fiberflow.host.devices.shell_jobs.ShellJobs`."""
        if id(self._buffers.get(job.address)) != id(job) or job.freed:
            raise DeviceError(f"{job} is not a live buffer of this device")
        return self._jobs.submit(job)

    @guarded
    def wait(self, job_id: int, timeout: float = DEFAULT_TIMEOUT) -> RunStats:
        """Wait at most ``timeout`` seconds for job ``job_id``; return its statistics (also
        ``last_stats``). A failed or timed-out job raises DeviceError / DeviceTimeoutError
        with the decoded reason; the device is reset and ready for the next job."""
        timeout = check_timeout(timeout)
        self.last_counters, self.last_stats = self._jobs.wait(job_id, timeout)
        return self.last_stats

    @guarded
    def find(self, address: int) -> PynqBuffer | None:
        """The live buffer that holds device address ``address``, if any."""
        for start, buf in self._buffers.items():
            if start <= address < start + buf.nbytes:
                return buf
        return None

    @guarded
    def reset(self) -> None:
        """Hold the control CPU (and DMA engines, lanes), reload the firmware, release.
        Buffers stay valid; jobs in flight are forgotten."""
        self._jobs.forget()
        self._driver.reset()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (every other method then raises DeviceError)."""
        return self._closed

    def close(self) -> None:
        """Free every buffer; hold the CPU in reset. The device cannot be used afterwards."""
        with self._lock:
            if self._closed:
                return
            for buf in list(self._buffers.values()):
                self.free(buf)
            try:
                self.write_reg(HOST.offset("CTRL"), HOST.reg("CTRL").field("CPU_RESET").mask)
            except Exception:
                pass
            self._closed = True
            if self._emulated:  # the simulated board made for this device goes with it
                self.pynq_device.shell.close()

    def __enter__(self) -> PynqDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "emulated" if self._emulated else "board"
        return (
            f"PynqDevice({str(self.folder)!r}, {where}, lanes={self.lanes}, "
            f"clock_mhz={self.clock_mhz:g}, control={self.control_base:#x})"
        )
