"""The register map: the one source of every address, bit and code the shell, the firmware and
the host driver share.

Two register blocks:

* ``HOST``: the AXI4-Lite slave the host (the board's ARM core, or the rtl harness) sees.
* ``CPU``: the peripheral registers the control CPU (picorv32) sees on its memory bus.

Array registers (per DMA engine, per lane) are declared once with a ``count`` and a
``stride``; the map is sized for :data:`MAX_DMA` engines and :data:`MAX_LANES` lanes, and a
given overlay reports how many it really has in ``CONFIG0``. So one C header serves every
overlay configuration, and firmware built once runs on all of them.

Everything else is generated from here (never edited by hand):

* ``firmware/regs.h`` by :func:`c_header`;
* ``docs/registers.md`` by :func:`markdown`.

Run ``python -m fiberflow.overlay.regmap`` to rewrite both; a test checks they are current.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CPU",
    "CPU_LOCAL_BASE",
    "CPU_LOCAL_STRIDE",
    "CPU_RAM_BASE",
    "CPU_REG_BASE",
    "CTRL_BITS",
    "DMA_CTRL_BITS",
    "DMA_QUEUE_DEPTH",
    "DMA_STATUS_BITS",
    "ERRORS",
    "HOST",
    "HOST_RAM_WINDOW",
    "HOST_RAM_WINDOW_BYTES",
    "ID_MAGIC",
    "JOB_MAGIC",
    "JOB_WORDS",
    "LANE_BASE",
    "LANE_CFG_WORDS",
    "LANE_STRIDE",
    "LOCAL_REGIONS",
    "LOCAL_REGION_SHIFT",
    "MAX_DMA",
    "MAX_LANES",
    "OPCODES",
    "STATES",
    "TILE_BYTES",
    "VERSION",
    "X_BYTES",
    "Y_BYTES",
    "Block",
    "Code",
    "Field",
    "Register",
    "c_header",
    "error_message",
    "markdown",
]

# Bumped on any incompatible change; the host checks it before driving a shell.
VERSION = 0x0002_0002  # major 2 (DMA command queues), minor 1 (CTRL.DRAINED), 2 (LANE_CTRL.ARM)
ID_MAGIC = 0x4646_4C57  # "FFLW"

MAX_LANES = 16
MAX_DMA = 4

# Each lane's seat in the CPU block: LANE_CFG_WORDS configuration words, CTRL, STATUS.
LANE_BASE = 0x400
LANE_STRIDE = 0x40
LANE_CFG_WORDS = 8

# Transfers each DMA engine's command queue holds besides the running one (DMA_CTRL.GO pushes
# one; the firmware keeps count, DMA_STATUS.DONE_SEQ says how many have finished).
DMA_QUEUE_DEPTH = 16

# An x window (a tile's columns of its x slice, docs/dma-image.md) starts on a multiple of this
# many columns: the first columns of a random matrix's tiles differ by a few, and all count as
# the slice's start. The firmware rounds down to it and the emulator's cycle model with it.
X_GRAIN = 256

# A lane's buffers in the default overlay (ShellConfig's defaults). Here, in plain Python, so
# that a board's default build can size its tile buffers to the block RAM budget without the
# hardware toolchain (boards/build.py).
TILE_BYTES = 32768
X_BYTES = 32768
Y_BYTES = 16384

# The control CPU's address space.
CPU_RAM_BASE = 0x0000_0000  # program and data RAM (the host loads it through HOST_RAM_WINDOW)
CPU_REG_BASE = 0x1000_0000  # the CPU register block below
CPU_LOCAL_BASE = 0x2000_0000  # the DMA engines' local spaces (on-chip buffers), engine 0 first
CPU_LOCAL_STRIDE = 1 << 24  # one local space per DMA engine

# A DMA engine's local space (DMA_LOCAL addresses): region r (bits 23..20) is one on-chip
# buffer, the offset (bits 19..0) a byte in it. Region 0 is a tile buffer (CONFIG2 bytes) on
# engine 0, and on the others only in a shell without lanes; the lanes' buffers take the next
# regions. Absent regions read 0 and ignore writes.
LOCAL_REGION_SHIFT = 20
LOCAL_REGIONS = 16

# The firmware RAM, seen by the host inside its AXI4-Lite space.
HOST_RAM_WINDOW = 0x8000
HOST_RAM_WINDOW_BYTES = 0x8000


@dataclass(frozen=True)
class Field:
    name: str
    lsb: int
    width: int
    desc: str

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.lsb


@dataclass(frozen=True)
class Register:
    """One 32-bit register, or an array of ``count`` registers ``stride`` bytes apart.

    ``access`` is from the point of view of the bus the block sits on: ``ro``, ``rw`` or ``wo``
    (writes have an effect, reads return 0).
    """

    name: str
    offset: int
    access: str
    desc: str
    fields: tuple[Field, ...] = ()
    count: int = 1
    stride: int = 0

    def at(self, index: int = 0) -> int:
        if not 0 <= index < self.count:
            raise IndexError(f"{self.name}: index {index} outside 0..{self.count - 1}")
        return self.offset + index * self.stride

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")


@dataclass(frozen=True)
class Block:
    name: str
    base: int
    desc: str
    registers: tuple[Register, ...]
    _by_name: dict[str, Register] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for r in self.registers:
            if r.name in self._by_name:
                raise ValueError(f"{self.name}: register {r.name} declared twice")
            self._by_name[r.name] = r
        _check_overlaps(self)

    def reg(self, name: str) -> Register:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.name} block has no register {name!r}") from None

    def offset(self, name: str, index: int = 0) -> int:
        """Byte offset of register ``name`` (element ``index`` of an array) within the block."""
        return self.reg(name).at(index)

    def address(self, name: str, index: int = 0) -> int:
        return self.base + self.offset(name, index)


def _check_overlaps(block: Block) -> None:
    used: dict[int, str] = {}
    for r in block.registers:
        if r.offset % 4 or (r.count > 1 and r.stride % 4):
            raise ValueError(f"{block.name}.{r.name}: offsets must be word aligned")
        for i in range(r.count):
            a = r.at(i)
            if a in used:
                raise ValueError(f"{block.name}.{r.name}[{i}] overlaps {used[a]} at {a:#x}")
            used[a] = f"{r.name}[{i}]"


@dataclass(frozen=True)
class Code:
    name: str
    value: int
    desc: str


# -- shared fields --------------------------------------------------------------------------

_CONFIG0 = (
    Field("LANES", 0, 8, "number of lanes"),
    Field("DMA", 8, 4, "number of DMA engines (one AXI4 master port each)"),
    Field("BUS_BYTES", 16, 8, "AXI4 data width in bytes (8 or 16)"),
    Field("VTYPE", 24, 8, "value types: 1 fp32, 2 int32 (the DMA image's codes), 3 both"),
)
_CONFIG3 = (
    Field("X_LOG2", 0, 8, "log2 of each lane's x / B-slice buffer bytes (0: no SpMV/SpMM lanes)"),
    Field("Y_LOG2", 8, 8, "log2 of each lane's y / C buffer bytes"),
    Field("MAX_K", 16, 8, "largest SpMM k the lanes accumulate"),
    Field("KERNELS", 24, 8, "kernels the lanes run: bit 0 SpMV, bit 1 SpMM (the job's codes - 1)"),
)
_STATUS = (
    Field("STATE", 0, 4, "job state, see STATES"),
    Field("ERROR", 8, 8, "error code when STATE is ERROR, see ERRORS"),
    Field("SEQ", 16, 16, "sequence number of the job this status belongs to"),
)
_DOORBELL = (Field("SEQ", 0, 16, "job sequence number"), Field("PENDING", 31, 1, "not yet taken"))

STATES = (
    Code("IDLE", 0, "no job since reset"),
    Code("BUSY", 1, "the firmware is working on job SEQ"),
    Code("DONE", 2, "job SEQ finished without error"),
    Code("ERROR", 3, "job SEQ failed; ERROR holds the code, ERROR_INFO a detail"),
)

ERRORS = (
    Code("NONE", 0, "no error"),
    Code("BAD_MAGIC", 1, "the descriptor does not start with the job magic; ERROR_INFO: the word"),
    Code("BAD_OPCODE", 2, "unknown job opcode; ERROR_INFO: the opcode"),
    Code("BAD_ALIGN", 3, "an address or length is not a multiple of the bus width"),
    Code("BAD_LENGTH", 4, "a length is zero or too large; ERROR_INFO: the length"),
    Code("DMA_READ", 5, "a DMA read got an error response; ERROR_INFO: DMA STATUS"),
    Code("DMA_WRITE", 6, "a DMA write got an error response; ERROR_INFO: DMA STATUS"),
    Code("DMA_TIMEOUT", 7, "a DMA transfer did not finish in time; ERROR_INFO: DMA STATUS"),
    Code("LANE_TIMEOUT", 8, "a lane did not finish in time; ERROR_INFO: lane done mask"),
    Code("BAD_LANES", 9, "the job asks for more lanes than the overlay has"),
    Code("BAD_ENGINE", 10, "the job names a DMA engine the overlay does not have"),
    Code("LANE_ERROR", 11, "a lane finished with its ERROR bit; ERROR_INFO: lane error mask"),
    Code(
        "BAD_JOB",
        12,
        "an FFJB field is invalid or unsupported; ERROR_INFO: the field's byte offset",
    ),
    Code(
        "BAD_IMAGE",
        13,
        "A's image does not match the job or a tile is malformed; ERROR_INFO: tile-list entry",
    ),
    Code(
        "TOO_BIG",
        14,
        "a tile, x slice or y block exceeds the lane's buffer; ERROR_INFO: tile-list entry",
    ),
    Code("BAD_SCHEDULE", 15, "the tile schedule breaks a rule; ERROR_INFO: tile-list entry"),
)

# Job descriptor v0 (the "copy" job; see docs/firmware.md). Words of 32 bits, little-endian.
JOB_MAGIC = 0x304A_4646  # "FFJ0"
JOB_WORDS = (
    Code("MAGIC", 0, "JOB_MAGIC"),
    Code("OPCODE", 1, "what to do, see OPCODES"),
    Code("SRC", 2, "COPY, DMA: DDR address; LANES: lane CFG1; LANE_RUN: DDR address of CFG"),
    Code("DST", 3, "COPY: DDR destination address; DMA: local address"),
    Code("LENGTH", 4, "COPY: bytes to copy (multiple of the bus width)"),
    Code("ARG0", 5, "COPY, DMA: DMA engine; LANES: lane mask; LANE_RUN: the lane"),
    Code("ARG1", 6, "LANES: lane CFG0; DMA: DMA_CTRL bits TO_DDR, ZERO"),
    Code("TIMEOUT", 7, "watchdog for each wait, in cycles (0: the firmware default)"),
)
OPCODES = (
    Code("NOP", 0, "report DONE and do nothing"),
    Code("COPY", 1, "copy LENGTH bytes SRC -> tile buffer -> DST, one tile at a time"),
    Code("LANES", 2, "start the lanes in ARG0 with CFG0 = ARG1 and wait for them"),
    Code("DMA", 3, "one transfer: engine ARG0, DDR SRC, local DST, LENGTH, ARG1 = DMA_CTRL bits"),
    Code("LANE_RUN", 4, "lane ARG0: load its 8 config words from DDR at SRC, start, wait"),
)

CTRL_BITS = (
    Field(
        "CPU_RESET",
        0,
        1,
        "1 holds the control CPU and the lanes in reset, and each DMA engine once it has drained "
        "(the value after power-up)",
    ),
    Field("CLEAR", 1, 1, "write 1: clear the performance counters (self-clearing)"),
    Field("CPU_TRAP", 8, 1, "read only: the CPU stopped on an illegal instruction"),
    Field(
        "DRAINED",
        9,
        1,
        "read only: CPU_RESET is set and every DMA engine has finished the bursts it had in "
        "flight and is held in reset (the host waits for it before reloading the firmware)",
    ),
)
DMA_CTRL_BITS = (
    Field("GO", 0, 1, "write 1 to queue a transfer of DMA_DDR, DMA_LOCAL, DMA_LENGTH"),
    Field("TO_DDR", 1, 1, "0: DDR -> local buffer, 1: local buffer -> DDR"),
    Field(
        "ZERO",
        2,
        1,
        "with TO_DDR = 0: write zeros to the local range, no DDR access; with TO_DDR = 1: "
        "write the range out and leave zeros behind",
    ),
    Field("ABORT", 3, 1, "write 1 to drop the queued transfers (the running one completes)"),
    Field(
        "AFTER_LANE",
        4,
        1,
        "the transfer waits at the head of the queue (and the ones behind it with it) until "
        "lane LANE is idle: not running, no start pending",
    ),
    Field("LANE", 8, 4, "with AFTER_LANE: the lane"),
)
DMA_STATUS_BITS = (
    Field("BUSY", 0, 1, "a transfer is running or queued"),
    Field("FULL", 1, 1, "the queue holds DMA_QUEUE_DEPTH transfers"),
    Field(
        "ERROR",
        2,
        1,
        "a transfer got an error response; the engine dropped the transfers queued behind it "
        "and ignores GO until reset",
    ),
    Field("TO_DDR", 3, 1, "the failed transfer's direction"),
    Field("RESP", 4, 2, "the failed transfer's first error response: 2 SLVERR, 3 DECERR"),
    Field("OVERFLOW", 6, 1, "a GO found the queue full: that transfer was lost"),
    Field("WAITING", 7, 1, "no transfer runs: the next one waits for its lane (AFTER_LANE)"),
    Field(
        "DONE_SEQ",
        16,
        16,
        "transfers finished since reset (mod 2^16): transfer s (the s-th GO) is done when "
        "DONE_SEQ - s >= 0; after ERROR, the failed transfer's number",
    ),
)

HOST = Block(
    "HOST",
    0x0,
    "AXI4-Lite slave of the shell, as seen by the host",
    (
        Register("ID", 0x000, "ro", "identifies a fiberflow shell: ID_MAGIC"),
        Register("VERSION", 0x004, "ro", "register map version, major << 16 | minor"),
        Register("CONFIG0", 0x008, "ro", "overlay parameters", _CONFIG0),
        Register("CONFIG1", 0x00C, "ro", "firmware RAM size in bytes"),
        Register("CONFIG2", 0x010, "ro", "tile buffer bytes per DMA engine"),
        Register("CTRL", 0x014, "rw", "CPU reset, counter clear, drain status", CTRL_BITS),
        Register(
            "DOORBELL",
            0x018,
            "rw",
            "write a job sequence number to submit the job at JOB_ADDR; read: bit 31 pending",
            _DOORBELL,
        ),
        Register("JOB_ADDR", 0x01C, "rw", "DDR address of the job descriptor"),
        Register("STATUS", 0x020, "ro", "job status, written by the firmware", _STATUS),
        Register("ERROR_INFO", 0x024, "ro", "detail for the error in STATUS"),
        Register("HEARTBEAT", 0x028, "ro", "incremented by the firmware while it runs"),
        Register("MAILBOX", 0x02C, "ro", "words the firmware returns", count=MAX_DMA, stride=4),
        Register("CYCLES_LO", 0x040, "ro", "cycles since the last clear; reading latches HI"),
        Register("CYCLES_HI", 0x044, "ro", "upper word of the cycle counter, latched"),
        Register("TILES_DONE", 0x048, "ro", "tiles the firmware finished since the last clear"),
        Register("CONFIG3", 0x04C, "ro", "lane buffers and kernels", _CONFIG3),
        Register(
            "DMA_BUSY", 0x100, "ro", "cycles DMA engine e had a transfer", count=MAX_DMA, stride=16
        ),
        Register(
            "DMA_STALL",
            0x104,
            "ro",
            "cycles DMA engine e was busy but moved no data",
            count=MAX_DMA,
            stride=16,
        ),
        Register("DMA_RD_BYTES", 0x108, "ro", "bytes DMA engine e read", count=MAX_DMA, stride=16),
        Register("DMA_WR_BYTES", 0x10C, "ro", "bytes DMA engine e wrote", count=MAX_DMA, stride=16),
        Register("LANE_BUSY", 0x200, "ro", "cycles lane n was running", count=MAX_LANES, stride=8),
        Register(
            "LANE_STALL",
            0x204,
            "ro",
            "cycles lane n was running but blocked (0 until lanes have streams)",
            count=MAX_LANES,
            stride=8,
        ),
    ),
)

CPU = Block(
    "CPU",
    CPU_REG_BASE,
    "peripheral registers, as seen by the control CPU",
    (
        Register("ID", 0x000, "ro", "ID_MAGIC"),
        Register("VERSION", 0x004, "ro", "register map version"),
        Register("CONFIG0", 0x008, "ro", "overlay parameters", _CONFIG0),
        Register("CONFIG1", 0x00C, "ro", "firmware RAM size in bytes"),
        Register("CONFIG2", 0x010, "ro", "tile buffer bytes per DMA engine"),
        Register("DOORBELL", 0x014, "ro", "the host's last doorbell", _DOORBELL),
        Register("DOORBELL_ACK", 0x018, "wo", "any write clears DOORBELL.PENDING"),
        Register("JOB_ADDR", 0x01C, "ro", "DDR address of the job descriptor"),
        Register("STATUS", 0x020, "rw", "job status shown to the host", _STATUS),
        Register("ERROR_INFO", 0x024, "rw", "error detail shown to the host"),
        Register("HEARTBEAT", 0x028, "rw", "liveness counter shown to the host"),
        Register("MAILBOX", 0x02C, "rw", "words shown to the host", count=MAX_DMA, stride=4),
        Register("CYCLES_LO", 0x040, "ro", "cycle counter; reading latches HI"),
        Register("CYCLES_HI", 0x044, "ro", "upper word, latched"),
        Register("TILE_DONE", 0x048, "wo", "any write adds one to the host's TILES_DONE"),
        Register("CONFIG3", 0x04C, "ro", "lane buffers and kernels", _CONFIG3),
        Register(
            "DMA_DDR", 0x100, "rw", "DMA engine e: DDR byte address", count=MAX_DMA, stride=32
        ),
        Register(
            "DMA_LOCAL",
            0x104,
            "rw",
            "DMA engine e: local address (region << 20 | byte offset)",
            count=MAX_DMA,
            stride=32,
        ),
        Register(
            "DMA_LENGTH", 0x108, "rw", "DMA engine e: bytes to move", count=MAX_DMA, stride=32
        ),
        Register(
            "DMA_CTRL", 0x10C, "wo", "DMA engine e: queue a transfer", DMA_CTRL_BITS, MAX_DMA, 32
        ),
        Register("DMA_STATUS", 0x110, "ro", "DMA engine e: state", DMA_STATUS_BITS, MAX_DMA, 32),
        *(
            Register(
                f"LANE_CFG{w}",
                LANE_BASE + 4 * w,
                "rw",
                f"lane n: configuration word {w} (meaning: the lane's documentation)",
                count=MAX_LANES,
                stride=LANE_STRIDE,
            )
            for w in range(LANE_CFG_WORDS)
        ),
        Register(
            "LANE_CTRL",
            LANE_BASE + 0x20,
            "wo",
            "lane n: start, now or once a transfer has finished (every write sets ARM and "
            "SEQ); the lane runs with the LANE_CFG words as they were at its start",
            (
                Field("START", 0, 1, "write 1 to start the lane (restarts a running lane)"),
                Field(
                    "ARM",
                    1,
                    1,
                    "1: start the lane once its DMA engine (n % engines) has finished transfer "
                    "SEQ (DMA_STATUS.DONE_SEQ - SEQ, 16-bit, not negative) and the lane is "
                    "idle; 0: disarm",
                ),
                Field("CLEAR", 2, 1, "write 1 to clear FAILED"),
                Field("SEQ", 16, 16, "with ARM: the transfer's number"),
            ),
            MAX_LANES,
            LANE_STRIDE,
        ),
        Register(
            "LANE_STATUS",
            LANE_BASE + 0x24,
            "ro",
            "lane n: state",
            (
                Field("BUSY", 0, 1, "running"),
                Field("DONE", 1, 1, "finished since START"),
                Field("ERROR", 2, 1, "with DONE: the lane refused its configuration or data"),
                Field("ARMED", 3, 1, "a start is pending (DONE, ERROR: the previous run's)"),
                Field("FAILED", 4, 1, "a run since CLEAR ended with ERROR"),
            ),
            MAX_LANES,
            LANE_STRIDE,
        ),
        Register("LANE_DONE", 0x800, "ro", "bit n: lane n DONE, no start pending"),
        Register("LANE_ERROR", 0x804, "ro", "bit n: lane n ERROR"),
        Register("LANE_ARMED", 0x808, "ro", "bit n: lane n ARMED (a start is pending)"),
        Register("LANE_FAILED", 0x80C, "ro", "bit n: lane n FAILED"),
    ),
)


def error_message(code: int) -> str:
    """The description of error ``code`` (for the host's exception messages)."""
    for e in ERRORS:
        if e.value == code:
            return f"{e.name}: {e.desc}"
    return f"unknown error code {code}"


# -- generators -----------------------------------------------------------------------------

_HEADER_NOTE = (
    "Generated by python -m fiberflow.overlay.regmap from overlay/regmap.py; do not edit."
)


def c_header() -> str:
    """``firmware/regs.h``: the map as C macros."""
    out = [f"/* {_HEADER_NOTE} */", "#ifndef FF_REGS_H", "#define FF_REGS_H", ""]
    d = out.append
    d(f"#define FF_MAP_VERSION 0x{VERSION:08x}u")
    d(f"#define FF_ID_MAGIC 0x{ID_MAGIC:08x}u")
    d(f"#define FF_JOB_MAGIC 0x{JOB_MAGIC:08x}u")
    d(f"#define FF_MAX_LANES {MAX_LANES}")
    d(f"#define FF_MAX_DMA {MAX_DMA}")
    d(f"#define FF_LANE_BASE 0x{LANE_BASE:03x}u")
    d(f"#define FF_LANE_STRIDE 0x{LANE_STRIDE:02x}u")
    d(f"#define FF_LANE_CFG_WORDS {LANE_CFG_WORDS}")
    d(f"#define FF_CPU_RAM_BASE 0x{CPU_RAM_BASE:08x}u")
    d(f"#define FF_CPU_REG_BASE 0x{CPU_REG_BASE:08x}u")
    d(f"#define FF_CPU_LOCAL_BASE 0x{CPU_LOCAL_BASE:08x}u")
    d(f"#define FF_CPU_LOCAL_STRIDE 0x{CPU_LOCAL_STRIDE:08x}u")
    d(f"#define FF_LOCAL_REGION_SHIFT {LOCAL_REGION_SHIFT}")
    d(f"#define FF_DMA_QUEUE_DEPTH {DMA_QUEUE_DEPTH}")
    d(f"#define FF_X_GRAIN {X_GRAIN}u")
    d("")
    d("#define FF_REG(addr) (*(volatile unsigned int *)(addr))")
    d("")
    for r in CPU.registers:
        addr = CPU.base + r.offset
        if r.count == 1:
            d(f"#define FF_{r.name} FF_REG(0x{addr:08x}u) /* {r.access}: {r.desc} */")
        else:
            d(
                f"#define FF_{r.name}(i) FF_REG(0x{addr:08x}u + (i) * {r.stride}u)"
                f" /* {r.access}: {r.desc} */"
            )
    d("")
    fields = {f"{r.name}_{f.name}": f for r in CPU.registers for f in r.fields}
    fields |= {f"CTRL_{f.name}": f for f in CTRL_BITS}
    for name, f in fields.items():
        d(f"#define FF_{name}_SHIFT {f.lsb}")
        d(f"#define FF_{name}_MASK 0x{f.mask:08x}u")
    d("")
    for prefix, codes in (("STATE", STATES), ("ERR", ERRORS), ("OP", OPCODES), ("JOBW", JOB_WORDS)):
        for c in codes:
            d(f"#define FF_{prefix}_{c.name} {c.value} /* {c.desc} */")
        d("")
    d("#endif")
    return "\n".join(out) + "\n"


def _reg_rows(block: Block) -> list[str]:
    rows = ["| offset | name | access | description |", "|---|---|---|---|"]
    for r in block.registers:
        where = f"`0x{r.offset:03x}`"
        if r.count > 1:
            where = f"`0x{r.offset:03x} + i*0x{r.stride:x}` (i < {r.count})"
        desc = r.desc
        if r.fields:
            desc += "; " + ", ".join(
                f"`[{f.lsb + f.width - 1}:{f.lsb}]` {f.name}: {f.desc}"
                if f.width > 1
                else f"`[{f.lsb}]` {f.name}: {f.desc}"
                for f in r.fields
            )
        rows.append(f"| {where} | {r.name} | {r.access} | {desc} |")
    return rows


def _code_rows(codes: tuple[Code, ...], what: str) -> list[str]:
    rows = [f"| {what} | name | meaning |", "|---|---|---|"]
    rows += [f"| {c.value} | {c.name} | {c.desc} |" for c in codes]
    return rows


def markdown() -> str:
    """``docs/registers.md``: the map as tables."""
    out = [
        "# Registers",
        "",
        f"<!-- {_HEADER_NOTE} -->",
        "",
        "The one source is `overlay/regmap.py`; the firmware header `firmware/regs.h` and this",
        "page are generated from it. Array registers are sized for the largest overlay",
        f"({MAX_DMA} DMA engines, {MAX_LANES} lanes); `CONFIG0` says how many a shell has, and",
        "registers of absent engines or lanes read 0.",
        "",
        f"Map version `0x{VERSION:08x}`, ID `0x{ID_MAGIC:08x}`.",
        "",
        "## Host (AXI4-Lite slave)",
        "",
        f"The firmware RAM appears at `0x{HOST_RAM_WINDOW:04x}` (up to {HOST_RAM_WINDOW_BYTES}",
        "bytes; `CONFIG1` has the size): the host loads the program there while `CTRL.CPU_RESET`",
        "holds the CPU, then releases it.",
        "",
        "Setting `CTRL.CPU_RESET` resets the CPU and the lanes at once. A DMA engine first drains:",
        "it issues no new burst, takes and drops the rest of every read burst it started, sends",
        "the W beats still owed for the write bursts it started (those whose data it had not yet",
        "read from its buffer with no byte strobes set) and takes every write response; only then",
        "is it reset. `CTRL.DRAINED` reads 1 once every engine is drained and held. The host waits",
        "for it before it loads the firmware, so no beat of an aborted transfer reaches the next",
        "one.",
        "",
        *_reg_rows(HOST),
        "",
        "## Control CPU",
        "",
        f"Address space: RAM at `0x{CPU_RAM_BASE:08x}`, these registers at",
        f"`0x{CPU_REG_BASE:08x}`, and the local space of DMA engine e (its on-chip buffers) at",
        f"`0x{CPU_LOCAL_BASE:08x} + e * 0x{CPU_LOCAL_STRIDE:x}`.",
        "",
        "## Local spaces",
        "",
        "Each DMA engine reaches on-chip buffers through its local space, addressed by",
        f"`DMA_LOCAL`: bits 23..{LOCAL_REGION_SHIFT} pick one of {LOCAL_REGIONS} regions, the",
        f"low {LOCAL_REGION_SHIFT} bits are a byte offset in it. Region 0 is the engine's tile",
        "buffer (`CONFIG2` bytes); the lanes' buffers take the next regions. Absent regions read",
        "0 and ignore writes. The CPU sees the same spaces (32-bit accesses).",
        "",
        *_reg_rows(CPU),
        "",
        "## DMA command queues",
        "",
        "Writing `DMA_CTRL` with GO queues one transfer: the values of `DMA_DDR`, `DMA_LOCAL`",
        "and `DMA_LENGTH` at that moment and the direction bits. Each engine holds",
        f"{DMA_QUEUE_DEPTH} queued transfers besides the one it runs, and runs them in order,",
        "back to back. Transfers are numbered from 1 (the first GO after reset); the firmware",
        "keeps count of the GOs it wrote and waits for transfer s until `DMA_STATUS.DONE_SEQ - s`",
        "(16-bit, signed) is not negative, with at most DMA_QUEUE_DEPTH + 1 unfinished. A GO",
        "while FULL is lost (OVERFLOW). After an error response the engine finishes the failed",
        "transfer's bursts, drops the rest of its queue and ignores GO until `CTRL.CPU_RESET`;",
        "ABORT drops the queue without an error (the firmware's way out of a failed job).",
        "",
        "## Job states (`STATUS.STATE`)",
        "",
        *_code_rows(STATES, "value"),
        "",
        "## Error codes (`STATUS.ERROR`)",
        "",
        *_code_rows(ERRORS, "code"),
        "",
        "## Job descriptor v0",
        "",
        f"Word offsets; the descriptor starts with `0x{JOB_MAGIC:08x}` and is 32 bytes.",
        "",
        *_code_rows(JOB_WORDS, "word"),
        "",
        "### Opcodes",
        "",
        *_code_rows(OPCODES, "opcode"),
    ]
    return "\n".join(out) + "\n"


def generated_files(root: Path) -> dict[Path, str]:
    """The generated files, keyed by path under the source tree ``root``."""
    return {root / "firmware" / "regs.h": c_header(), root / "docs" / "registers.md": markdown()}


def main(argv: list[str] | None = None) -> int:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent
    for path, text in generated_files(root).items():
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
