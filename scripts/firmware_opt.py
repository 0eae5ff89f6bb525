"""The control firmware built at another optimisation level, against the shipped -Os build, on
the rtl device: the same SpMV jobs, their cycles from doorbell to status (every result
bit-identical to the shipped firmware's).

    python scripts/firmware_opt.py [O2 O3 ...]     # -O2 (the default), -O3, ...
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import fiberflow as ff
from fiberflow.bench.counted import poisson, random_rows
from fiberflow.overlay import firmware

# firmware_phases.py's small job, and matrices of the rtl bench (the same generators and seed)
JOBS = {
    "random 2k x 2k, 1/row": lambda: random_rows(2000, 2000, 1, 1),
    "random 32k x 8k, 12/row": lambda: random_rows(32000, 8000, 12, 1),
    "3-D Poisson, 7/row": lambda: poisson(48, 3),
    "2-D Poisson, 5/row": lambda: poisson(300, 2),
    "random 64k x 8k, 2/row": lambda: random_rows(64000, 8000, 2, 1),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("levels", nargs="*", default=["O2"], help="optimisation levels to compare")
    args = p.parse_args()
    builds = {}
    for level in (f"-{lv.lstrip('-')}" for lv in args.levels):
        flags = (level, *(f for f in firmware.CFLAGS if not f.startswith("-O")))
        with tempfile.TemporaryDirectory() as tmp:
            firmware.CFLAGS = flags  # (this process only)
            builds[level] = firmware.build(out=Path(tmp) / "firmware.bin")
    print(
        "| job | nnz | -Os cycles | " + " | ".join(f"{lv} cycles (speed)" for lv in builds) + " |"
    )
    print("|---" * (3 + len(builds)) + "|")
    with ff.open("rtl") as dev:
        for label, make in JOBS.items():
            a = make()
            x = np.random.default_rng(1).standard_normal(a.shape[1]).astype(np.float32)
            dev.driver.load_firmware(firmware.image())
            want = ff.spmv(a, x, device=dev)
            shipped = dev.last_stats.cycles
            cells = []
            for image in builds.values():
                dev.driver.load_firmware(image)
                assert np.array_equal(
                    ff.spmv(a, x, device=dev).view(np.uint32), want.view(np.uint32)
                )
                c = dev.last_stats.cycles
                cells.append(f"{c:,} ({shipped / c:.3f}x)")
            print(f"| {label} | {a.nnz:,} | {shipped:,} | "
                  + " | ".join(cells) + " |")  # fmt: skip


if __name__ == "__main__":
    main()
