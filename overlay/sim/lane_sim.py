"""Run one :class:`~fiberflow.overlay.lanes.lane.Lane` in Verilator on real tiles, and its
reference.

:class:`LaneSim` builds the lane with a C++ harness that models its three buffers (tile, x,
y: block-RAM read timing, byte-enable writes) from numpy arrays, pulses ``start``, runs the
cycle loop in C until ``done`` (or a cycle timeout) and leaves the y buffer in the array. The
tile port's grant (``tile_en``) is random with probability ``p_en``, so the readers see random
gaps; when a grant is withheld, the port's read in the next cycle returns garbage.

:func:`tile_operands` cuts one tile out of an ``ff.pack`` image and gives the configuration
words for it; :func:`reference` computes what the lane must leave in y, one numpy float32
scalar operation at a time in the order of ``docs/emulator.md`` (through the ALU's model,
:func:`fiberflow.overlay.primitives.alu.op_words`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fiberflow.errors import DeviceError, DeviceTimeoutError
from fiberflow.host.images import dma_image as di
from fiberflow.overlay.lanes.lane import CONFIG_WORDS, DTYPE_CODES, Lane, mode_word
from fiberflow.overlay.primitives.alu import Op, op_words
from fiberflow.overlay.sim.verilator_build import build, ffi_of

__all__ = ["LaneRun", "LaneSim", "TileOperands", "reference", "run_matrix", "tile_operands"]

_CDEF = """
int run(const uint32_t *cfg, int n_cfg, const uint32_t *tile, int64_t tile_len,
        const uint32_t *x, int64_t x_len, uint32_t *y, int64_t y_len, uint32_t p_en,
        uint64_t seed, int64_t max_cycles, int64_t *info);
"""

_HARNESS = r"""
#include "Vlane.h"
#include "verilated.h"
#include <stdint.h>
#include <cstddef>

static uint64_t s;
static inline uint32_t rnd16() { s ^= s << 13; s ^= s >> 7; s ^= s << 17;
  return (uint32_t)(s >> 20) & 0xffff; }
static inline void put(QData &d, const uint32_t *w) { d = (uint64_t)w[0] | ((uint64_t)w[1] << 32); }
template <std::size_t N> static inline void put(VlWide<N> &d, const uint32_t *w) {
  for (std::size_t i = 0; i < N; i++) d[i] = w[i]; }
static inline uint32_t get(QData d, int i) { return (uint32_t)(d >> (32 * i)); }
template <std::size_t N> static inline uint32_t get(const VlWide<N> &d, int i) { return d[i]; }

