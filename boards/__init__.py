"""Board definitions: one TOML file per board in this folder, loaded into typed dataclasses.

    >>> from fiberflow import boards
    >>> boards.names()
    ['kv260', 'pynq-z1', 'pynq-z2', 'ultra96-v2', 'zcu104']
    >>> b = boards.load("PYNQ-Z2")
    >>> b.part, hex(b.control.base), b.resources.lut
    ('xc7z020clg400-1', '0x40000000', 53200)

A board name matches a file stem with case, ``-`` and ``_`` ignored (``pynq_z2``, ``PYNQ-Z2``).
:func:`load` also takes the path of a TOML file, so a user can try a new board without
touching the package; to add it for everyone, drop the file into this folder. Every field is
checked on load and a missing or malformed one raises :class:`~fiberflow.errors.BoardError`
naming the file, the field and what was expected. docs/boards.md describes each field.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fiberflow.errors import BoardError, UnknownBoardError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "PS_TYPES",
    "YOSYS_FAMILIES",
    "Board",
    "ControlPort",
    "Cpu",
    "Ddr",
    "Energy",
    "Figure",
    "HpPort",
    "Resources",
    "all_boards",
    "load",
    "names",
]

# The processing systems a build script knows how to instantiate, and the yosys families
# each one's fabric maps to.
PS_TYPES = {"ps7": "xc7", "zynq_ultra_ps_e": "xcup"}
YOSYS_FAMILIES = tuple(PS_TYPES.values())


@dataclass(frozen=True)
class HpPort:
    """A PS slave port the overlay's AXI4 masters use to reach DDR."""

    port: str  # the PS interface pin name, e.g. "S_AXI_HP0" or "S_AXI_HP0_FPD"
    width: int  # data bits
    clock_mhz: float

    @property
    def bytes_per_beat(self) -> int:
        return self.width // 8

    def bytes_per_cycle(self, fabric_mhz: float) -> float:
        """Bytes per fabric cycle: a beat per cycle of the slower of the two clocks."""
        return self.bytes_per_beat * min(1.0, self.clock_mhz / fabric_mhz)


@dataclass(frozen=True)
class ControlPort:
    """The PS master port the host CPU uses to reach the overlay's AXI4-Lite slave."""

    port: str
    base: int  # physical address of the overlay's register block
    width: int


@dataclass(frozen=True)
class Ddr:
    """The board's DDR and the figures the rtl device's DDR model uses."""

    kind: str
    bus_bits: int
    mega_transfers: int  # Mb/s per pin
    latency_cycles: int  # read latency in fabric cycles (AR handshake to first R beat)
    bytes_per_cycle: int  # sustained DDR bandwidth at the first fabric clock

    @property
    def peak_mb_s(self) -> float:
        return self.bus_bits / 8 * self.mega_transfers


@dataclass(frozen=True)
class Resources:
    """Programmable-logic capacity: 6-input LUTs, flip-flops, 36-Kb BRAMs, UltraRAMs, DSPs."""

    lut: int
    ff: int
    bram36: int
    uram: int
    dsp: int


# How sure a figure of the energy model is (docs/energy.md): read off this board by a named
# measurement, a vendor's document, worked out from published figures by a stated calculation,
# or chosen with no source found.
CONFIDENCE = ("measured", "published", "estimate", "assumption")


@dataclass(frozen=True)
class Figure:
    """One constant of the energy or CPU model, with where it comes from."""

    value: float
    source: str
    confidence: str  # one of CONFIDENCE


@dataclass(frozen=True)
class Energy:
    """What a run on the board costs in energy (``RunStats.energy_j``, docs/energy.md)."""

    board_power_w: Figure  # the whole board, idle, with the PS running Linux
    overlay_power_w: Figure  # the overlay's fabric while loaded (clocks, control CPU, leakage)
    lane_op_pj: Figure  # one multiply-add in a lane, its buffer reads included
    ddr_pj_per_byte: Figure  # one byte moved between DDR and the fabric


@dataclass(frozen=True)
class Cpu:
    """The board's own processor running scipy's CSR SpMV/SpMM on one core: the model
    ``fiberflow bench energy`` compares the overlay against (docs/energy.md)."""

    name: str  # e.g. "Cortex-A9"
    cores: int
    clock_mhz: Figure
    cycles_per_nnz: Figure  # SpMV's inner loop, per stored nonzero
    cycles_per_extra_column: Figure  # SpMM: each column of B past the first, per nonzero
    stream_gb_s: Figure  # what one core streams from DDR
    active_power_w: Figure  # the board's power above idle with one core at work


