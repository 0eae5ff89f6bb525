"""The rtl shell: the generated shell (control CPU, DMA, lanes) in Verilator, driven from Python.

This is the hardware half of the ``"rtl"`` device: the Verilated Verilog of
:mod:`fiberflow.overlay.shell.top` with the C++ per-cycle loop of ``host/rtl_harness.cpp``, which
holds an AXI4-Lite master (register reads and writes from Python) and a DDR model serving the
shell's AXI4 master ports straight from numpy buffers allocated here (their memory is handed to
C by pointer, never copied). Builds are cached by the Verilator helper under a hash of the
Verilog, the harness and the parameters.

Typical use::

    shell = RtlShell(ShellConfig(lanes=4))
    shell.load_firmware()                  # the shipped image, through the AXI4-Lite window
    job = shell.alloc(32); ...             # a descriptor, see docs/firmware.md
    seq = shell.submit(job)
    counters = shell.wait(seq)             # raises DeviceError / DeviceTimeoutError

Every wait is bounded twice: in simulated cycles and in wall-clock seconds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from fiberflow.errors import DeviceError
from fiberflow.host.devices.device import Buffer
from fiberflow.host.devices.shell_driver import ShellCounters, ShellDriver
from fiberflow.overlay.regmap import HOST

__all__ = ["DdrModel", "RtlShell", "build_shell"]

DDR_BASE = 0x1000_0000  # where the simulated DDR hands out buffers

RULES = (
    "beat size other than the bus width",
    "WLAST not on the burst's last beat",
    "burst longer than the port allows",
    "burst crossing an address boundary (4 KB in AXI)",
    "address not aligned to the bus width",
    "valid dropped or payload changed before the handshake",
    "write data before its burst's address",
)
"""The rules the DDR model checks the shell's AXI masters against, in the harness' order
(rtl_harness.cpp, enum Rule). The boundary and the longest burst are the DdrModel's."""
_PAGE = 4096
_LITE_CYCLES = 1000  # one AXI4-Lite access never takes longer than this

CDEF = """
void *ff_new(void);
void ff_free(void *h);
void ff_config(void *h, int read_latency, int write_latency, int max_reads, int max_writes,
               double port_bpc, double total_bpc, uint32_t bp, uint64_t seed);
void ff_reset(void *h, int cycles);
void ff_step(void *h, uint64_t n);
uint64_t ff_cycle(void *h);
void ff_rules(void *h, int max_beats, uint64_t boundary);
void ff_rule_errors(void *h, uint64_t *out, int n);
uint64_t ff_evals(void *h);
void ff_map(void *h, uint64_t base, uint64_t size, void *ptr);
void ff_unmap(void *h, uint64_t base);
void ff_fault_dma(void *h, uint64_t lo, uint64_t hi, int resp);
void ff_stall_cpu(void *h, int on);
void ff_stall_lanes(void *h, int on);
void ff_hang_ddr(void *h, int on);
void ff_hang_after(void *h, int64_t beats);
void ff_watch_reset(void *h, uint32_t addr, uint32_t mask);
uint64_t ff_stale(void *h);
void ff_exact(void *h, int on);
int ff_write(void *h, uint32_t addr, uint32_t data, uint64_t max_cycles);
int ff_read(void *h, uint32_t addr, uint32_t *out, uint64_t max_cycles);
int ff_write_block(void *h, uint32_t addr, const uint32_t *words, uint32_t n,
                   uint64_t max_cycles);
int64_t ff_wait(void *h, uint32_t addr, uint32_t mask, uint32_t want, uint32_t every,
                uint64_t max_cycles, uint32_t *out);
"""

# Verilator warnings the generated and third-party Verilog trips, none of them a bug here:
# Migen pads constants and leaves unused bits; picorv32 has its own lint debt.
VERILATOR_FLAGS = (
    "-Wno-fatal",
    "-Wno-WIDTHEXPAND",
    "-Wno-WIDTHTRUNC",
    "-Wno-UNOPTFLAT",
    "-Wno-CASEINCOMPLETE",
    "-Wno-MULTIDRIVEN",
    "-Wno-PINMISSING",
    "-Wno-UNUSEDSIGNAL",
    "-Wno-UNDRIVEN",
    "-Wno-MULTITOP",
    # The model's per-cycle code is one evaluation function of ~12k statements; cut into
    # functions of at most 4000 (and files make compiles in parallel) the C++ compiler keeps
    # more of each in registers: measured ~1.1x the simulated cycles per second of one
    # function, and a faster build. (verilator_build passes the precompiled-header flag split
    # builds need.)
    "--output-split-cfuncs",
    "4000",
    "--x-assign",
    "fast",
    "--x-initial",
    "fast",
)


