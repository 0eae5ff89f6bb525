"""The job protocol of the fiberflow shell, shared by every device that runs the real shell.

The shell (``overlay/shell/top.py``) is driven the same way whether it is simulated by Verilator
(the ``"rtl"`` device) or built into a bitstream on a board (the ``"pynq"`` device): load the
firmware through the AXI4-Lite RAM window, write a job descriptor to DDR, ring the doorbell,
wait for ``STATUS`` with a timeout, decode errors, read the performance counters. This module
holds that protocol once, over a small :class:`ShellPort` that each device provides.

The port (what a device must offer)
-----------------------------------

``read_reg(offset) -> int`` / ``write_reg(offset, value)``
    32-bit accesses at byte ``offset`` of the shell's AXI4-Lite control space.
``write_block(offset, words)``
    write a uint32 numpy array to consecutive registers from ``offset`` (the firmware load;
    a port may simply loop over ``write_reg``).
``alloc(nbytes) -> Buffer`` / ``free(buffer)``
    device-visible DDR (:class:`fiberflow.host.devices.device.Buffer`); the descriptor and operands
    live there.
``elapse(cycles)``
    let about ``cycles`` fabric cycles pass (rtl: simulate them; board: sleep).
``hard_reset()``
    called once ``CTRL.CPU_RESET`` is set (the CPU and lanes are reset, the DMA engines are
    draining their bursts), before the driver waits for ``CTRL.DRAINED``: whatever the device
    needs for the bus to finish (rtl and the simulated board: clear the faults a test injected,
    such as a hung DDR, as a power cycle would; a board: nothing).
``clock_mhz``
    the fabric clock, used to turn cycles into seconds.

Optional: ``poll(offset, mask, want, max_cycles) -> int | None``, which waits until
``read_reg(offset) & mask == want`` for at most ``max_cycles`` cycles and returns the register's
value (or None). The driver falls back to ``read_reg`` + ``elapse`` when a port lacks it; the rtl
port does the polling in C.

The driver (what a device gets)
-------------------------------

``ShellDriver(port)`` reads the shell's parameters (:class:`ShellInfo`) and offers:

* ``load_firmware(image=None)``: the shipped image by default (``overlay/firmware.bin``);
* ``submit(job: Buffer) -> seq``: clears the counters, writes ``JOB_ADDR`` and rings the doorbell;
* ``run(job, timeout=60.0) -> ShellCounters``: ``submit`` and ``wait`` as one step;
* ``wait(seq, timeout=60.0, max_cycles=None) -> ShellCounters``: returns the counters when the
  job is DONE; raises :class:`DeviceError` (the firmware's error code, decoded) or
  :class:`DeviceTimeoutError` (timeout in seconds or cycles; says whether the heartbeat still
  moves). After either error the shell has been reset and the firmware reloaded: the next job
  runs. So it is after anything else that ends a wait early (``KeyboardInterrupt``). The wall
  clock is read every few tens of milliseconds, so the timeout holds to about that; a job that
  runs longer than half a second shows its cycles in a ``fiberflow.progress`` bar;
* ``reset()``: set ``CTRL.CPU_RESET``, ``port.hard_reset()``, wait (bounded) until ``CTRL.DRAINED``
  says every DMA engine has finished its bursts and is held, reload the firmware, release. A
  shell whose engines never drain (a hung interconnect) raises :class:`DeviceError` naming
  what is still outstanding;
* ``counters() -> ShellCounters``, ``clear_counters()``;
* ``run_stats(counters, ...) -> RunStats``: a job's statistics from the hardware counters.

The firmware reports each job's own cycles (doorbell taken -> status written) in
``MAILBOX[0]`` and its tiles in ``MAILBOX[1]``; ``RunStats.cycles`` is that count, so host
polling latency is not counted. After a DMA error response, ``ERROR_INFO`` is the engine's
``DMA_STATUS`` (the response, the failed transfer's number) and ``MAILBOX[2]`` the failed
transfer's DDR address.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fiberflow.errors import DeviceError, DeviceTimeoutError
from fiberflow.host.devices.device import Buffer
from fiberflow.host.energy import EnergyModel
from fiberflow.host.stats import RunStats
from fiberflow.overlay import regmap
from fiberflow.overlay.regmap import HOST

__all__ = [
    "CycleMeter",
    "ShellCounters",
    "ShellDriver",
    "ShellInfo",
    "ShellPort",
    "buffer_span",
    "describe_error",
    "pack_to_fit",
]

_STATUS = HOST.reg("STATUS")
_SEQ_F, _STATE_F, _ERR_F = (_STATUS.field(n) for n in ("SEQ", "STATE", "ERROR"))
_CTRL = HOST.reg("CTRL")
_CPU_RESET = _CTRL.field("CPU_RESET").mask
_DRAINED = _CTRL.field("DRAINED").mask
# Cycles a reset waits for the DMA engines to drain. A drain finishes the engines' bursts in
# flight (4 of at most 16 beats each per engine), a few hundred cycles behind DDR latency;
# 100,000 (1 ms at 100 MHz) is far beyond that, and short enough for a reset to stay quick.
_DRAIN_CYCLES = 100_000
# The first map version with CTRL.DRAINED; an older shell resets its engines at once, and the
# driver gives its bus _DRAIN_CYCLES to settle instead.
_DRAIN_VERSION = 0x0002_0001
_CLEAR = _CTRL.field("CLEAR").mask
_STATE = {s.name: s.value for s in regmap.STATES}
_RESP = {2: "SLVERR", 3: "DECERR"}
# Cycles polled between wall-clock checks: the first chunk (about 10 ms of simulation), the
# bounds of the later ones, sized to last _CHUNK_SECONDS each (see ShellDriver._until_finished).
_FIRST_CHUNK = 10_000
_MIN_CHUNK = 1_000
_POLL_CHUNK = 1_000_000
_CHUNK_SECONDS = 0.03
# A job's progress bar appears once it has run this long (short jobs stay quiet).
_BAR_AFTER = 0.5


class ShellPort(Protocol):
    """What a device provides to :class:`ShellDriver` (see the module docstring)."""

    clock_mhz: float

    def read_reg(self, offset: int) -> int: ...

    def write_reg(self, offset: int, value: int) -> None: ...

    def write_block(self, offset: int, words: np.ndarray) -> None: ...

    def alloc(self, nbytes: int) -> Buffer: ...

    def free(self, buffer: Buffer) -> None: ...

    def elapse(self, cycles: int) -> None: ...

    def hard_reset(self) -> None: ...


@dataclass(frozen=True)
class ShellCounters:
    """The shell's performance counters (since the last clear), plus the firmware's report."""

    cycles: int  # CYCLES: since the clear, up to the moment of reading
    tiles_done: int
    dma_busy: tuple[int, ...]
    dma_stall: tuple[int, ...]
    dma_read_bytes: tuple[int, ...]
    dma_write_bytes: tuple[int, ...]
    lane_busy: tuple[int, ...]
    lane_stall: tuple[int, ...]
    job_cycles: int = 0  # MAILBOX[0]: the firmware's count for the last job

    @property
    def dma_bytes(self) -> int:
        return sum(self.dma_read_bytes) + sum(self.dma_write_bytes)


@dataclass(frozen=True)
class ShellInfo:
    """The shell's parameters, read from CONFIG0..CONFIG3."""

    lanes: int
    dma_engines: int
    bus_bytes: int
    value_type: int  # 1 fp32, 2 int32
    ram_bytes: int
    tile_bytes: int
    x_bytes: int  # each lane's x / B-slice buffer (0: no SpMV/SpMM lanes)
    y_bytes: int
    max_k: int
    kernels: int  # bit 0 SpMV, bit 1 SpMM

    @classmethod
    def read(cls, port: Any) -> ShellInfo:
        ident = port.read_reg(HOST.offset("ID"))
        if ident != regmap.ID_MAGIC:
            raise DeviceError(
                f"the device answers ID {ident:#x}, not a fiberflow shell ({regmap.ID_MAGIC:#x});"
                " load the fiberflow overlay first"
            )
        c0 = port.read_reg(HOST.offset("CONFIG0"))
        c3 = port.read_reg(HOST.offset("CONFIG3"))

        def f(reg: str, name: str, v: int) -> int:
            fl = HOST.reg(reg).field(name)
            return (v & fl.mask) >> fl.lsb

        def size(log2: int) -> int:
            return 1 << log2 if log2 else 0

        return cls(
            lanes=f("CONFIG0", "LANES", c0),
            dma_engines=f("CONFIG0", "DMA", c0),
            bus_bytes=f("CONFIG0", "BUS_BYTES", c0),
            value_type=f("CONFIG0", "VTYPE", c0),
            ram_bytes=port.read_reg(HOST.offset("CONFIG1")),
            tile_bytes=port.read_reg(HOST.offset("CONFIG2")),
            x_bytes=size(f("CONFIG3", "X_LOG2", c3)),
            y_bytes=size(f("CONFIG3", "Y_LOG2", c3)),
            max_k=f("CONFIG3", "MAX_K", c3),
            kernels=f("CONFIG3", "KERNELS", c3),
        )


