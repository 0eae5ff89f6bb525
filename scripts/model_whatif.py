"""What the rtl bench's SpMV would gain from designs the overlay does not have: the emulator's
cycle model (host/devices/perf_model.py) on the bench's seven matrices, with the tiles the rtl
device chose (docs/bench/spmv-rtl.json), as built and

- with the control CPU's per-lane and per-tile work cut to 0.65 (a tile's entries read and
  checked in hardware: `prepare()` is about 35% of the CPU's work per tile,
  docs/firmware.md), to a quarter or to nothing (as if a hardware sequencer did it);
- with one x shared by the lanes (loaded once when x is one slice) instead of a copy each;
- with two whole tile buffers per lane (every tile lands while its lane computes the one
  before; as built, only SpMM's tiles of at most half the buffer do, in its halves);
- with the CPU's work cut to a quarter and two tile buffers.

    python scripts/model_whatif.py          # nonzeros per cycle, a markdown table
    python scripts/model_whatif.py --spmm   # SpMM, k = 8, tiles for k: multiply-adds per cycle

A model, not a measurement: on these matrices it is 0.96-1.10x the rtl device's cycles.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib

import numpy as np

import fiberflow as ff
from fiberflow.bench.counted import cases
from fiberflow.host.devices import perf_model as pm

BENCH = pathlib.Path(__file__).resolve().parent.parent / "docs" / "bench"
K = 8  # SpMM: the columns of B, as fiberflow bench spmm --cols 8 runs them

# column heading -> (factor on the CPU's per-lane and per-tile constants, simulate's options)
DESIGNS: dict[str, tuple[float, dict[str, bool]]] = {
    "as built": (1.0, {}),
    "per-tile CPU x 0.65": (0.65, {}),
    "per-tile CPU / 4": (0.25, {}),
    "per-tile CPU 0": (0.0, {}),
    "shared x": (1.0, {"shared_x": True}),
    "2 tile buffers": (1.0, {"double_buffered": True}),
    "CPU / 4, 2 tile buffers": (0.25, {"double_buffered": True}),
    "CPU / 4, 2 tile buffers, shared x": (0.25, {"double_buffered": True, "shared_x": True}),
}


def scaled(c: pm.Constants, factor: float) -> pm.Constants:
    """``c`` with the CPU's per-lane and per-tile work scaled by ``factor``."""
    return dataclasses.replace(
        c, **{k: int(getattr(c, k) * factor) for k in ("lane", "load", "flush", "slices")}
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spmm", action="store_true", help=f"SpMM with k = {K}, tiles for k")
    spmm = p.parse_args().spmm
    # the tiles the rtl device ran with (SpMM: the bench's tiles for k, one job per matrix)
    record = json.loads((BENCH / ("spmm-rtl.json" if spmm else "spmv-rtl.json")).read_text())
    suffix = ", tiles for k" if spmm else ""
    tiles = {row[0]: row[2] for row in record["rows"]}
    simulate = pm.simulate
    mats = cases(1)
    results: dict[str, list[str]] = {name: [] for name, _ in mats}
    for factor, options in DESIGNS.values():
        c = scaled(pm.DEFAULT, factor)
        # the emulator calls the model through the module
        pm.simulate = lambda job, ov, c=c, o=options: simulate(job, ov, c, **o)
        try:
            for name, A in mats:
                tile = tuple(int(v) for v in tiles[name + suffix].split(" x "))
                emu = ff.open("emu")
                if spmm:
                    ff.spmm(A, np.ones((A.shape[1], K), np.float32), device=emu, tile=tile)
                else:
                    ff.spmv(A, np.ones(A.shape[1], np.float32), device=emu, tile=tile)
                results[name].append(f"{emu.last_stats.work / emu.last_stats.cycles:.2f}")
        finally:
            pm.simulate = simulate
    print(f"| matrix | {' | '.join(DESIGNS)} |")
    print(f"|---|{'---|' * len(DESIGNS)}")
    for name, row in results.items():
        print(f"| {name} | {' | '.join(row)} |")


if __name__ == "__main__":
    main()