@dataclass(frozen=True)
class DdrModel:
    """Latency and bandwidth of the DDR behind the AXI4 master ports.

    The defaults model a PYNQ-Z2 at a 100 MHz fabric clock: 64-bit HP ports each moving up to
    8 bytes per cycle per direction, DDR3-1066 x16 (4.3 GB/s peak) shared by all ports (about
    32 bytes per fabric cycle after refresh and turnarounds), read data 32 cycles after the
    address, write responses 16 cycles after the last beat, 8 bursts accepted per direction
    (the HP ports' read and write acceptance), bursts of at most 16 beats (the HP ports are
    AXI3) that do not cross a 4 KB boundary. The model counts every breach of the ports' rules
    (:attr:`RtlShell.rule_breaches`).
    """

    read_latency: int = 32
    write_latency: int = 16
    max_reads: int = 8
    max_writes: int = 8
    port_bytes_per_cycle: float = 8.0
    total_bytes_per_cycle: float = 32.0
    max_burst_beats: int = 16
    boundary_bytes: int = 4096
    # Probability a channel holds off in a cycle (tests): every DDR channel, and the host's
    # AXI4-Lite BREADY / RREADY.
    backpressure: float = 0.0
    seed: int = 1

    def __post_init__(self) -> None:
        if self.read_latency < 1 or self.write_latency < 1:
            raise ValueError("DDR latencies must be at least 1 cycle")
        if self.max_reads < 1 or self.max_writes < 1:
            raise ValueError("max_reads and max_writes must be at least 1")
        if self.port_bytes_per_cycle <= 0 or self.total_bytes_per_cycle <= 0:
            raise ValueError("bandwidths must be positive")
        if not 0.0 <= self.backpressure < 1.0:
            raise ValueError("backpressure is a probability in [0, 1)")
        if not 1 <= self.max_burst_beats <= 256:
            raise ValueError("max_burst_beats is 1 to 256 (16 for AXI3 ports)")
        if self.boundary_bytes < 1 or self.boundary_bytes & (self.boundary_bytes - 1):
            raise ValueError("boundary_bytes is a power of two (4096 for AXI)")


def build_shell(config: Any = None) -> Any:
    """Verilate the shell for ``config`` (a ShellConfig) with the harness; cached."""
    from fiberflow.overlay.shell.top import TOP, ShellConfig, verilog
    from fiberflow.overlay.sim.tracer_scope import scope
    from fiberflow.overlay.sim.verilator_build import build

    cfg = config or ShellConfig()
    with scope():  # Migen would keep this device (on the stack) alive for good
        text = verilog(cfg)
    binds = " ".join(f"BIND(s, {e})" for e in range(cfg.dma_engines))
    prefix = (
        f'#define TOP V{TOP}\n#include "V{TOP}.h"\n'
        f'#define ROOT V{TOP}___024root\n#include "V{TOP}___024root.h"\n'
        f"#define NPORTS {cfg.dma_engines}\n"
        f"#define BUS_BYTES {cfg.bus_bytes}\n#define BIND_PORTS(s) {binds}\n"
    )
    harness = resources.files("fiberflow.host").joinpath("rtl_harness.cpp").read_text()
    return build(
        name=f"shell-l{cfg.lanes}-d{cfg.dma_engines}-b{cfg.bus_bits}"
        + ("-" + "-".join(cfg.kernels) if cfg.kernels else ""),
        verilog=text,
        top=TOP,
        harness=prefix + harness,
        cdef=CDEF,
        flags=VERILATOR_FLAGS,
        # -O3 and -Os measured no faster, with or without the profile. No -march=native: the
        # cache key does not name the host CPU, and a cache may be shared between machines.
        cflags=("-O2",),
        train=("fiberflow.host.devices.rtl:_train_workload", [dataclasses.asdict(cfg)]),
        what="the overlay",
    )