def describe_error(code: int, info: int, address: int | None = None) -> str:
    """The firmware's error ``code`` and ``ERROR_INFO`` as a sentence; ``address``: the failed
    transfer's DDR address (``MAILBOX[2]``) for DMA_READ / DMA_WRITE."""
    text = regmap.error_message(code)
    name = text.split(":")[0]
    if name in ("DMA_READ", "DMA_WRITE", "DMA_TIMEOUT"):
        status = regmap.CPU.reg("DMA_STATUS")
        resp_f, seq_f = status.field("RESP"), status.field("DONE_SEQ")
        resp = (info & resp_f.mask) >> resp_f.lsb
        if resp:
            text += f" (AXI response {_RESP.get(resp, resp)}"
            text += f", transfer {(info & seq_f.mask) >> seq_f.lsb} of the engine"
            text += f" at DDR {address:#x})" if address is not None else ")"
        else:
            text += f" (status {info:#x})"
    else:
        text += f" (info {info:#x})"
    return text


def buffer_span(nbytes: int, bus_bytes: int) -> int:
    """The most 4-byte values a slice may span so that it fits an ``nbytes`` lane buffer
    whatever its offset within a bus beat: whole beats, one beat spare (0 if none fit)."""
    step = max(bus_bytes // 4, 1)
    return max(0, (nbytes // 4 - step) // step * step)


def pack_to_fit(
    t: Any,
    rows_max: int,
    cols_max: int,
    *,
    lanes: int,
    tile_bytes: int,
    bus_bytes: int,
    dtypes: tuple[np.dtype, ...],
    larger: str,
) -> Any:
    """Pack tensor ``t`` with the largest tiles a shell's lanes hold: columns up to
    ``cols_max``, rows from the lanes' default up to ``rows_max``, cut until every tile's bytes
    fit a ``tile_bytes`` tile buffer. ``larger`` tells the user how to get larger buffers.

    Both the rtl and the board device pack this way, through
    :meth:`fiberflow.host.devices.shell_jobs.ShellJobs.pack_to_fit`.
    """
    from fiberflow.host.devices.resident import default_tile
    from fiberflow.host.images import job as jobs
    from fiberflow.host.images import pack as packing

    if not (rows_max and cols_max):
        raise DeviceError(
            "this overlay has no SpMV/SpMM lanes (kernels=()); rebuild it with "
            "fiberflow build --param kernels=spmv,spmm"
        )
    if t.dtype not in dtypes:
        have = " and ".join(str(d) for d in dtypes)
        raise DeviceError(
            f"this overlay computes in {have}; the matrix is {t.dtype}. Convert it (dtype=) "
            "or use an overlay built for it"
        )
    rows = max(1, min(rows_max, default_tile(t.shape, lanes)[0]))
    cols = max(1, min(cols_max, t.shape[1]))
    step = max(bus_bytes // 4, 1)
    while True:
        img = packing.pack(t, (rows, cols))
        biggest = int(jobs.Directory.of(img).nbytes.max()) if img.n_tiles else 0
        if biggest <= tile_bytes or rows == 1:
            break
        # Shrink in proportion (with a margin), at least by one row; keep whole bus beats of
        # y per row tile where possible (no read-modify-write of shared beats).
        rows = max(1, min(rows - 1, int(rows * tile_bytes / biggest * 0.95)))
        rows = rows // step * step or rows
    if biggest > tile_bytes:
        raise DeviceError(
            f"a single row of this matrix needs {biggest} bytes of tile, more than the "
            f"{tile_bytes}-byte tile buffers; {larger}"
        )
    return img


class CycleMeter:
    """The cycles a job has waited, shown as a ``fiberflow.progress`` bar once the job has run
    longer than ``after`` seconds (made then, so short jobs print nothing). Advanced once per
    polling chunk, never per cycle."""

    def __init__(self, desc: str, after: float = _BAR_AFTER) -> None:
        self.desc = desc
        self.cycles = 0
        self._show_at = time.monotonic() + after
        self._bar: Any = None

    def advance(self, cycles: int) -> None:
        self.cycles += cycles
        if self._bar is None:
            if time.monotonic() < self._show_at:
                return
            from fiberflow import progress

            self._bar = progress.bar(
                desc=self.desc, unit="cycle", unit_scale=True, initial=self.cycles
            )
        else:
            self._bar.update(cycles)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class ShellDriver:
    """Runs jobs on a shell through a :class:`ShellPort`. Not thread-safe: a device that
    shares one between threads holds a lock around every call (see
    :mod:`fiberflow.host.devices.shell_jobs`)."""

    def __init__(self, port: Any) -> None:
        self.port = port
        self.info = ShellInfo.read(port)
        self._drains = port.read_reg(HOST.offset("VERSION")) >= _DRAIN_VERSION
        self._seq = 0
        self._firmware: bytes | None = None

    # -- firmware ----------------------------------------------------------------------------

    def load_firmware(self, image: bytes | None = None) -> None:
        """Hold the CPU, write ``image`` (default: the shipped build) into its RAM through the
        AXI4-Lite window, clear the counters and release the CPU."""
        if image is None:
            from fiberflow.overlay.firmware import image as shipped

            image = shipped()
        if len(image) > self.info.ram_bytes:
            raise DeviceError(
                f"the firmware image has {len(image)} bytes but the shell's RAM "
                f"{self.info.ram_bytes}; build a smaller image or a shell with a larger ram_bytes"
            )
        self._firmware = bytes(image)
        ctrl = HOST.offset("CTRL")
        self._hold()
        words = np.frombuffer(self._firmware + b"\0" * (-len(self._firmware) % 4), "<u4")
        self.port.write_block(regmap.HOST_RAM_WINDOW, words)
        self.port.write_reg(ctrl, _CLEAR)  # also releases the CPU

    def reset(self) -> None:
        """Hold the CPU and lanes, let the DMA engines drain what they have on the bus and hold
        them too, reload the firmware and release the CPU."""
        self.port.write_reg(HOST.offset("CTRL"), _CPU_RESET)
        self.port.hard_reset()
        if self._firmware is not None:
            self.load_firmware(self._firmware)  # waits for the drain first
        else:
            self._hold()

    def _hold(self) -> None:
        """Set CTRL.CPU_RESET and wait until every DMA engine has drained and is held, so that
        no beat of a transfer cut short reaches the next job's; DeviceError if they do not
        within _DRAIN_CYCLES."""
        ctrl = HOST.offset("CTRL")
        self.port.write_reg(ctrl, _CPU_RESET)
        if not self._drains:
            self.port.elapse(_DRAIN_CYCLES)
            return
        if self._poll(ctrl, _DRAINED, _DRAINED, _DRAIN_CYCLES) is None:
            # A drained engine is held in reset and its DMA_BUSY counter stops; one still
            # waiting for the bus keeps counting.
            busy = [HOST.offset("DMA_BUSY", e) for e in range(self.info.dma_engines)]
            before = [self.port.read_reg(r) for r in busy]
            self.port.elapse(1000)
            stuck = [e for e, r in enumerate(busy) if self.port.read_reg(r) != before[e]]
            which = ", ".join(f"{e} (AXI port m_axi{e})" for e in stuck) or "(none busy now)"
            raise DeviceError(
                f"DMA engine(s) {which} did not finish their bursts in flight within "
                f"{_DRAIN_CYCLES:,} cycles of CTRL.CPU_RESET (CTRL.DRAINED stays 0): the AXI "
                "interconnect or DDR no longer answers them; reload the overlay (on a board, "
                "power-cycle it) before the next job"
            )

    # -- jobs --------------------------------------------------------------------------------

    def submit(self, job: Buffer) -> int:
        """Clear the counters, then ring the doorbell for the descriptor at the start of
        ``job``; return the job's sequence number."""
        self.clear_counters()
        self._seq = (self._seq % 0xFFFF) + 1  # 1..65535: never the reset value 0
        self.port.write_reg(HOST.offset("JOB_ADDR"), job.address)
        self.port.write_reg(HOST.offset("DOORBELL"), self._seq)
        return self._seq

    def wait(
        self,
        seq: int,
        timeout: float = 60.0,
        max_cycles: int | None = None,
        *,
        deadline: float | None = None,
        meter: CycleMeter | None = None,
    ) -> ShellCounters:
        """Wait until job ``seq`` is DONE and return the counters (see the module docstring
        for the errors; after one, the shell is reset and ready).

        ``deadline`` (a ``time.monotonic()`` value) replaces ``now + timeout`` when a call runs
        several jobs under one timeout; ``meter`` counts the cycles waited (a progress bar).
        Anything else that interrupts the wait (``KeyboardInterrupt``, an error from the
        port) also resets the shell before it propagates: the job may still be running, and
        would otherwise go on reading and writing buffers the caller is about to free."""
        return self._finish(lambda: seq, timeout, max_cycles, deadline, meter)

    def run(
        self,
        job: Buffer,
        timeout: float = 60.0,
        *,
        deadline: float | None = None,
        meter: CycleMeter | None = None,
    ) -> ShellCounters:
        """:meth:`submit` ``job`` and :meth:`wait` for it, with no moment in between at which
        an interrupt would leave the job running unwatched."""
        return self._finish(lambda: self.submit(job), timeout, None, deadline, meter)

    def _finish(
        self,
        start: Callable[[], int],
        timeout: float,
        max_cycles: int | None,
        deadline: float | None,
        meter: CycleMeter | None,
    ) -> ShellCounters:
        """The job ``start()`` rang the doorbell for, waited for (see :meth:`wait`)."""
        if deadline is None:
            deadline = time.monotonic() + timeout
        own = meter is None
        meter = meter or CycleMeter(f"{getattr(self.port, 'name', 'shell')} job")
        try:
            seq = start()
            status, waited = self._until_finished(seq, deadline, max_cycles, meter)
        except BaseException:
            self.reset()
            raise
        finally:
            if own:
                meter.close()
        if status is None:
            last = self.port.read_reg(HOST.offset("STATUS"))
            beating = "running" if self._heartbeat_moves() else "stopped"
            self.reset()
            raise DeviceTimeoutError(
                f"job {seq} did not finish within {waited:,} cycles / {timeout:g} s "
                f"(last STATUS {last:#010x}, firmware heartbeat {beating}); the device "
                "was reset and is ready; raise the timeout if the job is just long"
            )
        state = (status & _STATE_F.mask) >> _STATE_F.lsb
        if state != _STATE["DONE"]:
            code = (status & _ERR_F.mask) >> _ERR_F.lsb
            info = self.port.read_reg(HOST.offset("ERROR_INFO"))
            address = self.port.read_reg(HOST.offset("MAILBOX", 2))
            self.reset()
            raise DeviceError(
                f"job {seq} failed: {describe_error(code, info, address)}; the device was reset"
            )
        return self.counters()

    def _until_finished(
        self, seq: int, deadline: float, max_cycles: int | None, meter: CycleMeter
    ) -> tuple[int | None, int]:
        """Poll STATUS until job ``seq`` is DONE or ERROR: (STATUS, cycles waited), or (None,
        cycles waited) when ``deadline`` or ``max_cycles`` passed first.

        The wall clock is read between chunks of polling. Chunks are sized from the speed
        measured on the previous one to last about ``_CHUNK_SECONDS`` (a simulated shell runs
        ~1 M cycles/s, a board 100 M), and never past the deadline, so a timeout is held to a
        few tens of milliseconds."""
        finished = 1 << 1  # DONE (2) and ERROR (3) are the states with bit 1 set
        mask = _SEQ_F.mask | finished << _STATE_F.lsb
        want = (seq << _SEQ_F.lsb) | finished << _STATE_F.lsb
        limit = max_cycles if max_cycles is not None else 1 << 62
        waited, chunk = 0, _FIRST_CHUNK
        while True:
            n = max(1, min(limit - waited, chunk))
            start = time.monotonic()
            status = self._poll(HOST.offset("STATUS"), mask, want, n)
            now = time.monotonic()
            if status is not None:
                return status, waited
            waited += n
            meter.advance(n)
            if waited >= limit or now >= deadline:
                return None, waited
            rate = n / max(now - start, 1e-6)
            seconds = min(_CHUNK_SECONDS, deadline - now)
            chunk = int(min(max(rate * seconds, _MIN_CHUNK), _POLL_CHUNK))

    def _poll(self, offset: int, mask: int, want: int, max_cycles: int) -> int | None:
        poll = getattr(self.port, "poll", None)
        if poll is not None:
            result: int | None = poll(offset, mask, want, max_cycles)
            return result
        step = 1000
        for _ in range(0, max_cycles, step):
            v = self.port.read_reg(offset)
            if v & mask == want:
                return int(v)
            self.port.elapse(step)
        return None

    def _heartbeat_moves(self) -> bool:
        hb = HOST.offset("HEARTBEAT")
        before = self.port.read_reg(hb)
        self.port.elapse(2000)
        return bool(self.port.read_reg(hb) != before)

    # -- counters ----------------------------------------------------------------------------

    def counters(self) -> ShellCounters:
        rd = self.port.read_reg
        info = self.info

        def arr(name: str, n: int) -> tuple[int, ...]:
            return tuple(rd(HOST.offset(name, i)) for i in range(n))

        lo = rd(HOST.offset("CYCLES_LO"))
        hi = rd(HOST.offset("CYCLES_HI"))
        return ShellCounters(
            cycles=hi << 32 | lo,
            tiles_done=rd(HOST.offset("TILES_DONE")),
            dma_busy=arr("DMA_BUSY", info.dma_engines),
            dma_stall=arr("DMA_STALL", info.dma_engines),
            dma_read_bytes=arr("DMA_RD_BYTES", info.dma_engines),
            dma_write_bytes=arr("DMA_WR_BYTES", info.dma_engines),
            lane_busy=arr("LANE_BUSY", info.lanes),
            lane_stall=arr("LANE_STALL", info.lanes),
            job_cycles=rd(HOST.offset("MAILBOX", 0)),
        )

    def clear_counters(self) -> None:
        ctrl = HOST.offset("CTRL")
        self.port.write_reg(ctrl, self.port.read_reg(ctrl) & _CPU_RESET | _CLEAR)

    def run_stats(
        self,
        c: ShellCounters,
        *,
        kernel: str,
        k: int,
        nnz: int,
        tiles: int,
        bus_bytes_per_cycle: int,
        clock_mhz: float,
        device: str,
        energy: EnergyModel | None = None,
    ) -> RunStats:
        """A job's :class:`RunStats` from the hardware counters: cycles from the firmware's
        job count (``MAILBOX[0]``), DMA bytes, lane busy and stall cycles as counted."""
        return RunStats(
            kernel=kernel,
            cycles=max(c.job_cycles, 1),
            nnz=nnz,
            work=nnz * k,
            lanes=self.info.lanes,
            tiles=tiles,
            dma_bytes=c.dma_bytes,
            bus_bytes_per_cycle=bus_bytes_per_cycle,
            clock_mhz=clock_mhz,
            lane_busy_cycles=c.lane_busy,
            # RunStats' stall is "not busy" (the lane waited for the firmware or DMA); the
            # lanes' own stall counters (busy but blocked) stay in ShellCounters.lane_stall.
            lane_stall_cycles=tuple(max(c.job_cycles - b, 0) for b in c.lane_busy),
            estimated=False,
            device=device,
            energy=energy,
        )