#define W WORDS
extern "C" int run(const uint32_t *cfg, int n_cfg, const uint32_t *tile, int64_t tile_len,
    const uint32_t *x, int64_t x_len, uint32_t *y, int64_t y_len, uint32_t p_en,
    uint64_t seed, int64_t max_cycles, int64_t *info) {
  VerilatedContext ctx; Vlane t(&ctx);
  s = seed * 2654435761ULL + 88172645463325252ULL;
  static const uint32_t junk[8] = {0xdeadbeef, 0xfeedface, 0x7fc00001, 0xffffffff,
                                   0xdeadbeef, 0xfeedface, 0x7fc00001, 0xffffffff};
  t.start = 0; t.tile_en = 0;
  t.sys_rst = 1;
  for (int i = 0; i < 3; i++) { t.sys_clk = 0; t.eval(); t.sys_clk = 1; t.eval(); }
  t.sys_rst = 0; t.sys_clk = 0;
  put(t.tile_dat_r, junk); put(t.x_dat_r, junk); put(t.y_dat_r, junk);
  t.eval();
  int status = 0;
  for (int n = 0; n < n_cfg && status == 0; n++) {
  const uint32_t *c = cfg + 8 * n;
  t.cfg_seg_base = c[0]; t.cfg_crd_base = c[1]; t.cfg_val_base = c[2];
  t.cfg_rows = c[3]; t.cfg_mode = c[4]; t.cfg_k = c[5]; t.cfg_x_base = c[6];
  t.cfg_y_base = c[7];
  status = 1; int64_t cyc, busy = 0, stall = 0; int en_q = 0;
  /* a few idle cycles between tiles: the readers may still be prefetching */
  int gap = n ? 1 + (int)(rnd16() % 8) : 0;
  for (cyc = -gap; cyc < max_cycles; cyc++) {
    t.start = cyc == 0;
    int en = rnd16() < p_en;  /* grants this cycle's request: the port reads it next cycle */
    t.tile_en = en;
    t.eval();
    busy += t.busy; stall += t.busy & t.stall;
    uint64_t ta = t.tile_adr, xa = t.x_adr, ya = t.y_adr;
    uint32_t we = t.y_we;
    if ((int64_t)((ta + 1) * W) > tile_len || (int64_t)((xa + 1) * W) > x_len ||
        (int64_t)((ya + 1) * W) > y_len) { status = 4; break; }
    uint32_t yold[W];
    for (int i = 0; i < W; i++) yold[i] = y[ya * W + i];
    if (we) {
      for (int i = 0; i < W; i++) {
        uint32_t m = 0;
        for (int b = 0; b < 4; b++) if (we >> (4 * i + b) & 1) m |= 0xffu << (8 * b);
        y[ya * W + i] = (y[ya * W + i] & ~m) | (get(t.y_dat_w, i) & m);
      }
    }
    t.sys_clk = 1; t.eval(); t.sys_clk = 0;
    put(t.tile_dat_r, en_q ? tile + ta * W : junk);
    en_q = en;
    put(t.x_dat_r, x + xa * W);
    put(t.y_dat_r, yold);  /* read-first; the lane never reads and writes in one cycle */
    t.eval();
    if (cyc > 0 && t.done) { status = 0; cyc++; break; }
  }
  info[4 * n] = cyc; info[4 * n + 1] = busy; info[4 * n + 2] = stall;
  info[4 * n + 3] = t.error;
  }
  t.final();
  return status;
}
"""


@dataclass
class LaneRun:
    cycles: int  # from the start pulse to done
    busy: int
    stall: int
    error: bool


class LaneSim:
    """A :class:`Lane` built for Verilator (``params`` as for :class:`Lane`)."""

    def __init__(self, **params: Any) -> None:
        lane = Lane(**params)
        self.params = lane.params
        self.contexts = lane.contexts  # accumulator contexts
        self.turn = lane.turn  # a lone row's cycles per add
        self.bus_bits = lane.params["bus_bits"]
        self.words = self.bus_bits // 32
        text = lane.to_verilog("lane")
        tag = "_".join(
            [f"b{self.bus_bits}", *lane.params["value_types"], f"k{lane.params['max_k']}"]
        )
        self.lib = build(
            name=f"lane_{tag}",
            verilog={"lane.v": text},
            top="lane",
            harness=_HARNESS.replace("WORDS", str(self.words)),
            cdef=_CDEF,
            flags=("-Wno-fatal", "-Wno-lint", "-Wno-style"),
        )
        self.ffi = ffi_of(self.lib)

    def depth_words(self, which: str) -> int:
        """32-bit words in the ``tile``, ``x`` or ``y`` buffer."""
        return int(self.params[f"{which}_depth"]) * self.words

    def run(
        self,
        cfg: dict[str, int],
        tile: np.ndarray,
        x: np.ndarray,
        y: np.ndarray,
        p_en: float = 1.0,
        seed: int = 0,
        max_cycles: int | None = None,
    ) -> LaneRun:
        """Run one tile. ``tile``, ``x``, ``y``: uint32 arrays of exactly the buffer sizes
        (:meth:`depth_words`); ``y`` is updated in place."""
        return self.run_many([cfg], tile, x, y, p_en, seed, max_cycles)[0]

    def run_many(
        self,
        cfgs: list[dict[str, int]],
        tile: np.ndarray,
        x: np.ndarray,
        y: np.ndarray,
        p_en: float = 1.0,
        seed: int = 0,
        max_cycles: int | None = None,
    ) -> list[LaneRun]:
        """Run several tiles back to back on one lane (no reset between them: a start pulse
        1 to 8 cycles after the previous done), each with its configuration; ``max_cycles``
        is per tile."""
        arrs = []
        for name, a in (("tile", tile), ("x", x), ("y", y)):
            if a.dtype != np.uint32 or len(a) != self.depth_words(name) or not a.flags.c_contiguous:
                raise ValueError(f"{name} must be a contiguous uint32 array of the buffer's size")
            arrs.append(a)
        words = np.array(
            [int(cfg.get(n, 0)) & 0xFFFFFFFF for cfg in cfgs for n in CONFIG_WORDS], np.uint32
        )
        info = self.ffi.new("int64_t[]", 4 * len(cfgs))
        limit = max_cycles if max_cycles is not None else 20 * len(tile) + 10_000
        ffi = self.ffi
        status = self.lib.run(
            ffi.from_buffer("uint32_t[]", words),
            len(cfgs),
            ffi.from_buffer("uint32_t[]", tile),
            len(tile),
            ffi.from_buffer("uint32_t[]", x),
            len(x),
            ffi.from_buffer("uint32_t[]", y),
            len(y),
            min(int(p_en * 65536), 65536),
            seed,
            limit,
            info,
        )
        if status == 1:
            raise DeviceTimeoutError(f"lane: not done after {limit} cycles")
        if status:
            raise DeviceError("lane: addressed a buffer outside its array")
        return [
            LaneRun(*(int(v) for v in info[4 * n : 4 * n + 3]), error=bool(info[4 * n + 3]))
            for n in range(len(cfgs))
        ]


@dataclass
class TileOperands:
    """One CSR tile of an image, unpacked enough to place it in the lane's buffers."""

    data: bytes  # the tile's bytes, header included
    rows: int
    cols: int
    index: tuple[int, int]  # tile index (i, j)
    tile_shape: tuple[int, int]
    coord_bytes: int
    dtype: str  # "fp32" or "int32"
    seg_offset: int
    crd_offset: int
    vals_offset: int
    seg: np.ndarray
    crd: np.ndarray
    vals: np.ndarray  # uint32 bits

    def config(self, place: int, x_base: int, y_base: int, kernel: str, k: int) -> dict:
        """Configuration words with the tile at byte ``place`` of the tile buffer."""
        return {
            "seg_base": place + self.seg_offset,
            "crd_base": place + self.crd_offset,
            "val_base": place + self.vals_offset,
            "rows": self.rows,
            "mode": mode_word(kernel, self.dtype, self.coord_bytes),
            "k": k,
            "x_base": x_base,
            "y_base": y_base,
        }


