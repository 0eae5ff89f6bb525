"""What sharding one matrix over 1 to 16 PYNQ-Z2 boards on 1 GbE would give (docs/distributed.md).

    python scripts/distributed_model.py [--overhead-ms 6.0] [--gbe-mb-s 117]

Per call, with the matrix in N row blocks (the dask device's partition), all traffic through
the host's one link:

    T(N) = overhead + (x_touched(N) + y) / bandwidth + max over blocks of T_block

- T_block: the block's cycles on the PYNQ-Z2's default overlay at 100 MHz, from the emulator's
  cycle model (within 15% of the rtl device's);
- x_touched(N): the x entries (rows of B) the blocks' columns touch, 4 bytes each, summed over
  the blocks (what the dask device ships); y: the result, 4 bytes an entry;
- overhead: the dask device's per-call cost, measured on this machine's local cluster by
  `fiberflow bench spmv --device dask` (a board's Python is slower: this is a lower bound);
- bandwidth: 1 GbE's TCP payload, about 117 MB/s.

The speed-up is against one board running the call from its own ARM cores (no network, no
Dask): T_block of the whole matrix.
"""

from __future__ import annotations

import argparse

import numpy as np
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.bench.counted import poisson, random_rows
from fiberflow.host.devices.dask_device import compact, row_blocks

CLOCK_HZ = 100e6


def block_seconds(dev: ff.Device, local: sp.csr_array, k: int) -> float:
    """One block's time on the emulated board (as its worker holds it: ``compact``): its
    cycles at the clock."""
    n = local.shape[1]
    dense = np.ones((n,) if k == 1 else (n, k), np.float32)
    (ff.spmv if k == 1 else ff.spmm)(local, dense, device=dev)
    assert dev.last_stats is not None
    return dev.last_stats.cycles / CLOCK_HZ


def model(A: sp.csr_array, k: int, n: int, overhead: float, bw: float, dev: ff.Device) -> dict:
    blocks = [compact(A[r0:r1]) for r0, r1 in row_blocks(A.indptr, n)]
    device = max(block_seconds(dev, local, k) for _, local in blocks)
    touched = sum(len(cols) for cols, _ in blocks) * 4 * k
    net = (touched + A.shape[0] * 4 * k) / bw
    return {"device": device, "network": net, "overhead": overhead,
            "total": device + net + overhead, "touched": touched}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--overhead-ms", type=float, default=6.0,
                   help="per-call overhead (default: the local cluster's, measured)")  # fmt: skip
    p.add_argument("--gbe-mb-s", type=float, default=117.0, help="network payload MB/s")
    args = p.parse_args()
    overhead, bw = args.overhead_ms / 1e3, args.gbe_mb_s * 1e6
    cases = [
        ("2-D Poisson, 5/row, 0.45M nnz", poisson(300, 2)),
        ("2-D Poisson, 5/row, 16M nnz", poisson(1800, 2)),
        ("random 200k x 200k, 64/row, 12.8M nnz", random_rows(200_000, 200_000, 64, 1)),
    ]
    dev = ff.open("emu")
    print("| matrix | kernel | boards | device ms | network ms | overhead ms | total ms | "
          "speed-up vs one board |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for label, A in cases:
        for k in (1, 8):
            one = block_seconds(dev, compact(A)[1], k)
            for n in (1, 2, 4, 8, 16):
                m = model(A, k, n, overhead, bw, dev)
                kernel = "SpMV" if k == 1 else f"SpMM k={k}"
                print(f"| {label} | {kernel} | {n} | {m['device'] * 1e3:.2f} | "
                      f"{m['network'] * 1e3:.2f} | {overhead * 1e3:.1f} | "
                      f"{m['total'] * 1e3:.2f} | {one / m['total']:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
