"""Where an SpMV/SpMM job's cycles go in the control firmware, on the rtl device.

    python scripts/firmware_phases.py                            # random 2,000 x 2,000, 1 per row
    python scripts/firmware_phases.py --matrix poisson2d --n 64  # 64 x 64 grid
    python scripts/firmware_phases.py --matrix random --n 32000 --cols 8000 --per-row 12

The firmware is built with ``-DFF_PHASES`` (``firmware/fw.h``: it then writes the phase it
enters into MAILBOX[3]) and loaded into ``ff.open("rtl")``. The job runs three times: with
the shipped firmware (its cycles, for comparison), with the profiling build (whose first job
pays for its start), then with the profiling build again, while the host reads MAILBOX[3]
every ``--every`` cycles; each sample's cycles are counted to the phase it shows. A mark costs
about 6 cycles, so the job's cycles differ from the shipped image's by a few hundred (usually
more, sometimes fewer: the walk then polls at other moments).
Needs a source checkout and the hw extra.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from itertools import pairwise
from typing import Any

import numpy as np
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.bench.counted import poisson, random_rows
from fiberflow.host.devices.shell_driver import HOST
from fiberflow.overlay import firmware


def phases() -> list[tuple[str, str]]:
    """(name, description) of each phase, in the order of fw.h's enum (its values)."""
    text = (firmware.source_dir() / "fw.h").read_text()
    return re.findall(r"^\s+PH_(\w+),\s*/\* (.*?) \*/", text, flags=re.M)


def matrix(kind: str, n: int, cols: int, per_row: int, seed: int) -> sp.csr_array:
    """The rtl bench's generators (fiberflow/bench/counted.py): seed 1 and ``--n 32000 --cols
    8000 --per-row 12`` is its 12-per-row matrix, ``poisson3d --n 48`` its 3-D Poisson one."""
    if kind == "random":
        return random_rows(n, cols, per_row, seed)
    return poisson(n, 2 if kind == "poisson2d" else 3)


def sample_phases(port: Any, every: int, trace: list[tuple[int, int]]) -> None:
    """Make ``port.poll`` (the driver's wait for STATUS) read MAILBOX[3] every ``every``
    cycles into ``trace`` as (cycle, phase)."""
    mailbox = HOST.offset("MAILBOX", 3)

    def poll(offset: int, mask: int, want: int, max_cycles: int) -> int | None:
        for _ in range(0, max_cycles, every):
            value = port.read_reg(offset)
            if value & mask == want:
                trace.append((port.cycle, -1))
                return value
            trace.append((port.cycle, port.read_reg(mailbox)))
            port.step(every)
        return None

    port.poll = poll


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--matrix", choices=["random", "poisson2d", "poisson3d"], default="random")
    ap.add_argument("--n", type=int, default=2000, help="rows (random) or grid side (poisson)")
    ap.add_argument("--cols", type=int, help="columns of a random matrix (default: --n)")
    ap.add_argument("--per-row", type=int, default=1, help="nonzeros per row (random)")
    ap.add_argument("--k", type=int, default=0, help="SpMM with k columns (default SpMV)")
    ap.add_argument("--every", type=int, default=25, help="sampling interval, cycles")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    a = matrix(args.matrix, args.n, args.cols or args.n, args.per_row, args.seed)
    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((a.shape[1], args.k) if args.k else a.shape[1]).astype(np.float32)
    names = phases()
    with ff.open("rtl") as dev:
        run = (lambda: ff.spmm(a, x, device=dev)) if args.k else (lambda: ff.spmv(a, x, device=dev))
        run()
        shipped = dev.last_stats.cycles
        dev.driver.load_firmware(firmware.build(defines=("FF_PHASES",)))
        run()  # the profiling build's own start
        trace: list[tuple[int, int]] = []
        sample_phases(dev.driver.port, args.every, trace)
        run()
        stats = dev.last_stats
    took = Counter[int]()
    entries = Counter[int]()
    for (t0, before), (t1, phase) in pairwise(trace):
        took[before] += t1 - t0
        if phase != before:
            entries[phase] += 1
    total = trace[-1][0] - trace[0][0]
    print(f"{args.matrix} {a.shape[0]} x {a.shape[1]}, {a.nnz:,} nonzeros, {stats.tiles} tiles"
          f"{f', k = {args.k}' if args.k else ''}: {stats.cycles:,} cycles with the phase marks,"
          f" {shipped:,} with the shipped firmware; sampled every {args.every} cycles")  # fmt: skip
    print(f"{'phase':12s} {'cycles':>9s} {'share':>6s} {'entered':>7s}  what")
    for value, (name, what) in enumerate(names):
        if took[value]:
            print(f"{name.lower():12s} {took[value]:9,d} {took[value] / total:6.1%} "
                  f"{entries[value]:7d}  {what}")  # fmt: skip
    print(f"lanes busy: {', '.join(f'{b:,}' for b in stats.lane_busy_cycles)} cycles")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