def tile_operands(img: Any, d: int) -> TileOperands:
    """Directory entry ``d`` of a 2-D ``"ds"`` image (``ff.pack(...)``) as :class:`TileOperands`."""
    buf = np.asarray(img.data, dtype=np.uint8)
    geo = img.geometry
    h = buf[: di.HEADER.itemsize].view(di.HEADER)[0]
    dtype = {code: name for name, code in DTYPE_CODES.items()}[int(h["dtype"])]
    dir_t = di.dir_entry_dtype(2)
    ent = buf[int(h["dir_offset"]) + d * dir_t.itemsize :][: dir_t.itemsize].view(dir_t)[0]
    off, nbytes = int(ent["offset"]), int(ent["nbytes"])
    index = (int(ent["index"][0]), int(ent["index"][1]))
    tile_shape = (int(geo.tiles[0]), int(geo.tiles[1]))
    rows = min(tile_shape[0], int(geo.sizes[0]) - index[0] * tile_shape[0])
    cols = min(tile_shape[1], int(geo.sizes[1]) - index[1] * tile_shape[1])
    t = buf[off : off + nbytes]
    th_t = di.tile_header_dtype(2)
    th = t[: th_t.itemsize].view(th_t)[0]
    nvals, vals_offset = int(th["nvals"]), int(th["vals_offset"])
    level = th["levels"][1]  # the compressed level
    seg_offset, crd_offset = int(level["seg_offset"]), int(level["crd_offset"])
    seg = t[seg_offset : seg_offset + 4 * (rows + 1)].view("<u4").astype(np.int64)
    coord_bytes = geo.coord_bytes
    cdt = "<u2" if coord_bytes == 2 else "<u4"
    crd = t[crd_offset : crd_offset + coord_bytes * nvals].view(cdt).astype(np.int64)
    vals = t[vals_offset : vals_offset + 4 * nvals].view("<u4").astype(np.uint32)
    return TileOperands(
        bytes(t), rows, cols, index, tile_shape, coord_bytes, dtype,
        seg_offset, crd_offset, vals_offset, seg, crd, vals,
    )  # fmt: skip


# The ALU's (multiply, add) for each value type.
_MUL_ADD = {"fp32": (Op.FMUL, Op.FADD), "int32": (Op.MUL, Op.ADD)}


