"""The emulator's cycle model: what the shell's firmware, DMA engine(s) and lanes do for one
SpMV/SpMM job, replayed tile by tile from the job's schedule and A's image.

Three kinds of resources are modelled, each busy with one thing at a time:

* the **control CPU** (picorv32), which checks the job, sets up each lane, and queues each
  lane's next tile once the lane has started its current one (``Constants.job``, ``lane``,
  ``load``, ``flush``, ``slices``, ``end``);
* each **DMA engine**, which runs its queue in order: a transfer costs ``Constants.latency``
  plus its bytes at the port width (``bus_bytes`` per cycle). Per tile a lane's transfers are
  its previous y block out (when the row tile changes), its x / B slice (unless it holds that
  column tile already) and the tile, each waiting for the lane to finish its current tile
  (AFTER_LANE), except, for SpMM (k > 1), a tile that, like the lane's tile before it, fits
  half the tile buffer: it takes the other half, queued first and not waiting (it lands
  while the lane computes); y is zeroed first (no ACCUMULATE) and each lane's last y block
  written out at the end;
* each **lane**, which starts a tile the moment it has landed (LANE_CTRL.ARM), while the other
  lanes compute. A tile computes in :func:`tile_cycles`.

Every constant was measured on the rtl device (``ff.open("rtl")``, the default overlay) by
``scripts/calibrate_emu.py``; docs/emulator.md gives the derivation of each and the model's
measured error.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from fiberflow.host.images import dma_image as di


@dataclass(frozen=True)
class Constants:
    """Cycle costs of the shell (see the module docstring and docs/emulator.md)."""

    # lane, load and flush fitted together (least squares of log(emu / rtl),
    # scripts/calibrate_emu.py --fit) over the 14 runs of its small set on the default
    # overlay, with the control CPU's two-cycle ALU and compare; job, slices and end are the
    # firmware's phases (scripts/firmware_phases.py), latency the DDR model's read latency.
    # Worst emu / rtl: 0.95-1.13 over those runs and the 7 larger ones of --large (to 1M
    # nonzeros).
    job: int = 6_900  # doorbell to the walk: descriptor read and checks, the lanes' set-up
    lane: int = 2_823  # CPU per lane with tiles: its windows, its first tile read and queued
    load: int = 1_886  # CPU per tile: its lane's start seen, the tile read, queued and armed
    flush: int = 722  # CPU, more, when the tile's row tile is not its lane's last one's
    # CPU, more, per tile when x is in several slices: the tile's x window read and checked,
    # and the window worked out (scripts/firmware_phases.py: prepare and load on the rtl
    # bench's 3-D and 2-D Poisson matrices, 351 and 459 more than on one whose x is one slice)
    slices: int = 380
    end: int = 500  # last transfer done to status written
    # Of `job`: the CPU's wait for y's first zeros (lane 0's zero buffer, the first pieces of
    # y), which a job that writes no zeros first (COVERED or ACCUMULATE) skips; measured as
    # the difference between the two on the small set (790-800 cycles).
    zero_setup: int = 800
    latency: int = 40  # per DMA transfer: the DDR model's read latency
    # The lane's own constants, from its cycles on tiles whose rows all hold L entries (L = 1
    # to 100, k = 1, 2, 3, 4 and 8, one tile): cycles = 31 + items + tail, within 3% for rows
    # of 2 to 64 entries; rows longer than a queue 2-10% under, rows of one entry at k >= 2 a
    # few cycles (up to 17%) over.
    # (34 since the tile readers' address register: 3 cycles more per tile in the lane bench;
    # the rest of the fit was not redone)
    tile_base: int = 34  # a lane's start, configuration checks and drain per tile
    queue: int = 63  # a chain's products the lane issues ahead of its adds (its context's queue)
    turn: int = 5  # cycles between two adds of one chain (the adder's latency + 1)


DEFAULT = Constants()


@dataclass(frozen=True)
class Overlay:
    """The overlay parameters the model needs (a subset of ``ShellConfig``), and the bytes per
    cycle each engine's transfers move: at most its bus width, its port's bandwidth and its
    share of the DDR's (a 128-bit engine on a 64-bit HP port moves 8 bytes per cycle)."""

    lanes: int = 4
    bus_bytes: int = 8
    dma_engines: int = 1
    engine_bytes_per_cycle: float = 8.0
    tile_bytes: int = 32768  # each lane's tile buffer


