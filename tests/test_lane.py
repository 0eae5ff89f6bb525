"""The SpMV/SpMM lane in Verilator, bit for bit against the emulator and the documented order.

Tiles are real: ``ff.pack`` images, cut tile by tile into the lane's tile buffer at random
offsets, with the x slice (B rows) and the y block (C rows) at random offsets in their buffers.
A matrix is run through one lane tile after tile (``lane_sim.run_matrix``: a row tile's column
tiles left to right, carrying y in the y buffer, as the firmware does) and compared with
``ff.spmv`` / ``ff.spmm`` on the emulator; single tiles with arbitrary starting y (ACCUMULATE)
are compared with :func:`fiberflow.overlay.sim.lane_sim.reference`. The tile port's grant is
random in most runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.overlay.lanes.lane import Lane, mode_word
from fiberflow.overlay.sim.lane_sim import LaneSim, reference, run_matrix, tile_operands

pytestmark = pytest.mark.rtl

DEPTH = 4096  # bus words per buffer in the test builds (32 KiB tiles on a 64-bit bus)
SPECIAL = np.array(
    [0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00123, 0x7F800001, 0x00000001, 0x807FFFFF,
     0x00800000, 0x80000000, 0x7F7FFFFF, 0x0DA24260, 0x33800000],
    dtype=np.uint32,
)  # fmt: skip


@pytest.fixture(scope="module", params=[64, 128], ids=["bus64", "bus128"])
def sim(request: pytest.FixtureRequest) -> LaneSim:
    return LaneSim(
        value_types=("fp32", "int32"),
        bus_bits=request.param,
        tile_depth=DEPTH,
        x_depth=DEPTH,
        y_depth=DEPTH,
        max_k=8,
    )


@pytest.fixture(scope="module")
def emu() -> ff.Device:
    return ff.open("emu")


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint32)


def run_ok(*args: object, **kw: object) -> tuple[np.ndarray, list]:
    """:func:`run_matrix`, checking that no tile ended with an error."""
    Y, runs = run_matrix(*args, **kw)  # type: ignore[arg-type]
    assert not any(run.error for _, run in runs)
    return Y, runs


def structured(rng: np.random.Generator, m: int, n: int, dtype: type) -> sp.csr_matrix:
    """Empty rows, one dense row, long rows, single entries, random rows."""
    dense = np.zeros((m, n), dtype)
    for r in range(m):
        kind = r % 6
        if kind == 0:
            continue  # empty
        if kind == 1:
            cols = [int(rng.integers(n))]
        elif kind == 2:
            cols = list(range(n))  # dense row, longer than the pipeline
        else:
            cols = rng.choice(n, size=int(rng.integers(1, n // 2)), replace=False)
        if dtype == np.int32:
            dense[r, cols] = rng.integers(-(2**31), 2**31, size=len(cols))
        else:
            dense[r, cols] = rng.standard_normal(len(cols)) * 10.0 ** rng.integers(-3, 4, len(cols))
    return sp.csr_matrix(dense)


def test_spmv_fp32_matches_emulator(sim: LaneSim, emu: ff.Device) -> None:
    rng = np.random.default_rng(1)
    A = structured(rng, 70, 150, np.float32)
    x = rng.standard_normal(150).astype(np.float32)
    got, runs = run_ok(sim, A, x[:, None], (32, 64), "spmv", rng)
    want = ff.spmv(A, x, device=emu)
    np.testing.assert_array_equal(got[:, 0], _bits(want))
    assert len({t.index[1] for t, _ in runs}) == 3  # rows carried across column tiles


def test_spmv_special_values(sim: LaneSim, emu: ff.Device) -> None:
    """NaN (with payloads), infinities, subnormals, extremes in A and x; a row where 1e8
    cancels and one where it swallows the 1 (order matters)."""
    rng = np.random.default_rng(2)
    A = sp.random(40, 90, density=0.25, format="csr", random_state=3, dtype=np.float32)
    A.data[:] = rng.standard_normal(A.nnz)
    pick = rng.random(A.nnz) < 0.2
    A.data[pick] = SPECIAL[rng.integers(len(SPECIAL), size=int(pick.sum()))].view(np.float32)
    A = A.tolil()
    A[5, :] = 0
    A[5, 10], A[5, 20], A[5, 30] = 1e8, -1e8, 1.0
    A[6, :] = 0
    A[6, 10], A[6, 20], A[6, 30] = 1.0, 1e8, -1e8
    A = A.tocsr()
    x = rng.standard_normal(90).astype(np.float32)
    x[rng.integers(90, size=8)] = SPECIAL[rng.integers(len(SPECIAL), size=8)].view(np.float32)
    x[[10, 20, 30]] = 1.0
    got, _ = run_ok(sim, A, x[:, None], (64, 64), "spmv", rng)
    want = ff.spmv(A, x, device=emu)
    np.testing.assert_array_equal(got[:, 0], _bits(want))
    assert got[5, 0] == _bits(np.float32(1.0)) and got[6, 0] == 0


def test_spmv_int32_wraps(sim: LaneSim, emu: ff.Device) -> None:
    rng = np.random.default_rng(3)
    A = structured(rng, 50, 100, np.int32)
    x = rng.integers(-(2**31), 2**31, size=100).astype(np.int32)
    got, _ = run_ok(sim, A, x[:, None], (32, 64), "spmv", rng)
    want = ff.spmv(A, x, device=emu)
    np.testing.assert_array_equal(got[:, 0], _bits(want))
    wrapped = (A.astype(np.int64) @ x.astype(np.int64)) & 0xFFFFFFFF
    np.testing.assert_array_equal(got[:, 0], wrapped.astype(np.uint32))


@pytest.mark.parametrize("coord_bits", [16, 32])
def test_coordinate_widths(sim: LaneSim, emu: ff.Device, coord_bits: int) -> None:
    rng = np.random.default_rng(4 + coord_bits)
    A = sp.random(33, 77, density=0.3, format="csr", random_state=coord_bits, dtype=np.float32)
    x = rng.standard_normal(77).astype(np.float32)
    got, runs = run_ok(sim, A, x[:, None], (16, 32), "spmv", rng, coord_bits=coord_bits)
    assert {t.coord_bytes for t, _ in runs} == {coord_bits // 8}
    np.testing.assert_array_equal(got[:, 0], _bits(ff.spmv(A, x, device=emu)))


@pytest.mark.parametrize("k", [1, 2, 3, 8])
@pytest.mark.parametrize("dtype", ["float32", "int32"])
def test_spmm_matches_emulator(sim: LaneSim, emu: ff.Device, k: int, dtype: str) -> None:
    rng = np.random.default_rng(10 + k)
    if dtype == "int32":
        A = structured(rng, 24, 60, np.int32)
        B = rng.integers(-(2**31), 2**31, size=(60, k)).astype(np.int32)
    else:
        A = structured(rng, 24, 60, np.float32)
        B = rng.standard_normal((60, k)).astype(np.float32)
    got, _ = run_ok(sim, A, B, (16, 32), "spmm", rng)
    np.testing.assert_array_equal(got, _bits(ff.spmm(A, B, device=emu)).reshape(24, k))


@pytest.mark.parametrize("kernel,k", [("spmv", 1), ("spmm", 3)])
def test_accumulate_from_current_y(sim: LaneSim, kernel: str, k: int) -> None:
    """y starts from its contents (any bits: NaN payloads and subnormals in untouched rows pass
    through; touched rows read them under the ALU's policy)."""
    rng = np.random.default_rng(20 + k)
    A = structured(rng, 30, 40, np.float32)
    X = rng.standard_normal((40, k)).astype(np.float32)
    y0 = rng.standard_normal((30, k)).astype(np.float32)
    y0.view(np.uint32)[::4] = SPECIAL[rng.integers(len(SPECIAL), size=y0[::4].shape)]
    got, runs = run_ok(sim, A, X, (32, 64), kernel, rng, y_init=y0)
    ((t, _),) = runs
    want = reference(t, _bits(X).reshape(40, k), _bits(y0).reshape(30, k))
    np.testing.assert_array_equal(got, want)
    empty = np.diff(t.seg) == 0
    np.testing.assert_array_equal(got[empty], _bits(y0).reshape(30, k)[empty])


def test_bad_configuration_reports_error(sim: LaneSim) -> None:
    rng = np.random.default_rng(5)
    tbuf = np.zeros(sim.depth_words("tile"), np.uint32)
    xbuf = np.zeros(sim.depth_words("x"), np.uint32)
    for mode, k in [
        (mode_word("spmm", "fp32", 2), 0),
        (mode_word("spmm", "fp32", 2), 9),
        (mode_word("spmv", "fp32", 3), 1),
        (3 | 1 << 8 | 2 << 16, 1),
        (1 | 3 << 8 | 2 << 16, 1),
        (mode_word("spmv", "fp32", 2) | 1 << 4, 1),  # a reserved bit
    ]:
        ybuf = rng.integers(0, 2**32, size=sim.depth_words("y"), dtype=np.uint64).astype(np.uint32)
        before = ybuf.copy()
        cfg = {"rows": 4, "mode": mode, "k": k}
        run = sim.run(cfg, tbuf, xbuf, ybuf, max_cycles=100)
        assert run.error and run.cycles <= 3
        np.testing.assert_array_equal(ybuf, before)
    good = {"rows": 4, "mode": mode_word("spmv", "fp32", 4), "crd_base": 64, "val_base": 128}
    tile_bytes = 4 * sim.depth_words("tile")
    for bad in [
        {"seg_base": 2},
        {"crd_base": 66},  # u32 coordinates 2-byte aligned
        {"val_base": tile_bytes},
        {"x_base": 4 * sim.depth_words("x")},
        {"y_base": 4 * sim.depth_words("y") + 4},
        {"y_base": 1},
    ]:
        ybuf = rng.integers(0, 2**32, size=sim.depth_words("y"), dtype=np.uint64).astype(np.uint32)
        before = ybuf.copy()
        run = sim.run({**good, **bad}, tbuf, xbuf, ybuf, max_cycles=100)
        assert run.error and run.cycles <= 3, bad
        np.testing.assert_array_equal(ybuf, before)
    # The same configuration with aligned offsets inside the buffers runs (all rows empty).
    assert not sim.run(good, tbuf, xbuf, ybuf, max_cycles=100).error
    # A decreasing segment array is refused too.
    tbuf[:4] = [0, 3, 1, 1]
    run = sim.run({"rows": 3, "mode": mode_word("spmv", "fp32", 4)}, tbuf, xbuf, ybuf)
    assert run.error


def test_throughput(sim: LaneSim) -> None:
    """SpMV at about one nonzero per cycle with 12 nonzeros per row; SpMM one multiply-add per
    cycle. A tile's last rows finish one add per accumulator turn (the sums are sequential),
    a tail of about (row length x turn) cycles, so the tile has enough rows to amortise it."""
    rng = np.random.default_rng(6)
    rows, cols, per_row = 256, 64, 12
    dense = np.zeros((rows, cols), np.float32)
    for r in range(rows):
        dense[r, rng.choice(cols, size=per_row, replace=False)] = 1.0
    A = sp.csr_matrix(dense)
    x = np.ones((cols, 1), np.float32)
    _, ((_, run),) = run_ok(sim, A, x, (rows, cols), "spmv", rng, p_en=1.0)
    assert A.nnz / run.cycles >= 0.93
    B = np.ones((cols, 4), np.float32)
    _, ((_, run),) = run_ok(sim, A, B, (rows, cols), "spmm", rng, p_en=1.0)
    assert 4 * A.nnz / run.cycles >= 0.97


def test_long_rows(sim: LaneSim, emu: ff.Device) -> None:
    """Rows far longer than an accumulator queue: the front end waits for room (the products
    are never dropped or reordered), and a lone long row gets one add per accumulator turn."""
    rng = np.random.default_rng(11)
    dense = np.zeros((24, 256), np.float32)
    dense[3, :] = rng.standard_normal(256)  # one row of 256, alone in its rows' neighbourhood
    for r in (7, 8, 9, 10):
        dense[r, rng.choice(256, size=100, replace=False)] = rng.standard_normal(100)
    for r in range(12, 24):
        dense[r, rng.choice(256, size=int(rng.integers(0, 40)), replace=False)] = 1.5
    A = sp.csr_matrix(dense)
    for kernel, k in (("spmv", 1), ("spmm", 3)):
        X = rng.standard_normal((256, k)).astype(np.float32)
        got, ((_, run),) = run_ok(sim, A, X, (24, 256), kernel, rng, p_en=0.7)
        np.testing.assert_array_equal(got, _bits(ff.spmm(A, X, device=emu)).reshape(24, k))
    lone = sp.csr_matrix(dense[3:4])
    for k in (1, 2):
        X = rng.standard_normal((256, k)).astype(np.float32)
        got, ((_, run),) = run_ok(sim, lone, X, (1, 256), "spmm", rng, p_en=1.0)
        np.testing.assert_array_equal(got, _bits(ff.spmm(lone, X, device=emu)).reshape(1, k))
        # One add per turn of the accumulator (latency + 1 cycles), each chain's adds back to
        # back; a fixed round-robin over the contexts would take one per `contexts` cycles.
        assert sim.turn < sim.contexts
        assert run.cycles <= 256 * (sim.turn + 1) + 64, (k, run.cycles)


def test_lane_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="bus_bits"):
        Lane(bus_bits=32)
    with pytest.raises(ValueError, match="value_types"):
        Lane(value_types=("fp16",))
    with pytest.raises(ValueError, match="max_k"):
        Lane(max_k=0)