def _alu(op: Op, a: int, b: int) -> int:
    return int(op_words(op, np.array([a]), np.array([b]))[0])


def reference(t: TileOperands, xs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """What the lane leaves in ``y`` (uint32, shape (rows, k), the current sums) for tile
    ``t`` and its x slice ``xs`` (uint32, shape (cols, k)): a new array."""
    y = np.array(y, dtype=np.uint32, copy=True)
    mul, add = _MUL_ADD[t.dtype]
    for r in range(t.rows):
        lo, hi = int(t.seg[r]), int(t.seg[r + 1])
        if lo == hi:
            continue
        for c in range(y.shape[1]):
            acc = int(y[r, c])
            for q in range(lo, hi):
                acc = _alu(add, acc, _alu(mul, int(t.vals[q]), int(xs[t.crd[q], c])))
            y[r, c] = acc
    return y


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)


def run_matrix(
    sim: LaneSim,
    A: Any,
    X: np.ndarray,
    tile: tuple[int, int],
    kernel: str,
    rng: np.random.Generator,
    y_init: np.ndarray | None = None,
    p_en: float = 0.6,
    coord_bits: int | None = None,
) -> tuple[np.ndarray, list[tuple[TileOperands, LaneRun]]]:
    """``A @ X`` through one lane as the firmware sequences it; the bits of the result.

    ``A`` (scipy sparse, float32 or int32) is packed with ``tile``; ``X`` has shape (n, k).
    For each row tile, the y buffer (random bits around the block) gets the rows of ``y_init``
    (default zeros) at a random offset, the row tile's column tiles run left to right, each
    placed at a random 16-byte offset of a tile buffer full of random bits with its x slice at
    a random 4-byte offset, and the block is read back. Returns the (m, k) uint32 result and
    every tile's run. Raises ``ValueError`` if a tile or slice does not fit its buffer.
    """
    import fiberflow as ff

    img = ff.pack(ff.Tensor.from_scipy(A), tile=tile, coord_bits=coord_bits)
    k = X.shape[1]
    m = A.shape[0]
    Y = np.zeros((m, k), np.uint32)
    if y_init is not None:
        Y[:] = np.ascontiguousarray(y_init).view(np.uint32).reshape(m, k)
    xbits = np.ascontiguousarray(X).view(np.uint32).reshape(X.shape)
    runs = []
    tiles = [tile_operands(img, d) for d in range(img.n_tiles)]
    ybuf = np.zeros(sim.depth_words("y"), np.uint32)
    for i in sorted({t.index[0] for t in tiles}):
        row = [t for t in tiles if t.index[0] == i]  # directory order: left to right
        r0, nr = i * row[0].tile_shape[0], row[0].rows
        if nr * k > len(ybuf):
            raise ValueError(f"a row tile's y block ({nr} x {k}) does not fit the y buffer")
        ybuf[:] = _noise(rng, len(ybuf))
        y_base = 4 * int(rng.integers(0, len(ybuf) - nr * k + 1))
        ybuf[y_base // 4 : y_base // 4 + nr * k] = Y[r0 : r0 + nr].ravel()
        for t in row:
            j = t.index[1]
            tbuf = _noise(rng, sim.depth_words("tile"))
            room = 4 * len(tbuf) - len(t.data)
            xs = xbits[j * t.tile_shape[1] : j * t.tile_shape[1] + t.cols]
            xbuf = _noise(rng, sim.depth_words("x"))
            if room < 0 or xs.size > len(xbuf):
                raise ValueError(f"tile {t.index} or its x slice does not fit the lane's buffers")
            place = 16 * int(rng.integers(0, room // 16 + 1))
            tbuf.view(np.uint8)[place : place + len(t.data)] = np.frombuffer(t.data, np.uint8)
            x_base = 4 * int(rng.integers(0, len(xbuf) - xs.size + 1))
            xbuf[x_base // 4 : x_base // 4 + xs.size] = xs.ravel()
            cfg = t.config(place, x_base, y_base, kernel, k)
            run = sim.run(cfg, tbuf, xbuf, ybuf, p_en=p_en, seed=int(rng.integers(1 << 30)))
            runs.append((t, run))
        Y[r0 : r0 + nr] = ybuf[y_base // 4 : y_base // 4 + nr * k].reshape(nr, k)
    return Y, runs
