"""What the rtl bench's SpMV would gain if the control CPU's per-tile work cost less: the
emulator's cycle model (host/perf_model.py) on the bench's seven matrices, with the tiles the
rtl device chose (docs/bench/spmv-rtl.json), as built and with the CPU's per-lane and per-tile
constants scaled down.

    python scripts/cpu_whatif.py            # nonzeros per cycle: as built, / 4, none

A model, not a measurement: on these matrices it is 0.96-1.10x the rtl device's cycles.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

import fiberflow as ff
from fiberflow.bench.counted import cases
from fiberflow.host import perf_model as pm

RECORD = pathlib.Path(__file__).resolve().parent.parent / "docs" / "bench" / "spmv-rtl.json"


def scaled(c: pm.Constants, factor: float) -> pm.Constants:
    """``c`` with the CPU's per-lane and per-tile work scaled by ``factor``."""
    return dataclasses.replace(
        c, **{k: int(getattr(c, k) * factor) for k in ("lane", "load", "flush", "slices")}
    )


def main() -> None:
    tiles = {row[0]: row[2] for row in json.loads(RECORD.read_text())["rows"]}
    simulate = pm.simulate
    print("| matrix | as built | per-tile CPU / 4 | per-tile CPU 0 |")
    print("|---|---|---|---|")
    mats = cases(1)
    results: dict[str, list[str]] = {name: [] for name, _ in mats}
    for factor in (1.0, 0.25, 0.0):
        c = scaled(pm.DEFAULT, factor)
        pm.simulate = lambda job, ov, c=c: simulate(job, ov, c)  # emu calls it through pm
        try:
            for name, A in mats:
                tile = tuple(int(v) for v in tiles[name].split(" x "))
                emu = ff.open("emu")
                ff.spmv(A, np.ones(A.shape[1], np.float32), device=emu, tile=tile)
                results[name].append(f"{A.nnz / emu.last_stats.cycles:.2f}")
        finally:
            pm.simulate = simulate
    for name, row in results.items():
        print(f"| {name} | {' | '.join(row)} |")


if __name__ == "__main__":
    main()