def _train_workload(fields: dict[str, Any]) -> None:
    """What the C++ compiler's profile-guided optimisation of the shell learns from (run by
    :func:`fiberflow.overlay.sim.verilator_build.build` on an instrumented build, in a child
    process): firmware loading and polling, an idle stretch, a copy job through a DMA engine,
    and with SpMV/SpMM lanes a job of each, so the profile has the branches of every part of
    the model both idle and busy (about 0.3 M cycles). Results are checked: a wrong one fails
    the workload, and the shell is then built without a profile (build.log says why). An
    overlay ``ff.open("rtl")`` cannot make trains on the shell part only."""
    from fiberflow.overlay import regmap
    from fiberflow.overlay.shell.top import ShellConfig

    cfg = ShellConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    rng = np.random.default_rng(0)
    with RtlShell(cfg) as shell:
        shell.load_firmware()
        shell.step(20_000)
        n = 16 * 1024
        src, dst, job = shell.alloc(n), shell.alloc(n), shell.alloc(32)
        src.array[:] = rng.integers(0, 256, n, dtype=np.uint8)
        copy = next(c.value for c in regmap.OPCODES if c.name == "COPY")
        job.view(np.uint32)[:] = [regmap.JOB_MAGIC, copy, src.address, dst.address, n, 0, 0, 0]
        shell.wait(shell.submit(job), max_cycles=100 * n)
        if not np.array_equal(src.array, dst.array):
            raise AssertionError("the training copy job copied wrong bytes")
    if tuple(cfg.kernels) != ("spmv", "spmm"):
        return
    import scipy.sparse as sp

    import fiberflow as ff

    dtypes = {"fp32": "float32", "int32": "int32"}
    dtype = dtypes[cfg.value_type.split("+")[0]]
    options = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    del options["value_type"], options["kernels"]
    options["dtype"] = tuple(dtypes[v] for v in cfg.value_type.split("+"))
    try:
        dev = ff.open("rtl", **options)
    except Exception as exc:  # an overlay ff.open cannot make: train on the shell part only
        print(f"no SpMV/SpMM training: {exc}")
        return
    m, n = 3000, 2000
    A = sp.random(m, n, density=0.004, format="csr", random_state=1, dtype=np.float64)
    A = (A * 100).astype(dtype)
    x = (rng.standard_normal(n) * 100).astype(dtype)
    B = (rng.standard_normal((n, 4)) * 100).astype(dtype)
    emu = ff.open("emu", lanes=cfg.lanes)
    for got, want in (
        (ff.spmv(A, x, device=dev), ff.spmv(A, x, device=emu)),
        (ff.spmm(A, B, device=dev), ff.spmm(A, B, device=emu)),
    ):
        if not np.array_equal(got.view(np.uint32), want.view(np.uint32)):
            raise AssertionError("the training SpMV/SpMM results differ from the emulator's")
    dev.close()