@pytest.mark.slow
def test_random_matrices_long(sim: LaneSim, emu: ff.Device) -> None:
    """Hundreds of random matrices, tile shapes, k, value types, coordinate widths and grant
    rates, with special values sprinkled in: every output word equals the emulator's."""
    rng = np.random.default_rng(7)
    for it in range(300):
        m, n = int(rng.integers(1, 120)), int(rng.integers(1, 200))
        k = int(rng.integers(1, 9))
        kernel = "spmv" if k == 1 and rng.random() < 0.5 else "spmm"
        A = sp.random(m, n, density=float(rng.uniform(0.01, 0.4)), format="csr",
                      random_state=it, dtype=np.float32)  # fmt: skip
        if rng.random() < 0.3:
            A = A.astype(np.int32)
            A.data[:] = rng.integers(-(2**31), 2**31, size=A.nnz)
            B = rng.integers(-(2**31), 2**31, size=(n, k)).astype(np.int32)
        else:
            A.data[:] = rng.standard_normal(A.nnz) * 10.0 ** rng.integers(-20, 20, A.nnz)
            pick = rng.random(A.nnz) < 0.05
            A.data[pick] = SPECIAL[rng.integers(len(SPECIAL), size=int(pick.sum()))].view(
                np.float32
            )
            B = rng.standard_normal((n, k)).astype(np.float32)
        tile = (int(rng.choice([8, 16, 32])), int(rng.choice([16, 32, 64])))
        coord_bits = int(rng.choice([16, 32]))
        got, _ = run_ok(sim, A, B, tile, kernel, rng, p_en=float(rng.uniform(0.2, 1)),
                        coord_bits=coord_bits)  # fmt: skip
        want = _bits(ff.spmm(A, B, device=emu)).reshape(m, k)
        np.testing.assert_array_equal(got, want, err_msg=f"iteration {it}")


