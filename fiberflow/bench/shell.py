"""``fiberflow bench shell``: the rtl shell's build time, simulation speed and control overhead."""

from __future__ import annotations

import argparse
import time

import numpy as np

from fiberflow.bench import Report, uncached_build_seconds
from fiberflow.progress import stage

DESCRIPTION = (
    "Verilator build time, simulated cycles per second and per-job / per-tile control "
    "overhead of the shell with its control CPU and firmware"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lanes", type=int, default=4)
    p.add_argument("--bus-bits", type=int, default=64, choices=(64, 128))
    p.add_argument("--copy-bytes", type=int, default=1 << 20, help="bytes of the copy job")
    p.add_argument("--cached", action="store_true", help="reuse a cached build (no build time)")
    p.add_argument(
        "--placeholder",
        action="store_true",
        help="placeholder lanes instead of the SpMV/SpMM lanes",
    )


def run(args: argparse.Namespace) -> Report:
    from fiberflow.host.devices.rtl import RtlShell
    from fiberflow.overlay import regmap
    from fiberflow.overlay.shell.top import ShellConfig
    from fiberflow.overlay.sim.verilator_build import pgo_enabled

    kernels = () if args.placeholder else ("spmv", "spmm")
    cfg = ShellConfig(lanes=args.lanes, bus_bits=args.bus_bits, kernels=kernels)
    build_s = float("nan") if args.cached else uncached_build_seconds(cfg)

    shell = RtlShell(cfg)
    shell.load_firmware()
    idle_cycles = 2_000_000
    start, cpu = time.perf_counter(), time.process_time()
    with stage(f"simulating {idle_cycles:,} idle cycles"):
        shell.step(idle_cycles)
    idle_cps = idle_cycles / (time.perf_counter() - start)
    idle_cpu_cps = idle_cycles / (time.process_time() - cpu)

    n = args.copy_bytes
    src, dst, job = shell.alloc(n), shell.alloc(n), shell.alloc(32)
    src.array[:] = np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8)
    words = job.view(np.uint32)
    words[:] = [regmap.JOB_MAGIC, 1, src.address, dst.address, n, 0, 0, 0]
    shell.clear_counters()
    c0, start, cpu = shell.cycle, time.perf_counter(), time.process_time()
    counters = shell.wait(shell.submit(job), max_cycles=100 * n)
    copy_s = time.perf_counter() - start
    copy_cpu_s = time.process_time() - cpu
    copy_cycles = shell.cycle - c0
    assert np.array_equal(src.array, dst.array)
    dma_busy = counters.dma_busy[0]
    per_tile = (counters.cycles - dma_busy) / counters.tiles_done

    words[:] = [regmap.JOB_MAGIC, 0, 0, 0, 0, 0, 0, 0]
    c0 = shell.cycle
    shell.wait(shell.submit(job), poll=1)
    nop_cycles = shell.cycle - c0
    shell.close()

    rows = [
        ["Verilator build (uncached), s", build_s],
        ["simulated cycles/s, firmware idle (wall clock)", idle_cps],
        ["simulated cycles/s, firmware idle (process CPU time)", idle_cpu_cps],
        ["simulated cycles/s, during the copy job (wall clock)", copy_cycles / copy_s],
        ["simulated cycles/s, during the copy job (process CPU time)", copy_cycles / copy_cpu_s],
        ["empty job: doorbell to DONE, cycles", nop_cycles],
        ["copy job, cycles", copy_cycles],
        ["copy job, DMA busy cycles", dma_busy],
        ["copy job, tiles", counters.tiles_done],
        ["control overhead per tile, cycles", per_tile],
    ]
    notes = [
        f"shell: {cfg.lanes} {'placeholder' if args.placeholder else 'SpMV/SpMM'} lanes "
        f"(idle), {cfg.bus_bits}-bit bus, "
        f"{cfg.tile_bytes}-byte tile buffer, picorv32 running the shipped firmware",
        "build: the model's evaluation cut into functions of 4000 statements, compiled twice "
        "with GCC's profile-guided optimisation around a short training run "
        "(docs/overlay.md, Measurements)"
        if pgo_enabled()
        else "build: without a profile (FIBERFLOW_PGO=0): one compile, slower simulation",
        "DDR model: PYNQ-Z2 defaults (8 B/cycle per HP port and direction, 32-cycle read latency)",
        f"copy job: {n} bytes DDR -> tile buffer -> DDR, one tile at a time on one engine; "
        "overhead per tile = (counter cycles - DMA busy cycles) / tiles: the firmware's time "
        "between transfers (descriptor read included)",
        "the empty job is host-observed: doorbell write, descriptor DMA, STATUS write, and "
        "the host's AXI4-Lite polls",
        "goal: >= 1M simulated cycles/s for the 4-lane overlay with its CPU; CPU time "
        "discounts other processes on a shared machine",
    ]
    return Report(
        target="shell",
        title="rtl shell: build, simulation speed, control overhead",
        command=f"fiberflow bench shell --lanes {cfg.lanes} --bus-bits {cfg.bus_bits}"
        + (" --placeholder" if args.placeholder else ""),
        columns=["measure", "value"],
        rows=rows,
        notes=notes,
        data={row[0]: row[1] for row in rows},
    )
