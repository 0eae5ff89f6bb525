"""``fiberflow boards``: the boards fiberflow can build for, with their key facts."""

from __future__ import annotations

import argparse
import json

from fiberflow import boards

COLUMNS = (
    "board",
    "part",
    "PS",
    "clock",
    "control",
    "HP ports",
    "DDR",
    "LUT",
    "BRAM36",
    "URAM",
    "DSP",
    "PYNQ",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "boards",
        help="list the boards fiberflow can build for",
        description="List the board definitions (fiberflow/boards/*.toml) with their key facts. "
        "docs/boards.md gives the source of every figure.",
    )
    p.add_argument("--json", action="store_true", help="print the full definitions as JSON")
    p.set_defaults(func=run)


def row(b: boards.Board) -> tuple[str, ...]:
    hp = f"{len(b.hp)} x {b.hp[0].width} bit"
    ddr = f"{b.ddr.kind} {b.ddr.bus_bits} bit {b.ddr.peak_mb_s / 1000:.1f} GB/s"
    return (
        b.key,
        b.part,
        "Zynq-7000" if b.is_zynq7000 else "Zynq US+",
        f"{b.fabric_clock_mhz:g} MHz",
        f"{b.control.port} @ {b.control.base:#010x}",
        hp,
        ddr,
        f"{b.resources.lut:,}",
        str(b.resources.bram36),
        str(b.resources.uram),
        str(b.resources.dsp),
        ", ".join(b.pynq_images),
    )


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [COLUMNS, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def as_dict(b: boards.Board) -> dict:
    from dataclasses import asdict

    d = asdict(b)
    d["path"] = str(b.path)
    return d


def run(args: argparse.Namespace) -> int:
    all_ = boards.all_boards()
    if args.json:
        print(json.dumps([as_dict(b) for b in all_], indent=2))
        return 0
    print(table([row(b) for b in all_]))
    print("\nBuild for one with: fiberflow build --board NAME -o DIR   (sources: docs/boards.md)")
    return 0