class RtlShell:
    """One simulated shell with its DDR. Not thread-safe (the rtl device holds a lock around
    every use of its shell); no global state.

    Parameters
    ----------
    config : ShellConfig, optional
        The overlay parameters (default: 4 lanes, fp32, 64-bit bus).
    ddr : DdrModel, optional
        The DDR timing (default: PYNQ-Z2).
    """

    name = "rtl"

    def __init__(self, config: Any = None, ddr: DdrModel | None = None) -> None:
        from fiberflow.overlay.shell.top import ShellConfig
        from fiberflow.overlay.sim.verilator_build import ffi_of

        self.config = config or ShellConfig()
        self.ddr = ddr or DdrModel()
        self._lib = build_shell(self.config)
        self._ffi = ffi_of(self._lib)
        self._h = self._lib.ff_new()
        self._out = self._ffi.new("uint32_t *")
        self._buffers: dict[int, Buffer] = {}
        self._next = DDR_BASE
        self._poll_every = 64
        self.configure_ddr(self.ddr)
        self._lib.ff_reset(self._h, 8)
        self._lib.ff_watch_reset(
            self._h, HOST.offset("CTRL"), HOST.reg("CTRL").field("CPU_RESET").mask
        )
        self.driver = ShellDriver(self)  # reads the shell's ID and configuration

    # -- memory --
    def alloc(self, nbytes: int) -> Buffer:
        """Zero-filled DDR of ``nbytes`` bytes, page aligned; the DDR model reads and writes the
        returned array's memory directly."""
        if nbytes <= 0:
            raise DeviceError(f"cannot allocate {nbytes} bytes; ask for at least 1")
        size = -(-nbytes // _PAGE) * _PAGE
        if self._next + size > 0xFFFF_F000:
            raise DeviceError("the simulated DDR's address space is used up; free buffers")
        array = np.zeros(size, dtype=np.uint8)
        address = self._next
        self._next += size
        buf = Buffer(array[:nbytes], address, self)
        # (buf.array is a view of array, so array lives as long as the buffer.)
        self._lib.ff_map(self._h, address, size, self._ffi.from_buffer(array))
        self._buffers[address] = buf
        return buf

    def free(self, buffer: Buffer) -> None:
        live = self._buffers.get(buffer.address)
        if buffer.freed or id(live) != id(buffer):
            raise DeviceError(f"{buffer!r} is not a live buffer of this device; free it once")
        self._lib.ff_unmap(self._h, buffer.address)
        del self._buffers[buffer.address]
        buffer.freed = True

    # -- registers --
    def read_reg(self, offset: int) -> int:
        if self._lib.ff_read(self._h, offset, self._out, _LITE_CYCLES) != 0:
            raise DeviceError(f"AXI4-Lite read of {offset:#x} failed; reset the device")
        return int(self._out[0])

    def write_reg(self, offset: int, value: int) -> None:
        if self._lib.ff_write(self._h, offset, value & 0xFFFF_FFFF, _LITE_CYCLES) != 0:
            raise DeviceError(f"AXI4-Lite write of {offset:#x} failed; reset the device")

    # -- simulation control --
    def configure_ddr(self, ddr: DdrModel) -> None:
        self.ddr = ddr
        self._lib.ff_config(
            self._h,
            ddr.read_latency,
            ddr.write_latency,
            ddr.max_reads,
            ddr.max_writes,
            ddr.port_bytes_per_cycle,
            ddr.total_bytes_per_cycle,
            int(ddr.backpressure * 65536),
            ddr.seed,
        )
        self._lib.ff_rules(self._h, ddr.max_burst_beats, ddr.boundary_bytes)

    @property
    def cycle(self) -> int:
        """Simulated cycles since the model was created."""
        return int(self._lib.ff_cycle(self._h))

    @property
    def rule_breaches(self) -> dict[str, int]:
        """Breaches of the memory ports' rules the DDR model has seen since it was created, by
        rule (see :data:`RULES`)."""
        out = self._ffi.new("uint64_t[]", len(RULES))
        self._lib.ff_rule_errors(self._h, out, len(RULES))
        return dict(zip(RULES, (int(v) for v in out), strict=True))

    @property
    def protocol_errors(self) -> int:
        """All the breaches of :attr:`rule_breaches`."""
        return sum(self.rule_breaches.values())

    def check_rules(self, before: dict[str, int]) -> None:
        """Raise DeviceError if any rule broke since :attr:`rule_breaches` was ``before``."""
        broken = {k: n - before[k] for k, n in self.rule_breaches.items() if n > before[k]}
        if broken:
            raise DeviceError(
                "the overlay broke the AXI rules of its memory ports ("
                + "; ".join(f"{rule}: {n}" for rule, n in broken.items())
                + "), so its results cannot be trusted; on a board this could hang or corrupt "
                "the memory system. Report it with the overlay's build options."
            )

    @property
    def stale_transfers(self) -> int:
        """Breaches of the DDR model's reset check: a port with bursts still in flight when
        the host released ``CTRL.CPU_RESET``, or a beat or write response moved afterwards
        for a burst issued before it (a beat of an aborted transfer reaching a later one)."""
        return int(self._lib.ff_stale(self._h))

    @property
    def evaluations(self) -> int:
        """Evaluations of the Verilated model since it was created: one per cycle, and one more
        in each cycle of a register access or in exact mode."""
        return int(self._lib.ff_evals(self._h))

    def exact(self, on: bool) -> None:
        """Evaluate the model twice per cycle, settling every combinational output before the
        handshakes are sampled (slower; the default is exact wherever the shell needs it)."""
        self._lib.ff_exact(self._h, int(on))

    def step(self, cycles: int) -> None:
        self._lib.ff_step(self._h, cycles)

    # -- fault injection (tests) --
    def inject_dma_error(self, lo: int, hi: int, resp: int = 2) -> None:
        """Answer bursts touching DDR ``[lo, hi)`` with ``resp`` (2 SLVERR, 3 DECERR; 0 off)."""
        self._lib.ff_fault_dma(self._h, lo, hi, resp)

    def hang_ddr(self, on: bool) -> None:
        """Make the DDR stop answering (a hung interconnect): transfers never finish."""
        self._lib.ff_hang_ddr(self._h, int(on))

    def hang_ddr_after(self, beats: int) -> None:
        """Make the DDR stop answering (as :meth:`hang_ddr`) once ``beats`` more data beats
        (R or W, any port) have moved: with a count that is not a multiple of the burst
        length, a timeout and its reset land in the middle of a burst."""
        self._lib.ff_hang_after(self._h, beats)

    def hold_cpu(self, on: bool) -> None:
        """Freeze the control CPU (it stops answering, as hung firmware would)."""
        self._lib.ff_stall_cpu(self._h, int(on))

    def hold_lanes(self, on: bool) -> None:
        """Withhold the lanes' tile ports: a running lane never finishes (lane watchdog)."""
        self._lib.ff_stall_lanes(self._h, int(on))

    # -- the port of fiberflow.host.devices.shell_driver --
    clock_mhz = 100.0

    def write_block(self, offset: int, words: np.ndarray) -> None:
        w = np.ascontiguousarray(words, dtype="<u4")
        rc = self._lib.ff_write_block(
            self._h, offset, self._ffi.from_buffer("uint32_t[]", w), w.size, _LITE_CYCLES
        )
        if rc != 0:
            raise DeviceError(f"an AXI4-Lite block write at {offset:#x} failed; reset the device")

    def poll(self, offset: int, mask: int, want: int, max_cycles: int) -> int | None:
        """Wait (in C) until ``read_reg(offset) & mask == want``, at most ``max_cycles``."""
        got = self._lib.ff_wait(
            self._h, offset, mask, want, self._poll_every, max_cycles, self._out
        )
        return int(self._out[0]) if got >= 0 else None

    def elapse(self, cycles: int) -> None:
        self.step(cycles)

    def hard_reset(self) -> None:
        """With CTRL.CPU_RESET set: clear every injected fault (a reset heals what a test
        broke, as a power cycle would), so that the DDR answers again and the DMA engines
        can drain. The DDR model keeps its bursts in flight: the engines finish them, and
        the driver waits for CTRL.DRAINED in simulated cycles (the port's ``poll``)."""
        self.hold_cpu(False)
        self.hold_lanes(False)
        self.hang_ddr(False)
        self.inject_dma_error(0, 0, 0)

    # -- firmware and jobs: the shared driver's (host/devices/shell_driver.py), over this port --
    def load_firmware(self, image: bytes | None = None) -> None:
        """Write ``image`` (default: the shipped build) into the CPU's RAM and start it."""
        self.driver.load_firmware(image)

    def reset(self) -> None:
        """Hold the CPU and lanes, let the DMA engines drain their bursts in flight (the
        driver waits for CTRL.DRAINED), reload the firmware, release."""
        self.driver.reset()

    def submit(self, job: Buffer) -> int:
        """Ring the doorbell for the descriptor at the start of ``job``; return its sequence."""
        return self.driver.submit(job)

    def wait(
        self, seq: int, max_cycles: int = 50_000_000, timeout: float = 60.0, poll: int = 64
    ) -> ShellCounters:
        """Wait until job ``seq`` is DONE, checking STATUS every ``poll`` cycles; return the
        counters. Errors and timeouts are the driver's: after either the shell is reset and
        ready for the next job."""
        self._poll_every = poll
        return self.driver.wait(seq, timeout, max_cycles)

    def counters(self) -> ShellCounters:
        return self.driver.counters()

    def clear_counters(self) -> None:
        self.driver.clear_counters()

    def close(self) -> None:
        if self._h is not None:
            for address in list(self._buffers):
                self.free(self._buffers[address])
            self._lib.ff_free(self._h)
            self._h = None

    def __enter__(self) -> RtlShell:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
