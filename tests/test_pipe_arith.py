"""The pipelined arithmetic units (overlay/lanes/pipe_arith.py) against the combinational references
and the numpy models, bit for bit, in Verilator: a new operand pair every cycle, each result
checked in exactly the cycle ``latency`` after its operands. Their depth, mapped for xc7."""

from __future__ import annotations

import numpy as np
import pytest
from migen import Module, Signal
from migen.fhdl.verilog import convert

from fiberflow.overlay.lanes import fp32
from fiberflow.overlay.lanes.pipe_arith import PipeFpAdd, PipeFpMul, PipeIntMul

pytestmark = pytest.mark.rtl

UNITS = {"add": PipeFpAdd, "mul": PipeFpMul, "imul": PipeIntMul}
# Outputs of the simulated top, in the order the harness writes them each cycle.
OUTS = ["add", "mul", "imul", "ref_add", "ref_mul"]

SPECIAL = np.array(
    [
        0x00000000, 0x80000000,  # +-0
        0x7F800000, 0xFF800000,  # +-inf
        0x7FC00000, 0xFFC00001, 0x7F800001, 0x7FBFFFFF,  # quiet and signalling NaNs
        0x7F7FFFFF, 0xFF7FFFFF, 0x7F7FFFFE, 0x7F000000,  # largest normals
        0x00800000, 0x80800000, 0x00800001, 0x00FFFFFF, 0x01000000,  # smallest normals
        0x00000001, 0x807FFFFF, 0x00400000,  # subnormals
        0x3F800000, 0xBF800000, 0x3F800001, 0x3F7FFFFF, 0x3FFFFFFF,  # around 1
        0x33800000, 0x33000000, 0x34000000, 0xB3800001,  # half an ulp of 1 and near it
        0x1F800000, 0x20000000, 0x5F800000, 0x60000000,  # products near under/overflow
        0xFFFFFFFF, 0x7FFFFFFF, 0x80000001,  # integer edge patterns
    ],
    dtype=np.uint32,
)  # fmt: skip


