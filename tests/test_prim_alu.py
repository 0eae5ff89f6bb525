import numpy as np
import pytest

from fiberflow.overlay.lanes import fp32
from fiberflow.overlay.primitives import alu
from fiberflow.overlay.primitives.alu import Op
from fiberflow.overlay.primitives.stream import Kind, Val, parse
from fiberflow.overlay.sim.simharness import StreamSim
from fiberflow.overlay.sim.testing import random_values

pytestmark = pytest.mark.rtl

SPECIAL = np.array(
    [
        0x00000000,
        0x80000000,  # +-0
        0x7F800000,
        0xFF800000,  # +-inf
        0x7FC00000,
        0xFFC00001,
        0x7F800001,
        0x7FBFFFFF,  # quiet and signalling NaNs
        0x7F7FFFFF,
        0xFF7FFFFF,  # largest normals
        0x00800000,
        0x80800000,
        0x00800001,
        0x00FFFFFF,  # smallest normals
        0x00000001,
        0x807FFFFF,
        0x00400000,  # subnormals
        0x3F800000,
        0xBF800000,
        0x3F800001,
        0x3F7FFFFF,
        0x4B000000,
        0x33800000,
        0x1F800000,
        0x20000000,
        0x5F800000,
        0x60000000,  # products near under/overflow
    ],
    dtype=np.uint32,
)


