"""``fiberflow build``: a self-contained build folder for one board.

    out/
      manifest.json          parts, overlay parameters, versions, SHA-256 of every file
      rtl/                   the overlay's Verilog (+ fiberflow_overlay.v, the block-design wrapper)
      firmware.bin           the control firmware image (loaded at run time, not in the bitstream)
      registers.md, regs.h,  the register map
      registers.json
      vivado/build.tcl       the Vivado batch script
      overlay/               fiberflow.bit + fiberflow.hwh, once Vivado has run
      emulation/             a .hwh written by fiberflow and a placeholder .bit (not a
                             bitstream) for ff.open("pynq", overlay=..., emulate=True)

The overlay's Verilog comes from :func:`overlay_sources`, the one place the build calls the
overlay generator (``fiberflow.overlay.shell.top``). Tests pass another generator with the same
contract.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fiberflow._version import __version__
from fiberflow.boards import Board, hwh
from fiberflow.boards import vivado_tcl as vt
from fiberflow.errors import BuildError, ToolchainError
from fiberflow.host import energy
from fiberflow.overlay import regmap  # plain Python: no hw extra needed

__all__ = [
    "MANIFEST",
    "BuildFolder",
    "OverlaySources",
    "default_params",
    "generate",
    "overlay_sources",
    "run_vivado",
    "vivado_command",
    "with_clock",
    "with_defaults",
]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
TCL = "vivado/build.tcl"


@dataclass(frozen=True)
class OverlaySources:
    """What the overlay generator returns for one parameter set."""

    top: str  # the top module's name
    files: Mapping[str, str]  # Verilog file name -> text; one of them defines ``top``
    params: Mapping[str, Any]  # the full parameter set, defaults filled in
    firmware: bytes = b""  # the control firmware image


def overlay_sources(params: Mapping[str, Any]) -> OverlaySources:
    """The overlay's Verilog and firmware for ``params`` (``ShellConfig`` fields)."""
    try:
        from fiberflow.overlay import firmware
        from fiberflow.overlay.shell import top
    except ImportError as exc:  # migen and friends are in the hw extra
        raise ToolchainError(
            f"generating the overlay needs the hardware toolchain ({exc}); install fiberflow "
            "with its hw extra from a checkout: pip install -e '.[hw]' (docs/deploy.md)"
        ) from exc
    params = dict(params)
    if isinstance(params.get("kernels"), str):  # --param kernels=spmv,spmm
        params["kernels"] = tuple(k.strip() for k in params["kernels"].split(",") if k.strip())
    try:
        config = top.ShellConfig(**params)
        files = top.verilog(config)
    except (TypeError, ValueError) as exc:
        raise BuildError(f"invalid overlay parameters {params}: {exc}") from None
    return OverlaySources(
        top=top.TOP, files=files, params=config.as_dict(), firmware=firmware.image()
    )


# How far the clock PYNQ programs may be from the one asked for: the host refuses a board
# whose measured fabric clock is more than 2 % from the build's (host/devices/pynq_device.py).
CLOCK_TOLERANCE = 0.01


def with_clock(board: Board, mhz: float) -> Board:
    """``board`` with its fabric clock (the PS clock the overlay runs on) set to ``mhz``.

    Only clocks the PS can divide from its PLL (within 1 %) are accepted: the bitstream is
    timed, and the host's statistics computed, at the clock the board really runs.
    """
    if not mhz > 0:
        raise BuildError(f"--clock {mhz:g}: the fabric clock must be a positive MHz figure")
    actual = hwh.fabric_clock_mhz(board.ps, mhz)
    if abs(actual - mhz) > CLOCK_TOLERANCE * mhz:
        raise BuildError(
            f"--clock {mhz:g}: the {board.name}'s PS divides its PLL to {actual:.3f} MHz at "
            f"best, more than {CLOCK_TOLERANCE:.0%} away; ask for --clock {actual:.3f}"
        )
    return dataclasses.replace(board, fabric_clocks_mhz=(mhz, *board.fabric_clocks_mhz[1:]))


# Block RAM of the overlay by the estimate's count: a 36-Kb block RAM holds 4 KB of a lane's
# buffers (32-bit words), and the shell's own (the control CPU's RAM, the lanes' queues) take
# about 12: the PYNQ-Z2's default overlay, 4 lanes of 32 + 32 + 16 KB (the regmap's
# TILE_BYTES, X_BYTES, Y_BYTES), maps to 92.
SHELL_BRAM36 = 12
BRAM_BUDGET = 0.7  # of the board's block RAM, for the default overlay