@dataclass(frozen=True)
class Board:
    key: str  # the file stem, e.g. "pynq-z2"
    name: str  # the display name, e.g. "PYNQ-Z2"
    vendor: str
    part: str  # the FPGA part for create_project -part
    board_part: str  # the Vivado board part, vendor:board:part0:revision
    ps: str  # "ps7" (Zynq-7000) or "zynq_ultra_ps_e" (Zynq UltraScale+)
    yosys_family: str  # synth_xilinx -family: "xc7" or "xcup"
    fabric_clocks_mhz: tuple[float, ...]
    control: ControlPort
    hp: tuple[HpPort, ...]
    ddr: Ddr
    resources: Resources
    pynq_images: tuple[str, ...]
    path: Path
    energy: Energy
    cpu: Cpu

    @property
    def fabric_clock_mhz(self) -> float:
        """The clock the overlay runs on (the first fabric clock)."""
        return self.fabric_clocks_mhz[0]

    @property
    def pynq_last(self) -> str:
        """The newest PYNQ image for this board."""
        return max(self.pynq_images, key=_version_key)

    @property
    def is_zynq7000(self) -> bool:
        return self.ps == "ps7"

    def bus_bytes_per_cycle(self, ports: int) -> float:
        """Bytes per fabric cycle the overlay can move with ``ports`` AXI masters.

        Each master has an HP port of its own; the total is capped by the DDR's sustained
        bandwidth. This is the ``bus_bytes_per_cycle`` of the performance model.
        """
        if not 1 <= ports <= len(self.hp):
            raise BoardError(
                f"{self.name} has {len(self.hp)} HP port(s); an overlay with {ports} DMA "
                f"master(s) does not fit: build it with at most {len(self.hp)}"
            )
        per_port = sum(p.bytes_per_cycle(self.fabric_clock_mhz) for p in self.hp[:ports])
        return min(per_port, float(self.ddr.bytes_per_cycle))

    def ddr_model(self) -> dict[str, float | int]:
        """The board's DDR figures under the names of the rtl device's DDR model
        (``fiberflow.host.devices.rtl.DdrModel(**board.ddr_model())``)."""
        return {
            "read_latency": self.ddr.latency_cycles,
            "port_bytes_per_cycle": self.hp[0].bytes_per_cycle(self.fabric_clock_mhz),
            "total_bytes_per_cycle": float(self.ddr.bytes_per_cycle),
            # the Zynq-7000's HP ports are AXI3 (UG585 ch. 5): bursts of at most 16 beats
            "max_burst_beats": 16 if self.is_zynq7000 else 256,
        }


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def _normalise(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def _files() -> dict[str, Any]:
    folder = resources.files(__name__)
    return {
        p.name[: -len(".toml")]: p
        for p in folder.iterdir()
        if p.name.endswith(".toml") and p.is_file()
    }


def names() -> list[str]:
    """The keys of every board shipped with fiberflow, sorted."""
    return sorted(_files())


def load(name: str | Path) -> Board:
    """The board called ``name`` (case, ``-`` and ``_`` ignored), or the board file at a path."""
    if isinstance(name, Path) or str(name).endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise UnknownBoardError(f"no board file at {path}: check the path")
        return _parse(path.stem, path.read_text(encoding="utf-8"), path)
    files = _files()
    wanted = _normalise(str(name))
    for key, res in files.items():
        if _normalise(key) == wanted:
            return _parse(key, res.read_text(encoding="utf-8"), Path(str(res)))
    known = ", ".join(sorted(files))
    raise UnknownBoardError(
        f"unknown board {name!r}; known boards: {known}. "
        "To add a board, copy one of their files in fiberflow/boards/ (see docs/boards.md), "
        "or pass the path of your own .toml file"
    )


def all_boards() -> list[Board]:
    return [load(k) for k in names()]


# -- validation ---------------------------------------------------------------------------------

_MISSING = object()
_VERSION = re.compile(r"\d+(\.\d+)*")


class _Reader:
    """Pulls typed fields out of a parsed TOML table, with errors that name file and field."""

    def __init__(self, where: str, data: dict[str, Any], prefix: str = "") -> None:
        self.where, self.data, self.prefix = where, data, prefix

    def fail(self, field: str, problem: str) -> BoardError:
        return BoardError(f"board file {self.where}: field '{self.prefix}{field}' {problem}")

    def get(self, field: str, kind: type | tuple[type, ...], what: str) -> Any:
        value = self.data.get(field, _MISSING)
        if value is _MISSING:
            raise self.fail(field, f"is missing; expected {what}")
        ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
        if not ok:
            raise self.fail(field, f"is {value!r}; expected {what}")
        return value

    def text(self, field: str, what: str = "a string") -> str:
        value = self.get(field, str, what)
        if not value.strip():
            raise self.fail(field, f"is empty; expected {what}")
        return value

    def positive(self, field: str, what: str, zero_ok: bool = False) -> int:
        value = self.get(field, int, what)
        if value < 0 or (value == 0 and not zero_ok):
            raise self.fail(field, f"is {value}; expected {what}")
        return value

    def mhz(self, field: str) -> float:
        value = self.get(field, (int, float), "a clock frequency in MHz")
        if not 0 < value <= 1000:
            raise self.fail(field, f"is {value}; expected a clock frequency in MHz (0 to 1000)")
        return float(value)

    def table(self, field: str) -> _Reader:
        value = self.get(field, dict, f"a [{self.prefix}{field}] table")
        return _Reader(self.where, value, f"{self.prefix}{field}.")

    def figure(self, field: str, what: str, low: float, high: float) -> Figure:
        """A constant with its source: ``{ value = ..., source = "...", confidence = "..." }``."""
        t = self.table(field)
        value = t.get("value", (int, float), what)
        if not low <= value <= high:
            raise t.fail("value", f"is {value}; expected {what}, from {low:g} to {high:g}")
        source = t.text("source", "where the figure comes from")
        confidence = t.text("confidence", f"one of {', '.join(CONFIDENCE)}")
        if confidence not in CONFIDENCE:
            expected = ", ".join(CONFIDENCE)
            raise t.fail("confidence", f"is {confidence!r}; expected one of {expected}")
        return Figure(float(value), source, confidence)

    def tables(self, field: str) -> list[_Reader]:
        what = f"one or more [[{self.prefix}{field}]] tables"
        value = self.get(field, list, what)
        if not value or not all(isinstance(v, dict) for v in value):
            raise self.fail(field, f"is malformed; expected {what}")
        return [_Reader(self.where, v, f"{self.prefix}{field}[{i}].") for i, v in enumerate(value)]


def _parse(key: str, text: str, path: Path) -> Board:
    where = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BoardError(f"board file {where} is not valid TOML: {exc}") from None
    r = _Reader(where, data)

    board_part = r.text("board_part", "a Vivado board part such as 'tul.com.tw:pynq-z2:part0:1.0'")
    if len(board_part.split(":")) != 4:
        raise r.fail("board_part", f"is {board_part!r}; expected vendor:board:part0:revision")
    ps = r.text("ps", f"one of {', '.join(PS_TYPES)}")
    if ps not in PS_TYPES:
        raise r.fail("ps", f"is {ps!r}; expected one of {', '.join(PS_TYPES)}")
    family = r.text("yosys_family", f"one of {', '.join(YOSYS_FAMILIES)}")
    if family != PS_TYPES[ps]:
        raise r.fail("yosys_family", f"is {family!r}; a {ps} board has {PS_TYPES[ps]!r} fabric")

    fabric = r.table("fabric")
    clocks = fabric.get("clocks_mhz", list, "a list of clock frequencies in MHz")
    if not clocks or not all(isinstance(c, (int, float)) and 0 < c <= 1000 for c in clocks):
        raise fabric.fail("clocks_mhz", f"is {clocks!r}; expected a list of MHz values (0 to 1000)")

    c = r.table("control")
    control = ControlPort(
        port=c.text("port", "the PS master port name, e.g. 'M_AXI_GP0'"),
        base=c.positive("base", "the overlay's physical base address, e.g. 0x4000_0000"),
        width=c.get("width", int, "the port width in bits (32)"),
    )
    if control.base % 0x1_0000:
        raise c.fail("base", f"is {control.base:#x}; expected a 64 KiB aligned address")
    if control.width != 32:
        raise c.fail("width", f"is {control.width}; the overlay's control slave is 32 bits")

    hp = []
    for h in r.tables("hp"):
        port = HpPort(
            port=h.text("port", "the PS slave port name, e.g. 'S_AXI_HP0'"),
            width=h.get("width", int, "the data width in bits: 32, 64 or 128"),
            clock_mhz=h.mhz("clock_mhz"),
        )
        allowed = (32, 64) if ps == "ps7" else (32, 64, 128)
        if port.width not in allowed:
            raise h.fail("width", f"is {port.width}; a {ps} HP port is {allowed} bits wide")
        hp.append(port)
    if len({p.port for p in hp}) != len(hp):
        raise r.fail("hp", "names the same port twice")

    d = r.table("ddr")
    ddr = Ddr(
        kind=d.text("kind", "the memory type, e.g. 'DDR3'"),
        bus_bits=d.positive("bus_bits", "the DDR data bus width in bits"),
        mega_transfers=d.positive("mega_transfers", "the data rate in Mb/s per pin"),
        latency_cycles=d.positive("latency_cycles", "the read latency in fabric cycles"),
        bytes_per_cycle=d.positive("bytes_per_cycle", "sustained bytes per fabric cycle"),
    )
    peak_per_cycle = ddr.peak_mb_s / float(clocks[0])
    if ddr.bytes_per_cycle > peak_per_cycle:
        raise d.fail(
            "bytes_per_cycle",
            f"is {ddr.bytes_per_cycle}, above the DDR's peak of {peak_per_cycle:.1f} bytes per "
            f"cycle at {clocks[0]} MHz ({ddr.bus_bits} bits x {ddr.mega_transfers} Mb/s)",
        )

    res = r.table("resources")
    resources_ = Resources(
        lut=res.positive("lut", "the number of 6-input LUTs"),
        ff=res.positive("ff", "the number of flip-flops"),
        bram36=res.positive("bram36", "the number of 36-Kb block RAMs"),
        uram=res.positive("uram", "the number of UltraRAMs (0 if none)", zero_ok=True),
        dsp=res.positive("dsp", "the number of DSP slices"),
    )

    p = r.table("pynq")
    images = p.get("images", list, "a list of PYNQ image versions, e.g. ['3.1']")
    if not images or not all(isinstance(v, str) and _VERSION.fullmatch(v) for v in images):
        raise p.fail("images", f"is {images!r}; expected a list of versions such as ['3.1']")

    e = r.table("energy")
    energy = Energy(
        board_power_w=e.figure("board_power_w", "the board's idle power in W", 0.1, 1000),
        overlay_power_w=e.figure("overlay_power_w", "the loaded overlay's power in W", 0, 100),
        lane_op_pj=e.figure("lane_op_pj", "the energy of a lane's multiply-add in pJ", 0, 1e4),
        ddr_pj_per_byte=e.figure("ddr_pj_per_byte", "the energy of a DDR byte in pJ", 0, 1e4),
    )
    c = r.table("cpu")
    cpu = Cpu(
        name=c.text("name", "the processor's name, e.g. 'Cortex-A9'"),
        cores=c.positive("cores", "the number of cores"),
        clock_mhz=c.figure("clock_mhz", "the processor's clock in MHz", 1, 10_000),
        cycles_per_nnz=c.figure("cycles_per_nnz", "cycles per nonzero", 0.1, 1000),
        cycles_per_extra_column=c.figure(
            "cycles_per_extra_column", "cycles per nonzero and extra column", 0.1, 1000
        ),
        stream_gb_s=c.figure("stream_gb_s", "one core's DDR bandwidth in GB/s", 0.01, 1000),
        active_power_w=c.figure("active_power_w", "the power above idle in W", 0, 500),
    )

    return Board(
        key=key,
        name=r.text("name", "the board's display name"),
        vendor=r.text("vendor", "the board's maker"),
        part=r.text("part", "an FPGA part such as 'xc7z020clg400-1'"),
        board_part=board_part,
        ps=ps,
        yosys_family=family,
        fabric_clocks_mhz=tuple(float(x) for x in clocks),
        control=control,
        hp=tuple(hp),
        ddr=ddr,
        resources=resources_,
        pynq_images=tuple(images),
        path=path,
        energy=energy,
        cpu=cpu,
    )