def operands(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random operand pairs: uniform bit patterns, close exponents (cancellation and rounding),
    products near the under- and overflow thresholds, and every pair of special values."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 2**32, size=(2, n), dtype=np.uint64).astype(np.uint32)
    a, b = u[0], u[1]
    k = n // 4
    # close exponents: b = a with a few low exponent/mantissa bits changed
    b[:k] = (a[:k] ^ rng.integers(0, 2**26, size=k).astype(np.uint32)) ^ (
        rng.integers(0, 2, size=k).astype(np.uint32) << 31
    )
    # exponents summing near the subnormal / overflow edge for products
    j = slice(k, 2 * k)
    ea = rng.integers(1, 255, size=k).astype(np.uint32)
    target = rng.choice(np.array([126, 127, 128, 126 + 254, 127 + 254, 125]), size=k)
    eb = np.clip(target - ea, 1, 254).astype(np.uint32)
    a[j] = (a[j] & 0x807FFFFF) | (ea << 23)
    b[j] = (b[j] & 0x807FFFFF) | (eb << 23)
    # mantissas all ones (rounding carries)
    m = slice(2 * k, 2 * k + k // 4)
    a[m] |= 0x007FFFFF
    b[m] |= 0x007FF000
    # special values at random, and every special pair
    s = slice(2 * k + k // 4, 3 * k)
    a[s] = np.where(rng.random(size=a[s].size) < 0.5, rng.choice(SPECIAL, size=a[s].size), a[s])
    b[s] = np.where(rng.random(size=b[s].size) < 0.5, rng.choice(SPECIAL, size=b[s].size), b[s])
    sa, sb = np.meshgrid(SPECIAL, SPECIAL)
    a[: sa.size] = sa.ravel()
    b[: sb.size] = sb.ravel()
    return a, b


@pytest.fixture(scope="module")
def sim():
    return StreamSim("prim_alu", alu.Alu())


def run_words(sim, op, a, b, **kw):
    done = np.array([int(Kind.DONE) << 32], dtype=np.uint64)
    wa = np.concatenate([a.astype(np.uint64), done])
    wb = np.concatenate([b.astype(np.uint64), done])
    res = sim.run([wa, wb], cfg={"op": int(op)}, decode=False, **kw)
    out = res.words[0]
    assert len(out) == len(a) + 1 and out[-1] == done[0]
    assert np.all(out[:-1] >> np.uint64(32) == 0)
    return out[:-1].astype(np.uint32), res


def numpy_reference(op, a, b):
    """Straight numpy float32 arithmetic on flushed inputs, flushed outputs, canonical NaN."""
    fa, fb = fp32.daz(a).view(np.float32), fp32.daz(b).view(np.float32)
    with np.errstate(all="ignore"):
        r = {Op.FADD: fa + fb, Op.FSUB: fa - fb, Op.FMUL: fa * fb}[op]
    return fp32.ftz_canon(r.view(np.uint32))


@pytest.mark.parametrize("op", [Op.FADD, Op.FMUL, Op.FSUB])
def test_fp32_bit_exact_vs_numpy_1m(sim, op):
    # 1,000,000 pairs per op; about 0.2 s each in Verilator, so it runs by default.
    a, b = operands(1_000_000, seed=int(op))
    got, _ = run_words(sim, op, a, b, p_valid=0.9, p_ready=0.9, seed=3)
    want = numpy_reference(op, a, b)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, [(hex(a[i]), hex(b[i]), hex(got[i]), hex(want[i])) for i in bad[:5]]


@pytest.mark.slow
@pytest.mark.parametrize("op", [Op.FADD, Op.FMUL])
def test_fp32_bit_exact_vs_numpy_16m(sim, op):
    a, b = operands(16_000_000, seed=100 + int(op))
    got, _ = run_words(sim, op, a, b)
    want = numpy_reference(op, a, b)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, [(hex(a[i]), hex(b[i]), hex(got[i]), hex(want[i])) for i in bad[:5]]


@pytest.mark.parametrize("op", [Op.FMIN, Op.FMAX])
def test_fp32_minmax(sim, op):
    a, b = operands(50_000, seed=7)
    got, _ = run_words(sim, op, a, b, p_valid=0.8, p_ready=0.7)
    assert np.array_equal(got, alu.op_words(op, a, b))
    # Against numpy where numpy is unambiguous (no NaN, not both zero).
    fa, fb = fp32.daz(a).view(np.float32), fp32.daz(b).view(np.float32)
    ok = ~np.isnan(fa) & ~np.isnan(fb) & ~((fa == 0) & (fb == 0))
    ref = (np.minimum if op == Op.FMIN else np.maximum)(fa, fb).view(np.uint32)
    assert np.array_equal(got[ok], ref[ok])
    assert np.all(got[np.isnan(fa) | np.isnan(fb)] == fp32.QNAN)


@pytest.mark.parametrize("op", [Op.ADD, Op.SUB, Op.MUL, Op.MIN, Op.MAX])
def test_int32_ops(sim, op):
    a, b = operands(20_000, seed=11)
    got, _ = run_words(sim, op, a, b, p_valid=0.7, p_ready=0.6, seed=int(op))
    ia, ib = a.view(np.int32).astype(np.int64), b.view(np.int32).astype(np.int64)
    want = {
        Op.ADD: ia + ib,
        Op.SUB: ia - ib,
        Op.MUL: ia * ib,
        Op.MIN: np.minimum(ia, ib),
        Op.MAX: np.maximum(ia, ib),
    }[op]
    assert np.array_equal(got, (want & 0xFFFFFFFF).astype(np.uint32))


def test_stream_structure_with_stops_and_empty(sim):
    a = parse("1 2 S0 N 5 S1 D")
    b = parse("10 20 S0 7 N S1 D")
    assert sim.run([a, b], cfg={"op": int(Op.ADD)}).outputs[0] == parse("11 22 S0 7 5 S1 D")


@pytest.mark.parametrize("seed", range(3))
def test_random_streams_backpressure(sim, seed):
    rng = np.random.default_rng(seed)
    a, b = [], []
    for _ in range(400):
        s = random_values(rng, int(rng.integers(1, 5)))
        a += s
        b += [Val(int(rng.integers(2**32))) if isinstance(t, Val) else t for t in s]
    res = sim.run([a, b], cfg={"op": int(Op.FMUL)}, p_valid=0.5, p_ready=0.5, seed=seed)
    assert res.outputs[0] == alu.model(a, b, Op.FMUL)


def test_throughput_one_per_cycle(sim):
    a, b = operands(10_000, seed=1)
    _, res = run_words(sim, Op.FADD, a, b)
    assert res.cycles <= len(a) + 1 + 4  # tokens + done + pipeline latency


def test_edge_cases_are_covered():
    """The operand generator really produces the cases the policy is about."""
    a, b = operands(1_000_000, seed=5)
    fa, fb = fp32.daz(a).view(np.float32), fp32.daz(b).view(np.float32)
    with np.errstate(all="ignore"):
        raw = (fa * fb).view(np.uint32)
    want = numpy_reference(Op.FMUL, a, b)
    assert np.count_nonzero(((raw & 0x7F800000) == 0) & ((raw & 0x7FFFFF) != 0)) > 1000
    assert np.count_nonzero((want & 0x7FFFFFFF) == 0x00800000) > 100  # rounded up to min normal
    assert np.count_nonzero(((a & 0x7F800000) == 0) & ((a & 0x7FFFFF) != 0)) > 1000
    assert np.count_nonzero(want == fp32.QNAN) > 1000