def default_params(board: Board, lanes: int | None = None) -> dict[str, Any]:
    """Board-dependent overlay defaults for ``lanes`` lanes (None: the overlay's default, 4):
    the bus as wide as the board's HP ports, and as few DMA engines (one HP port each) as reach
    the board's DDR bandwidth, at most one per lane. On a PYNQ-Z2 two 8-byte ports reach its
    16 B/cycle: one engine was the limit (busy 93-99%), two are 1.1-1.8x faster, and three or
    four measured 0.94-1.04x of two on the rtl bench (docs/benchmarks.md).

    Tile buffers of 64 KB where they fit the block RAM budget, else 32 KB: a lane's tile then
    holds twice the nonzeros for the control CPU's fixed work per tile, which is what limits
    the lanes once the DDR is fast enough. On the ZCU104's default overlay the rtl device
    measured 2-D Poisson 1.35 -> 2.15 and random 12 a row 1.87 -> 2.38 nonzeros per cycle
    (docs/benchmarks.md); the PYNQ-Z2 and KV260 keep 32 KB (64 KB would take about 90% of their
    140 and 144 block RAMs)."""
    n = 4 if lanes is None else lanes
    port = board.hp[0].bytes_per_cycle(board.fabric_clock_mhz)
    need = math.ceil(board.ddr.bytes_per_cycle / port)
    fits = (
        n * (2 * regmap.TILE_BYTES + regmap.X_BYTES + regmap.Y_BYTES) // 4096 + SHELL_BRAM36
        <= BRAM_BUDGET * board.resources.bram36
    )
    return {
        "bus_bits": 128 if board.hp[0].width >= 128 else 64,
        "dma_engines": max(1, min(need, len(board.hp), n)),
        "tile_bytes": 2 * regmap.TILE_BYTES if fits else regmap.TILE_BYTES,
    }