def row_lengths(image: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """The stored entries of each row of every tile at ``offsets`` in the 2-D CSR ``image``.
    A tile whose header or segment array lies outside the image counts as no rows: the job
    is refused when it runs (the C kernel checks every offset), and a model need not fail."""
    hd = di.tile_header_dtype(2)
    out = []
    for off in offsets.tolist():
        lengths = np.zeros(0, dtype=np.int64)
        if 0 <= off and off + hd.itemsize <= len(image):
            h = image[off : off + hd.itemsize].view(hd)[0]
            rows = int(h["levels"][0]["npos"])
            s = off + int(h["levels"][1]["seg_offset"])
            if s % 4 == 0 and s + 4 * (rows + 1) <= len(image):
                seg = image[s : s + 4 * (rows + 1)].view("<u4").astype(np.int64)
                lengths = np.maximum(np.diff(seg), 0)
        out.append(lengths)
    return out


def tile_offsets(image: np.ndarray, n_tiles: int) -> np.ndarray:
    """Every tile's offset in ``image``, in directory order."""
    h = image[: di.HEADER.itemsize].view(di.HEADER)[0]
    start = int(h["dir_offset"])
    entry = di.dir_entry_dtype(2)
    return image[start : start + n_tiles * entry.itemsize].view(entry)["offset"].astype(np.int64)


def tile_cycles(lengths: np.ndarray, k: int, c: Constants = DEFAULT) -> int:
    """Cycles a lane spends on one tile whose rows hold ``lengths`` entries (see
    :func:`tiles_cycles`)."""
    return int(tiles_cycles([np.asarray(lengths, dtype=np.int64)], k, c)[0])


def tiles_cycles(tiles: list[np.ndarray], k: int, c: Constants = DEFAULT) -> np.ndarray:
    """Cycles a lane spends on each tile, given the entries of each of its rows: one item (a
    nonzero and a column of B) per cycle; an empty row one cycle, a row of one entry two per
    item (the y port reads and writes each row's sum); at k = 1 a chain longer than its queue
    waits for its adds, one per ``turn``; and the tail the last rows' chains leave."""
    counts = np.array([len(t) for t in tiles], dtype=np.int64)
    out = np.full(len(tiles), c.tile_base, dtype=np.int64)
    busy = counts > 0
    if not busy.any():
        return out
    n = np.concatenate(tiles).astype(np.int64)
    # Each of a row's k chains gets one add per turn; one whose products come faster (k <
    # turn) falls behind, and once its queue is full the row's items wait for its adds.
    cost = np.maximum(n * k, c.turn * (n - c.queue))
    cost = np.where(n == 0, 1, np.where(n == 1, 2 * k, cost))
    first = (np.cumsum(counts) - counts)[busy]
    last = first + counts[busy] - 1
    total = np.add.reduceat(cost, first)
    # A chain's last add comes one turn per product after its row's first item was issued;
    # the tail is how far the latest of them runs past the tile's last item.
    suffix = np.cumsum(cost[::-1])[::-1]  # items from each row to the end of all tiles
    after = np.append(suffix, 0)[last + 1]  # ... of the tiles after each tile
    to_end = suffix - np.repeat(after, counts[busy])
    tail = np.maximum(np.maximum.reduceat(c.turn * n - to_end, first), 0)
    out[busy] += total + tail
    return out


def image_tiles_cycles(
    image: np.ndarray, offsets: np.ndarray, k: int, c: Constants = DEFAULT
) -> np.ndarray:
    """:func:`tiles_cycles` of the tiles at ``offsets`` in the 2-D CSR ``image`` (as
    :func:`row_lengths` reads them), computed in C from the segment arrays: in numpy it took
    many times a one-off job's own run."""
    from fiberflow.host._cemu import ffi, lib

    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    out = np.empty(len(offsets), dtype=np.int64)
    lib.ff_tile_cycles(
        ffi.from_buffer("uint8_t[]", image), image.nbytes,
        ffi.from_buffer("int64_t[]", offsets), len(offsets), k,
        c.tile_base, c.turn, c.queue, ffi.from_buffer("int64_t[]", out),
    )  # fmt: skip
    return out


@dataclass(frozen=True)
class Job:
    """One job, as the model needs it: per tile of the tile list (in order), its lane, row
    and column tile, bytes, the columns of x it reads (``[x_lo, x_hi)``, x_lo rounded down as
    the firmware rounds it) and where its x slice ends (columns of x, not of the slice), y
    block bytes, and its compute cycles."""

    lane: np.ndarray
    row_tile: np.ndarray
    col_tile: np.ndarray
    tile_bytes: np.ndarray
    x_lo: np.ndarray
    x_hi: np.ndarray
    x_end: np.ndarray
    x_row_bytes: int  # bytes of x per column (4k)
    y_bytes: np.ndarray
    compute: np.ndarray
    y_total: int  # bytes of y / C
    head_bytes: int  # descriptor + A's header and directory, read at the start
    accumulate: bool
    covered: bool = False  # every row tile has a tile: y / C is not zeroed first
    sliced: bool = False  # x is in several column slices


@dataclass(frozen=True)
class Result:
    """What :func:`simulate` found: the job's cycles, each lane's busy cycles, bytes moved."""

    cycles: int
    lane_busy: tuple[int, ...]
    dma_bytes: int


def _beats(nbytes: int, bus: int) -> int:
    return -(-int(nbytes) // bus)


def simulate(
    job: Job, ov: Overlay, c: Constants = DEFAULT, *, shared_x: bool = False,
    double_buffered: bool = False,
) -> Result:  # fmt: skip
    """Replay the job: a lane starts its tile when the tile has landed; once it has, the CPU
    queues the lane's next tile (``Constants.load``, when the CPU is free), whose transfers
    wait for the lane to finish (AFTER_LANE); the engines run their queues in order.

    For SpMM (k > 1: ``x_row_bytes`` over 4), a tile that, like the lane's tile before it,
    fits half the tile buffer goes into the other half, queued when the lane's tile starts
    and landing while it computes (x and y, one buffer each, keep waiting for the lane).

    Two designs the overlay does not have, for what-ifs (scripts/model_whatif.py):
    ``shared_x``, one x for all lanes, so that a job whose x is one slice loads it once (the
    lanes' first tiles wait for it); ``double_buffered``, two whole tile buffers per lane, so
    that every tile after a lane's first lands so, whatever its size."""
    lanes = ov.lanes
    eng = [0] * ov.dma_engines
    moved = 0

    def transfer(lane: int, nbytes: int, at: int) -> int:
        nonlocal moved
        e = lane % ov.dma_engines
        whole = _beats(nbytes, ov.bus_bytes) * ov.bus_bytes  # whole bus beats
        eng[e] = max(eng[e], at) + c.latency + math.ceil(whole / ov.engine_bytes_per_cycle)
        moved += whole
        return eng[e]

    moved += job.head_bytes
    if job.accumulate or job.covered:
        cpu = c.job - c.zero_setup
    else:
        cpu = c.job
        transfer(0, job.y_total, cpu)  # y zeroed from lane 0's zero buffer
    per_lane: list[list[int]] = [[] for _ in range(lanes)]
    for i, lane in enumerate(job.lane.tolist()):
        per_lane[lane].append(i)
    nxt = [0] * lanes
    held_x = [(-1, 0, 0)] * lanes  # (column tile, columns) of the x each lane holds
    prev_end = [-1] * lanes  # where the columns of each lane's last tile end
    held_row = [-1] * lanes
    # bytes at the start of each lane's y buffer known to be zero: lane 0's whole buffer when
    # the job zeroes y from it first (firmware/ffjb.c, l_clean)
    zeroes_y = not (job.accumulate or job.covered)
    clean = [1 << 62 if lane == 0 and zeroes_y else 0 for lane in range(lanes)]
    busy = [0] * lanes
    free = [0] * lanes  # when the lane is done with its current tile
    last_fits = [False] * lanes  # whether the lane's last queued tile fits half its buffer
    halves = job.x_row_bytes > 4  # k > 1 (firmware/ffjb.c, half)
    left = len(job.lane)
    last_started: list[int] = []  # lanes whose last tile has started: their y block out
    events: list[tuple[int, int, int]] = []  # (tile landed: the lane starts, order, lane)
    order = 0

    def zero_fill(lane: int, nbytes: int, at: int) -> int:
        """A DMA zero fill of a lane's y buffer: engine time, no DDR bytes."""
        e = lane % ov.dma_engines
        eng[e] = max(eng[e], at) + c.latency + math.ceil(nbytes / ov.engine_bytes_per_cycle)
        return eng[e]

    x_landed = 0  # shared_x: when the one x has landed (0: not loaded yet)

    def load(lane: int, at: int) -> int:
        """Queue the lane's next tile at ``at``; its transfers wait for the lane. Returns
        the CPU's cycles for the y zeros it writes itself."""
        nonlocal order, left, x_landed
        i = per_lane[lane][nxt[lane]]
        after = max(at, free[lane])
        cpu_zeros = 0
        waits = [0]  # when what the tile needs besides itself (y, x) has landed
        # firmware/ffjb.c, load: into the other half (or buffer), ahead of what waits
        fits = halves and 2 * int(job.tile_bytes[i]) <= ov.tile_bytes
        ahead = (fits and last_fits[lane]) or (double_buffered and nxt[lane] > 0)
        last_fits[lane] = fits
        if ahead:
            waits.append(transfer(lane, int(job.tile_bytes[i]), at))
        if held_row[lane] != job.row_tile[i]:
            first = held_row[lane] < 0
            if not first:  # the block before out: the lane's one y buffer is then free
                waits.append(transfer(lane, int(job.y_bytes[per_lane[lane][nxt[lane] - 1]]), after))
            ylen = int(job.y_bytes[i])
            if job.accumulate:
                waits.append(transfer(lane, ylen, after))
            elif ylen > clean[lane]:
                # firmware/ffjb.c, load: a lane's first block by the CPU when the tile's
                # transfer outlasts it (about 2 cycles per byte), else a DMA zero fill; the
                # write-outs leave zeros behind for the blocks after.
                if first and 2 * (ylen - clean[lane]) + 1536 < int(job.tile_bytes[i]) // 8:
                    cpu_zeros = 2 * (ylen - clean[lane])
                else:
                    waits.append(zero_fill(lane, ylen - clean[lane], after))
                clean[lane] = ylen
            held_row[lane] = int(job.row_tile[i])
        # The x window (firmware/ffjb.c, load): to the tile's last column if its columns
        # start past the end of the lane's previous tile's, else to the slice's end.
        lo, hi = int(job.x_lo[i]), int(job.x_hi[i])
        apart = prev_end[lane] >= 0 and lo >= prev_end[lane]
        prev_end[lane] = hi
        held = held_x[lane]
        if shared_x and not job.sliced and x_landed:
            waits.append(x_landed)
        elif held[0] != job.col_tile[i] or lo < held[1] or hi > held[2]:
            top = hi if apart else int(job.x_end[i])
            rb, bus = job.x_row_bytes, ov.bus_bytes
            waits.append(transfer(lane, (-(-top * rb // bus) - lo * rb // bus) * bus, after))
            held_x[lane] = (int(job.col_tile[i]), lo, top)
            if shared_x and not job.sliced:
                x_landed = waits[-1]
        if not ahead:  # (on the lane's engine after its y and x: it lands last)
            waits.append(transfer(lane, int(job.tile_bytes[i]), after))
        order += 1
        left -= 1
        heapq.heappush(events, (max(waits), order, lane))
        return cpu_zeros

    def flush(lane: int, at: int) -> None:
        transfer(lane, int(job.y_bytes[per_lane[lane][-1]]), max(at, free[lane]))

    for lane in range(lanes):
        if per_lane[lane]:
            cpu += c.lane
            cpu += load(lane, cpu)
    while events:
        t, _, lane = heapq.heappop(events)
        if free[lane] > t:  # landed while the lane computes (ahead): starts after
            heapq.heappush(events, (free[lane], order, lane))
            continue
        i = per_lane[lane][nxt[lane]]
        busy[lane] += int(job.compute[i])
        free[lane] = t + int(job.compute[i])
        nxt[lane] += 1
        cpu = max(cpu, t)
        if nxt[lane] < len(per_lane[lane]):
            cpu += c.load + (c.slices if job.sliced else 0)
            if held_row[lane] != job.row_tile[per_lane[lane][nxt[lane]]]:
                cpu += c.flush
            cpu += load(lane, cpu)
        else:
            last_started.append(lane)
        if not left:  # every tile queued: the last y blocks out, as their lanes finish
            for done in last_started:
                flush(done, cpu)
            last_started.clear()
    cycles = max([cpu, *free, *eng]) + c.end
    return Result(cycles=int(cycles), lane_busy=tuple(busy), dma_bytes=int(moved))