def operands(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` operand pairs, the kinds interleaved (so consecutive pairs differ): uniform bit
    patterns; near-cancellation (opposite signs, equal or adjacent exponents); every alignment
    distance with short significands (ties to even); sums that round up to overflow; differences
    at the smallest normal (flushed or kept); products near the under- and overflow exponents
    and with all-ones significands; every pair of special values."""
    rng = np.random.default_rng(seed)

    def u32(size: int, hi: int = 2**32) -> np.ndarray:
        return rng.integers(0, hi, size=size, dtype=np.uint64).astype(np.uint32)

    k = max(n // 8, 1)
    a, b = u32(8 * k), u32(8 * k)
    part = [slice(i * k, (i + 1) * k) for i in range(8)]
    # 1: uniform (as drawn). 2: cancellation: -a with a few low bits changed, or a neighbour.
    s = part[1]
    low = np.where(rng.random(k) < 0.2, 0, u32(k, 2**8)).astype(np.uint32)
    b[s] = (a[s] ^ 0x80000000) ^ low ^ (u32(k, 2) << 23)
    # 3: every alignment distance 0..31, significands of 12 random top bits (exact ties).
    s = part[2]
    short = np.uint32(0xFFFFF800)
    ea = rng.integers(40, 215, size=k).astype(np.uint32)
    eb = ea - rng.integers(0, 32, size=k).astype(np.uint32)
    a[s] = (a[s] & 0x80000000) | (ea << 23) | (a[s] & 0x007FFFFF & short)
    b[s] = (b[s] & 0x80000000) | (eb << 23) | (b[s] & 0x007FFFFF & short)
    # 4: near the largest normal, same signs: the sum rounds to infinity or stays finite.
    s = part[3]
    a[s] = (a[s] & 0x80000000) | 0x7F000000 | (0x007F0000 | u32(k, 2**16))
    eb = 254 - rng.integers(0, 26, size=k).astype(np.uint32)
    b[s] = (a[s] & 0x80000000) | (eb << 23) | (u32(k, 2**23) & short)
    # 5: differences at the smallest normal: exponents 1..3, opposite signs.
    s = part[4]
    a[s] = (a[s] & 0x807FFFFF) | (rng.integers(1, 4, size=k).astype(np.uint32) << 23)
    b[s] = (a[s] ^ 0x80000000) ^ u32(k, 2**24)
    b[s] = np.where((b[s] & 0x7F800000) == 0, b[s] | 0x00800000, b[s])
    # 6: products near the flush (exponent sum 125..127) and overflow (380, 381) edges.
    s = part[5]
    ea = rng.integers(1, 255, size=k).astype(np.uint32)
    target = rng.choice(np.array([125, 126, 127, 128, 380, 381]), size=k)
    eb = np.clip(target - ea, 1, 254).astype(np.uint32)
    a[s] = (a[s] & 0x807FFFFF) | (ea << 23)
    b[s] = (b[s] & 0x807FFFFF) | (eb << 23)
    # 7: all-ones significands (rounding carries into the exponent), short ones (product ties).
    s = part[6]
    a[s] |= np.where(rng.random(k) < 0.5, 0x007FFFFF, 0).astype(np.uint32)
    b[s] = np.where(rng.random(k) < 0.5, b[s] | 0x007FF000, b[s] & 0xFFFFF800)
    a[s] = np.where(rng.random(k) < 0.5, a[s] & 0xFFFFE000, a[s])
    # 8: special values mixed in at random.
    s = part[7]
    a[s] = np.where(rng.random(k) < 0.5, rng.choice(SPECIAL, size=k), a[s])
    b[s] = np.where(rng.random(k) < 0.5, rng.choice(SPECIAL, size=k), b[s])
    sa, sb = np.meshgrid(SPECIAL, SPECIAL)
    a, b = np.concatenate([sa.ravel(), a])[:n], np.concatenate([sb.ravel(), b])[:n]
    order = rng.permutation(len(a))
    return a[order], b[order]


_CDEF = "void run(const uint32_t *a, const uint32_t *b, int64_t n, int64_t cycles, uint32_t *out);"


def _harness() -> str:
    reads = " ".join(f"out[c * {len(OUTS)} + {i}] = t.{o};" for i, o in enumerate(OUTS))
    return f"""
#include "Vpipes.h"
#include "verilated.h"
#include <stdint.h>
extern "C" void run(const uint32_t *a, const uint32_t *b, int64_t n, int64_t cycles,
                    uint32_t *out) {{
  VerilatedContext ctx; Vpipes t(&ctx);
  t.sys_rst = 0; t.sys_clk = 0;
  for (int64_t c = 0; c < cycles; c++) {{
    /* after the last pair, inputs keep changing: the pipeline must not care */
    t.a = c < n ? a[c] : 0x9E3779B9u * (uint32_t)c;
    t.b = c < n ? b[c] : 0x7F4A7C15u * (uint32_t)c;
    t.eval();
    {reads}  /* this cycle's register outputs (and the references, combinational) */
    t.sys_clk = 1; t.eval(); t.sys_clk = 0;
  }}
  t.final();
}}
"""


class References(Module):
    """``fp32.fp_add`` and ``fp32.fp_mul`` of ``a``, ``b`` (in a module of their own: Migen
    names their unnamed signals after the enclosing module, whatever the caller)."""

    def __init__(self, a: Signal, b: Signal) -> None:
        self.add, self.mul = fp32.fp_add(self, a, b), fp32.fp_mul(self, a, b)


def pipes_verilog() -> str:
    """All three units and the combinational references on the same operands."""
    m = Module()
    a, b = Signal(32, name="a"), Signal(32, name="b")
    outs = {name: Signal(32, name=name) for name in OUTS}
    for name, cls in UNITS.items():
        unit = cls()
        setattr(m.submodules, name, unit)
        m.comb += [unit.a.eq(a), unit.b.eq(b), outs[name].eq(unit.r)]
    m.submodules.ref = ref = References(a, b)
    m.comb += [outs["ref_add"].eq(ref.add), outs["ref_mul"].eq(ref.mul)]
    return str(convert(m, ios={a, b, *outs.values()}, name="pipes"))


@pytest.fixture(scope="module")
def sim():
    from fiberflow.overlay.sim.verilator_build import build, ffi_of

    lib = build(
        name="pipe_arith",
        verilog={"pipes.v": pipes_verilog()},
        top="pipes",
        harness=_harness(),
        cdef=_CDEF,
        flags=("-Wno-fatal", "-Wno-lint", "-Wno-style"),
    )
    return lib, ffi_of(lib)


def run(sim, a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Each output's value in every cycle; pair ``i`` is presented in cycle ``i``."""
    lib, ffi = sim
    cycles = len(a) + max(cls.latency for cls in UNITS.values()) + 2
    out = np.zeros(cycles * len(OUTS), np.uint32)
    lib.run(
        ffi.from_buffer("uint32_t[]", a),
        ffi.from_buffer("uint32_t[]", b),
        len(a),
        cycles,
        ffi.from_buffer("uint32_t[]", out),
    )
    trace = out.reshape(cycles, len(OUTS))
    return {name: trace[:, i] for i, name in enumerate(OUTS)}


def expected(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    imul = (a.astype(np.uint64) * b.astype(np.uint64)) & 0xFFFFFFFF
    return {
        "add": fp32.model_add(a, b),
        "mul": fp32.model_mul(a, b),
        "imul": imul.astype(np.uint32),
    }


def mismatches(sim, a: np.ndarray, b: np.ndarray) -> dict[str, list[str]]:
    """For each unit, the first few pairs whose result (in cycle ``i + latency``) differs from
    the model or, for the fp units, from the combinational reference in cycle ``i``."""
    trace = run(sim, a, b)
    want = expected(a, b)
    n = len(a)
    bad: dict[str, list[str]] = {}
    for name, cls in UNITS.items():
        got = trace[name][cls.latency : cls.latency + n]
        wrong = got != want[name]
        if name != "imul":
            wrong |= got != trace[f"ref_{name}"][:n]
        bad[name] = [
            f"{a[i]:08x} {b[i]:08x}: got {got[i]:08x}, model {want[name][i]:08x}"
            for i in np.flatnonzero(wrong)[:5]
        ]
    return bad


def test_units_match_models_back_to_back(sim) -> None:
    a, b = operands(200_000, seed=1)
    assert mismatches(sim, a, b) == {name: [] for name in UNITS}


def test_references_agree_with_the_models(sim) -> None:
    """The combinational references and the numpy models agree on the same vectors, so the
    check above ties each unit to both."""
    a, b = operands(5_000, seed=2)
    trace, want = run(sim, a, b), expected(a, b)
    for name in ("add", "mul"):
        assert np.array_equal(trace[f"ref_{name}"][: len(a)], want[name]), name


def test_a_wrong_latency_is_caught(sim) -> None:
    """Results read one cycle early or late do not match: the vectors change every cycle."""
    a, b = operands(20_000, seed=3)
    trace, want = run(sim, a, b), expected(a, b)
    for name, cls in UNITS.items():
        for lat in (cls.latency - 1, cls.latency + 1):
            got = trace[name][lat : lat + len(a)]
            assert np.mean(got == want[name]) < 0.2, (name, lat)


@pytest.mark.parametrize("name", UNITS)
def test_units_in_migen_simulation(name: str) -> None:
    """Migen's own simulator (the lane's unit tests use it) gives the same results, a pair
    every cycle: a value the test bench writes is applied at the next clock edge, as from a
    register, so pair ``i``'s result is read ``latency`` cycles after that."""
    from migen.sim import run_simulation

    cls = UNITS[name]
    a, b = operands(300, seed=4)
    unit, got = cls(), []

    def bench():
        for i in range(len(a) + cls.latency):
            if i < len(a):
                yield unit.a.eq(int(a[i]))
                yield unit.b.eq(int(b[i]))
            yield
            got.append((yield unit.r))

    run_simulation(unit, bench())
    r = np.array(got[cls.latency :], dtype=np.uint32)
    assert np.array_equal(r, expected(a, b)[name])


def test_operands_cover_the_edges() -> None:
    """The vector set reaches what it claims: sums and products that round to overflow or are
    flushed, sums in the smallest binade, products that round up to it, exact cancellation,
    exact ties to even."""
    a, b = operands(200_000, seed=1)
    fa, fb = fp32.daz(a).view(np.float32), fp32.daz(b).view(np.float32)
    finite = np.isfinite(fa) & np.isfinite(fb) & (fa != 0) & (fb != 0)
    a, b, fa, fb = a[finite], b[finite], fa[finite], fb[finite]
    add, mul = fp32.model_add(a, b), fp32.model_mul(a, b)
    with np.errstate(over="ignore", under="ignore"):
        s, p = fa + fb, fa * fb
    assert np.sum(np.isinf(s)) > 50 and np.sum(np.isinf(p)) > 50  # overflow
    assert np.sum((s != 0) & (add & 0x7FFFFFFF == 0)) > 50  # sums flushed
    assert np.sum(add >> 23 & 0xFF == 1) > 50  # sums in the smallest binade
    assert np.sum(fa == -fb) > 50  # exact cancellation
    assert np.sum(mul & 0x7FFFFFFF == 0) > 50  # products flushed
    exact = np.abs(fa.astype(np.float64) * fb)
    # products below the smallest normal that round up to it (the top 24 bits all ones)
    assert np.sum((mul & 0x7FFFFFFF == 0x00800000) & (exact < 2.0**-126)) > 5
    # Ties: the exact sum or product (float64 holds both exactly) lies half way between two
    # floats; the float32 result is the even one of the two.
    for exact, rounded in ((fa.astype(np.float64) + fb, s), (fa.astype(np.float64) * fb, p)):
        ok = np.isfinite(rounded) & (np.abs(rounded) >= np.finfo(np.float32).tiny)
        ex, r = exact[ok], rounded[ok].astype(np.float64)
        with np.errstate(over="ignore"):  # the spacing above the largest float is inf
            ulp = np.spacing(np.abs(rounded[ok])).astype(np.float64)
        tie = np.abs(ex - r) == ulp / 2
        assert np.sum(tie) > 50


def unit_verilog(cls: type, registered_inputs: bool = False) -> str:
    """One unit as module ``u``; with ``registered_inputs``, ``a`` and ``b`` come from
    registers of the wrapper, as a user feeds them."""
    unit = cls()
    if not registered_inputs:
        return str(convert(unit, ios={unit.a, unit.b, unit.r}, name="u"))
    m = Module()
    m.submodules.unit = unit
    a, b, r = Signal(32, name="a_in"), Signal(32, name="b_in"), Signal(32, name="r_out")
    ra, rb = Signal(32, name="a_reg"), Signal(32, name="b_reg")
    m.sync += [ra.eq(a), rb.eq(b)]
    m.comb += [unit.a.eq(ra), unit.b.eq(rb), r.eq(unit.r)]
    return str(convert(m, ios={a, b, r}, name="u"))


@pytest.mark.parametrize("name", UNITS)
def test_units_lint_clean(name: str) -> None:
    """verilator -Wall finds nothing beyond the project's waivers (overlay/sim/lint.py)."""
    from fiberflow.overlay.sim.lint import WAIVERS
    from fiberflow.overlay.sim.verilator_build import lint

    warnings = lint({"u.v": unit_verilog(UNITS[name])}, "u")
    assert [w for w in warnings if not any(v.covers(w) for v in WAIVERS)] == []


# DSP48E1 slices yosys uses for each unit's multiplier: a 24x24 product is two 25x18 slices, the
# low half of a 32x32 one three; the adder has none.
DSPS = {"add": 0, "mul": 2, "imul": 3}


@pytest.mark.slow
@pytest.mark.parametrize("name", UNITS)
def test_units_fit_eight_lut_levels(name: str) -> None:
    """Behind registered inputs, each unit's longest register-to-register path in the xc7
    mapping is at most 8 LUT/MUXF levels, and the multipliers are DSP48E1 slices (two yosys
    runs, about 15 s per unit)."""
    from fiberflow.boards import estimate, timing

    files = {"u.v": unit_verilog(UNITS[name], registered_inputs=True)}
    d = timing.logic_depth(files, "u")
    assert d.lut_levels <= 8 and d.loops == 0, d.summary()
    stat, _ = estimate.synth_stat(files, "u", "xc7")
    cells = stat["modules"]["\\u"]["num_cells_by_type"]
    assert cells.get("DSP48E1", 0) == DSPS[name], cells
