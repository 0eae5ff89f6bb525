"""``fiberflow build --board NAME -o DIR``: the Vivado build folder for a board, and Vivado run
when it is installed; ``--estimate`` for a resource estimate with yosys instead."""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
from pathlib import Path
from typing import Any

from fiberflow import boards
from fiberflow.boards import timing
from fiberflow.errors import BuildError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build",
        help="generate a board build folder (Verilog, firmware, Vivado script, manifest)",
        description="Generate a self-contained build folder for a board: the overlay's Verilog, "
        "the firmware image, the register map, a Vivado batch script and a manifest. When "
        "'vivado' is on PATH it is run (hours); otherwise the command to run it elsewhere is "
        "printed. With --estimate, synthesize with yosys and compare with the board's capacity "
        "instead. See docs/deploy.md.",
    )
    p.add_argument("--board", required=True, help="board name (see 'fiberflow boards') or a .toml")
    p.add_argument("-o", "--out", type=Path, help="build folder (default: build/<board>)")
    g = p.add_argument_group("overlay parameters (defaults: the overlay's own)")
    g.add_argument("--lanes", type=int, help="number of lanes (default 4)")
    g.add_argument("--value-type", choices=("fp32", "int32"), help="value type (default fp32)")
    g.add_argument("--tile-bytes", type=int, help="tile buffer bytes per DMA engine")
    g.add_argument("--bus-bits", type=int, choices=(64, 128),
                   help="DMA bus width (default: the board's HP port width)")  # fmt: skip
    g.add_argument("--dma-engines", type=int,
                   help="DMA engines, one HP port each (default: as few as reach the board's "
                        "DDR bandwidth, at most one per lane; 2 on a PYNQ-Z2)")  # fmt: skip
    g.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="any other overlay parameter (repeatable)")  # fmt: skip
    p.add_argument(
        "--clock",
        type=float,
        metavar="MHZ",
        help="fabric clock in MHz, the PS clock the overlay runs on (default: the board's); "
        "Vivado times the design at it and refuses a bitstream that misses it",
    )
    p.add_argument(
        "--estimate",
        action="store_true",
        help="synthesize with yosys; report use against the board's capacity",
    )
    p.add_argument(
        "--timing-proxy",
        action="store_true",
        help="place and route on an ECP5 with nextpnr (Fmax, a proxy for comparing designs, "
        "not a Xilinx timing figure) and count the LUT levels of the xc7 mapping; writes "
        "timing.json",
    )
    p.add_argument(
        "--no-route",
        action="store_true",
        help=f"with --timing-proxy: {timing.NO_ROUTE_HELP}",
    )
    p.add_argument("--no-vivado", action="store_true",
                   help="only generate, even if vivado is on PATH")  # fmt: skip
    p.add_argument("--jobs", type=int, default=4, help="Vivado parallel jobs (default 4)")
    p.set_defaults(func=run)


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def params_from(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key in ("lanes", "value_type", "tile_bytes", "bus_bits", "dma_engines"):
        if getattr(args, key, None) is not None:
            params[key] = getattr(args, key)
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BuildError(f"--param {item!r}: expected KEY=VALUE, e.g. --param ram_bytes=8192")
        params[key.strip().replace("-", "_")] = _value(value.strip())
    return params


def run(args: argparse.Namespace) -> int:
    from fiberflow.boards import build

    board = boards.load(args.board)
    if args.clock is not None:
        board = build.with_clock(board, args.clock)
    params = params_from(args)
    out = args.out or Path("build") / board.key
    if args.estimate or args.timing_proxy:
        # Both raise on failure (an overlay that does not fit, a missing tool).
        if args.estimate:
            _estimate(board, params, out)
        if args.timing_proxy:
            _timing_proxy(board, params, out, route=not args.no_route)
        return 0
    if args.no_route:
        raise BuildError("--no-route goes with --timing-proxy (it places the ECP5 proxy only)")

    folder = build.generate(board, params, out, jobs=args.jobs)
    m = folder.manifest
    print(
        f"fiberflow build: {board.name} ({board.part}) at {board.fabric_clock_mhz:g} MHz, "
        f"overlay {m['overlay']['params']}"
    )
    print(f"  wrote {out}/ (build id {m['build_id']}): {len(m['files'])} files")
    _source_package(out)
    command = " ".join(shlex.quote(c) for c in build.vivado_command())
    vivado = shutil.which("vivado")
    if vivado is None or args.no_vivado:
        lo, hi = m["vivado"]["versions"]
        why = "--no-vivado given" if args.no_vivado else "vivado is not on PATH"
        print(f"  {why}: on a machine with Vivado {lo} to {hi}, run")
        print(f"    cd {shlex.quote(str(out))} && {command}")
        print(f"  then copy {out}/ to the board (docs/deploy.md).")
        return 0
    print(f"  running Vivado ({vivado}); this takes a while. Log: {out}/vivado/vivado.log")
    _run_vivado(folder.path, vivado)
    print(f"  bitstream: {folder.bitstream}\n  hardware handoff: {folder.hwh}")
    return 0


def _source_package(out: Path) -> None:
    """The package the board installs, of this very version, into the build folder."""
    from fiberflow.boards import package

    try:
        sdist = package.source_package(out / package.FOLDER)
    except BuildError as exc:
        # The Vivado folder is complete without it; say why it is missing and what to do.
        print(f"  no package for the board: {exc}")
        return
    print(f"  package for the board: {sdist} (pip install it there; docs/deploy.md)")


def _run_vivado(path: Path, vivado: str) -> None:
    from fiberflow.boards import build
    from fiberflow.progress import bar, enabled

    # A bar in a terminal or notebook; in a log, one line per stage the script announces.
    shown = enabled()
    with bar("vivado", total=7, unit="stage") as b:

        def stage(n: int, total: int, what: str) -> None:
            if shown:
                b.total = total
                b.n = n - 1
                b.set_description(f"vivado: {what}")
                b.refresh()
            else:
                print(f"  vivado stage {n}/{total}: {what}", flush=True)

        build.run_vivado(path, vivado, on_stage=stage)


def _estimate(board: boards.Board, params: dict[str, Any], out: Path) -> None:
    from fiberflow.boards import build, estimate

    merged = build.with_defaults(board, params)
    src = build.overlay_sources(merged)
    header = (
        f"fiberflow build --estimate: {board.name}, yosys synth_xilinx -family "
        f"{board.yosys_family}, overlay {dict(src.params)}"
    )
    print(header, flush=True)
    report = estimate.estimate(src.files, src.top, board)
    lines = [report.table(), *(f"  warning: {w}" for w in report.warnings)]
    lines.append(f"  fits on {board.name}" if report.fits() else f"  does NOT fit on {board.name}")
    print("\n".join(lines))
    # The report is kept in the build folder, beside what a full build writes there.
    out.mkdir(parents=True, exist_ok=True)
    (out / "estimate.txt").write_text("\n".join([header, *lines]) + "\n")
    data = {**report.as_dict(), "overlay": dict(src.params)}
    (out / "estimate.json").write_text(json.dumps(data, indent=2) + "\n")
    print(f"  report: {out / 'estimate.txt'} and {out / 'estimate.json'}")
    report.check_fits()


def _timing_proxy(board: boards.Board, params: dict[str, Any], out: Path, route: bool) -> None:
    from fiberflow.boards import build

    src = build.overlay_sources(build.with_defaults(board, params))
    print(f"fiberflow build --timing-proxy: overlay {dict(src.params)}")
    print(
        f"  {'place and route' if route else 'place'} with nextpnr-ecp5 ({timing.DEVICE}, out "
        "of context) and map with yosys synth_xilinx -family xc7 for LUT levels, side by "
        "side; minutes ..."
    )
    proxy, depth = timing.measure(
        src.files, src.top, target_mhz=board.fabric_clock_mhz, route=route
    )
    print(f"  {proxy.summary()}")
    print(f"  {depth.summary()}")
    out.mkdir(parents=True, exist_ok=True)
    data = {**timing.timing_json(proxy, depth), "overlay": dict(src.params)}
    (out / "timing.json").write_text(json.dumps(data, indent=2) + "\n")
    print(f"  report: {out / 'timing.json'}")
