"""Two firmware images on the same jobs of the rtl device: cycles of each, and their ratio.

    python scripts/firmware_ab.py --base d29b511          # that commit's image vs the shipped one
    python scripts/firmware_ab.py --base d29b511 --quick  # the bench's matrices at k = 8 only

The jobs are the rtl bench's seven matrices (``fiberflow bench spmv --device rtl``), each as
SpMV with put()'s tiles and as SpMM at k = 2, 4 and 8 with tiles for k
(``fiberflow.bench.counted.spmm_tile``) and at k = 8 with put()'s tiles. Results must be the
same bits under both images (checked). A change to the firmware's walk moves single jobs by a
few percent either way (the order in which the lanes are served shifts), so judge a change
by the spread of ratios over many jobs, not by one. Needs a source checkout (git) and the hw
extra.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import numpy as np

import fiberflow as ff
from fiberflow.bench.counted import cases, spmm_tile
from fiberflow.host.images import job as jobs
from fiberflow.overlay import firmware
from fiberflow.overlay.regmap import TILE_BYTES

ROOT = Path(__file__).resolve().parent.parent


def image_at(rev: str) -> bytes:
    """The shipped firmware image as committed at git revision ``rev``."""
    return subprocess.run(
        ["git", "show", f"{rev}:overlay/firmware.bin"], cwd=ROOT, capture_output=True, check=True
    ).stdout


def tile_for_k(dev: object, k: int, A: object) -> tuple[int, int]:
    """``spmm_tile``'s tile for k, with rows halved until every tile fits a tile buffer (at
    k < 8 its row tiles can hold more bytes than the buffer)."""
    rows, cols = spmm_tile(dev, k, A.shape)  # type: ignore[attr-defined]
    t = ff.Tensor.from_scipy(A)
    while rows > 4 and jobs.Directory.of(ff.pack(t, (rows, cols))).nbytes.max() > TILE_BYTES:
        rows = rows // 2 // 4 * 4
    return rows, cols


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="git revision whose image is the baseline")
    p.add_argument("--quick", action="store_true", help="SpMM at k = 8, tiles for k, only")
    args = p.parse_args()
    images = {"base": image_at(args.base), "now": firmware.image()}
    dev = ff.open("rtl")
    kinds = [(8, True)] if args.quick else [(1, False), (2, True), (4, True), (8, True), (8, False)]
    print(f"| matrix | job | {args.base} cycles | shipped cycles | ratio |")
    print("|---|---|---|---|---|")
    ratios = []
    for name, A in cases(1):
        for k, for_k in kinds:
            tile = tile_for_k(dev, k, A) if for_k else None
            h = dev.put(A, tile=tile)
            x = np.random.default_rng(0).standard_normal((A.shape[1], k) if k > 1 else A.shape[1])
            x = x.astype(np.float32)
            run = ff.spmm if k > 1 else ff.spmv
            cycles, results = {}, []
            for label, image in images.items():
                dev.shell.load_firmware(image)
                results.append(run(h, x, device=dev, timeout=600))
                cycles[label] = dev.last_stats.cycles
            if not np.array_equal(results[0].view(np.uint32), results[1].view(np.uint32)):
                raise AssertionError(f"{name}, k = {k}: the two images' results differ")
            h.free()
            ratio = cycles["now"] / cycles["base"]
            ratios.append(ratio)
            job = "SpMV" if k == 1 else f"SpMM k = {k}, {'tiles for k' if for_k else 'put() tiles'}"
            print(f"| {name} | {job} | {cycles['base']:,} | {cycles['now']:,} | {ratio:.3f} |")
    dev.shell.load_firmware(images["now"])
    print(
        f"\nshipped / base cycles: {min(ratios):.3f} to {max(ratios):.3f} over {len(ratios)} jobs"
    )


if __name__ == "__main__":
    main()