def test_with_migen_memories() -> None:
    """The lane wired to real Migen ``Memory`` ports (``Lane.connect``), in Migen's own
    simulator, on a small SpMM tile: the same bits as the reference."""
    from migen import Memory, Module, run_simulation

    rng = np.random.default_rng(8)
    A = sp.csr_matrix(np.array([[0, 1.5, 0, -2], [0, 0, 0, 0], [3, 0, 0, 0.25]], np.float32))
    img = ff.pack(ff.Tensor.from_scipy(A), tile=(4, 4))
    t = tile_operands(img, 0)
    k = 2
    X = rng.standard_normal((4, k)).astype(np.float32)
    y0 = rng.standard_normal((3, k)).astype(np.float32)
    want = reference(t, _bits(X), _bits(y0))
    words = 2  # 64-bit buffers

    def wide(u32: np.ndarray, depth: int) -> list[int]:
        a = np.zeros(depth * words, np.uint64)
        a[: len(u32)] = u32
        return [int(a[2 * i]) | int(a[2 * i + 1]) << 32 for i in range(depth)]

    tile_u32 = np.frombuffer(t.data, np.uint32)
    y_base = 4  # one word in: y rows straddle bus words
    y_init = np.concatenate([[0xDEADBEEF], _bits(y0).ravel(), [0xFEEDFACE]]).astype(np.uint32)

    class Top(Module):
        def __init__(self) -> None:
            self.submodules.lane = lane = Lane(bus_bits=64, tile_depth=16, x_depth=16, y_depth=16)
            mems = [
                Memory(64, 16, init=wide(tile_u32, 16)),
                Memory(64, 16, init=wide(_bits(X).ravel(), 16)),
                Memory(64, 16, init=wide(y_init, 16)),
            ]
            self.ymem = mems[2]
            ports = [
                mems[0].get_port(),
                mems[1].get_port(),
                mems[2].get_port(write_capable=True, we_granularity=8),
            ]
            self.specials += mems + ports
            self.comb += [*lane.connect(*ports), lane.tile_en.eq(1)]

    top = Top()
    cfg = t.config(0, 0, y_base, "spmm", k)
    out: list[int] = []

    def bench():  # type: ignore[no-untyped-def]
        for name, value in cfg.items():
            yield getattr(top.lane, f"cfg_{name}").eq(value)
        yield top.lane.start.eq(1)
        yield
        yield top.lane.start.eq(0)
        for _ in range(200):
            yield
            if (yield top.lane.done):
                break
        assert (yield top.lane.done) and not (yield top.lane.error)
        for i in range(8):
            out.append((yield top.ymem[i]))

    run_simulation(top, bench())
    flat = np.array([(w >> (32 * h)) & 0xFFFFFFFF for w in out for h in range(2)], np.uint32)
    np.testing.assert_array_equal(flat[1 : 1 + 3 * k].reshape(3, k), want)
    assert flat[0] == 0xDEADBEEF and flat[1 + 3 * k] == 0xFEEDFACE