def with_defaults(board: Board, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` over the board's :func:`default_params` for their lanes."""
    return {**default_params(board, params.get("lanes")), **params}


@dataclass
class BuildFolder:
    path: Path
    board: Board
    sources: OverlaySources
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def tcl(self) -> Path:
        return self.path / TCL

    @property
    def bitstream(self) -> Path:
        return self.path / "overlay" / f"{vt.OVERLAY_NAME}.bit"

    @property
    def hwh(self) -> Path:
        return self.path / "overlay" / f"{vt.OVERLAY_NAME}.hwh"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _register_json() -> dict[str, Any]:
    def block(b: Any) -> dict[str, Any]:
        return {
            "base": b.base,
            "desc": b.desc,
            "registers": [
                {
                    "name": r.name,
                    "offset": r.offset,
                    "access": r.access,
                    "desc": r.desc,
                    "count": r.count,
                    "stride": r.stride,
                    "fields": [
                        {"name": f.name, "lsb": f.lsb, "width": f.width, "desc": f.desc}
                        for f in r.fields
                    ],
                }
                for r in b.registers
            ],
        }

    return {
        "version": regmap.VERSION,
        "id_magic": regmap.ID_MAGIC,
        "host_ram_window": regmap.HOST_RAM_WINDOW,
        "host_ram_window_bytes": regmap.HOST_RAM_WINDOW_BYTES,
        "blocks": {"HOST": block(regmap.HOST), "CPU": block(regmap.CPU)},
    }


def _register_files() -> dict[str, bytes]:
    return {
        "registers.md": regmap.markdown().encode(),
        "regs.h": regmap.c_header().encode(),
        "registers.json": (json.dumps(_register_json(), indent=2) + "\n").encode(),
    }


def _prepare(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise BuildError(f"{out} exists and is not a folder: choose another -o")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise BuildError(
            f"{out} is not empty and is not a fiberflow build folder: choose an empty or new "
            "folder for -o (fiberflow only overwrites its own build folders)"
        )
    out.mkdir(parents=True, exist_ok=True)
    # rtl/ is regenerated in full; stale files would end up in the project
    shutil.rmtree(out / "rtl", ignore_errors=True)


def generate(
    board: Board,
    params: Mapping[str, Any],
    out: Path,
    generator: Callable[[Mapping[str, Any]], OverlaySources] = overlay_sources,
    jobs: int = 4,
) -> BuildFolder:
    """Write the build folder for ``board`` and overlay ``params`` into ``out``."""
    out = Path(out)
    merged = with_defaults(board, params)
    src = generator(merged)
    defining = [t for t in src.files.values() if f"module {src.top}(" in t.replace(" (", "(")]
    if not defining:
        raise BuildError(f"the overlay generator returned no module {src.top}")
    top_text = defining[0]
    wrapper = vt.wrapper_verilog(top_text, src.top)
    rtl = {f"rtl/{name}": text.encode() for name, text in sorted(src.files.items())}
    rtl[f"rtl/{vt.WRAPPER}.v"] = wrapper.encode()
    tcl = vt.tcl_script(board, top_text, src.top, sorted(rtl), jobs=jobs)

    files: dict[str, bytes] = dict(rtl)
    files[TCL] = tcl.encode()
    if src.firmware:
        files["firmware.bin"] = src.firmware
    files.update(_register_files())

    _prepare(out)
    for rel, data in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (out / "overlay").mkdir(exist_ok=True)

    ports = vt.parse_ports(top_text, src.top)
    masters = sorted({p.name.split("_")[1] for p in ports if p.name.startswith("m_axi")})
    ctrl_bits = next(p.width for p in ports if p.name == "s_axil_awaddr")
    hashes = {rel: {"sha256": _sha256(data), "bytes": len(data)} for rel, data in files.items()}
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "fiberflow_version": __version__,
        "regmap_version": regmap.VERSION,
        "board": {
            "key": board.key,
            "name": board.name,
            "part": board.part,
            "board_part": board.board_part,
            "ps": board.ps,
            "fabric_clock_mhz": board.fabric_clock_mhz,
            "control_port": board.control.port,
            "control_base": board.control.base,
            "hp_ports": [
                {"port": p.port, "width": p.width, "clock_mhz": p.clock_mhz}
                for p in board.hp[: len(masters)]
            ],
            "pynq_images": list(board.pynq_images),
            "energy": energy.manifest_entry(board),
        },
        "overlay": {
            "top": src.top,
            "wrapper": vt.WRAPPER,
            "params": dict(src.params),
            "dma_masters": len(masters),
            "control_range": 1 << ctrl_bits,
            "bus_bytes_per_cycle": board.bus_bytes_per_cycle(len(masters)),
        },
        "vivado": {
            "versions": list(vt.VIVADO_VERSIONS),
            "script": TCL,
            "command": " ".join(vivado_command()),
        },
        "outputs": {
            "bitstream": f"overlay/{vt.OVERLAY_NAME}.bit",
            "hwh": f"overlay/{vt.OVERLAY_NAME}.hwh",
        },
        "files": hashes,
        # One identity for the whole build: the hash of every generated file's hash.
        "build_id": _sha256(json.dumps(hashes, sort_keys=True).encode())[:16],
    }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    (out / MANIFEST).write_text(text)
    # The folder's manifest is what the file says (tuples become lists, and so on).
    written = json.loads(text)
    # For ff.open("pynq", overlay=out, emulate=True): a .hwh PYNQ can parse and a placeholder
    # .bit, derived from the manifest (boards/hwh.py); never mistaken for Vivado's outputs.
    hwh.write_emulation_pair(out, written)
    return BuildFolder(out, board, src, written)


def vivado_command(vivado: str = "vivado") -> list[str]:
    """The command that runs a build folder's script, from inside the build folder."""
    return [vivado, "-mode", "batch", "-notrace", "-nojournal", "-log", "vivado/vivado.log",
            "-source", TCL]  # fmt: skip


def run_vivado(
    folder: Path,
    vivado: str,
    on_stage: Callable[[int, int, str], None] | None = None,
    on_line: Callable[[str], None] | None = None,
    timeout_s: float = 6 * 3600,
) -> None:
    """Run Vivado on a build folder, reporting each stage the script announces."""
    import time

    cmd = vivado_command(vivado)
    deadline = time.monotonic() + timeout_s
    with subprocess.Popen(
        cmd, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail = [*tail[-40:], line]
            if on_line:
                on_line(line)
            if line.startswith("fiberflow: stage ") and on_stage:
                head, _, what = line[len("fiberflow: stage ") :].partition(": ")
                n, _, total = head.partition("/")
                if n.isdigit() and total.isdigit():
                    on_stage(int(n), int(total), what)
            if time.monotonic() > deadline:
                proc.kill()
                raise BuildError(f"Vivado did not finish within {timeout_s / 3600:.1f} h")
        code = proc.wait()
    if code != 0:
        # The script's own refusals (timing not met, a missing board part) say what to do;
        # they lead the message, before the log's last lines.
        # The first such line is the message; Tcl's traceback after it quotes the source.
        info = ("stage ", "Vivado ", "worst ", "board part ", "wrote ")
        said = [ln[ln.index("fiberflow: ") + 11 :] for ln in tail if "fiberflow: " in ln]
        said = [ln for ln in said if not ln.startswith(info)]
        lead = f"{said[0]}\n" if said else ""
        raise BuildError(
            f"{lead}Vivado failed (exit {code}); the log is "
            f"{folder / 'vivado' / 'vivado.log'}. Last lines:\n" + "\n".join(tail[-15:])
        )