def test_tiles_back_to_back(sim: LaneSim, emu: ff.Device) -> None:
    """Column tiles of two row tiles on one lane without a reset between them, with refused
    configurations in between: the readers' prefetched words never leak into the next tile."""
    rng = np.random.default_rng(9)
    A = sp.random(40, 96, density=0.3, format="csr", random_state=9, dtype=np.float32)
    X = rng.standard_normal((96, 2)).astype(np.float32)
    img = ff.pack(ff.Tensor.from_scipy(A), tile=(20, 32))
    tiles = [tile_operands(img, d) for d in range(6)]
    tbuf = np.zeros(sim.depth_words("tile"), np.uint32)
    xbuf = np.zeros(sim.depth_words("x"), np.uint32)
    ybuf = np.zeros(sim.depth_words("y"), np.uint32)
    xbuf[: X.size] = _bits(X).ravel()
    cfgs, place = [], 0
    for t in tiles:
        tbuf.view(np.uint8)[place : place + len(t.data)] = np.frombuffer(t.data, np.uint8)
        y_base = 4 * t.index[0] * t.tile_shape[0] * 2
        x_base = 4 * t.index[1] * t.tile_shape[1] * 2
        cfgs.append(t.config(place, x_base, y_base, "spmm", 2))
        cfgs.append({**cfgs[-1], "k": 0})  # refused: nothing happens
        place += len(t.data)
    assert place <= 4 * len(tbuf)
    runs = sim.run_many(cfgs, tbuf, xbuf, ybuf, p_en=0.5, seed=4)
    assert [r.error for r in runs] == [False, True] * 6
    got = ybuf[: 40 * 2].reshape(40, 2)
    np.testing.assert_array_equal(got, _bits(ff.spmm(A, X, device=emu)).reshape(40, 2))
