"""Pipelined fp32 add, fp32 multiply and int32 multiply for the lane's fixed-latency back end.

Each unit is a Migen ``Module`` with inputs ``a``, ``b`` (``Signal(32)``), a registered output
``r`` and an int ``latency``: operands presented in cycle ``t`` give ``r`` in cycle
``t + latency``. The units advance every cycle (no enable, no stall) and hold no state besides
the operands in flight, so back-to-back operands are independent; their registers have no reset
(they only carry data, and resetting wide pipelines costs routing for nothing).

The results are bit-identical to the combinational references in :mod:`fiberflow.overlay.fp32`
(``fp_add``, ``fp_mul``: flush-to-zero, denormals-are-zero, canonical NaN, round to nearest
even) and to ``(a * b) & 0xFFFFFFFF`` for the integer multiply. What changes is the split
into stages, chosen so that no register-to-register path is deeper than 8 LUT/MUXF levels of a
Xilinx 7-series mapping (``boards.timing.logic_depth``), with at most one carry chain in series
per stage: the single-cycle ``fp_add`` is 34 levels deep, the shell's critical path.

The first stage of every unit reads ``a`` and ``b`` directly (it does not start with a bare
input register, which would cost a cycle of latency); it is kept to a few LUT levels so that
the user's own logic in front of the unit (an operand mux) still fits the budget.
:data:`FIRST_STAGE_LEVELS` records what it measures, and ``tests/test_pipe_arith.py`` checks
it.
"""

from __future__ import annotations

from migen import Cat, If, Module, Mux, Replicate, Signal
from migen.fhdl.structure import _Value

from fiberflow.overlay.fp32 import QNAN

__all__ = ["PipeFpAdd", "PipeFpMul", "PipeIntMul"]


def _reg(m: Module, name: str, value: _Value | int, bits: int | tuple[int, bool]) -> Signal:
    """A pipeline register (no reset) loaded with ``value`` every cycle."""
    r = Signal(bits, name=name, reset_less=True)
    m.sync += r.eq(value)
    return r


def _inf(sign: _Value) -> _Value:
    return Cat(Replicate(0, 23), Replicate(1, 8), sign)


def _zero(sign: _Value) -> _Value:
    return Cat(Replicate(0, 31), sign)


def _any(terms: list[_Value]) -> _Value:
    out = terms[0]
    for t in terms[1:]:
        out = out | t
    return out


def _lzc(m: Module, x: Signal, width: int) -> Signal:
    """Leading zeros of ``x[0:width]`` (``width`` if ``x`` is zero), as ``fp32._lzc``."""
    n = Signal(max=width + 1)
    m.comb += n.eq(width)
    for i in range(width):  # later statements win: the highest set bit decides
        m.comb += If(x[i], n.eq(width - 1 - i))
    return n


class PipeFpAdd(Module):
    """``r = a + b`` in fp32, bit-identical to ``fp32.fp_add``; latency 5.

    The arithmetic is ``fp_add``'s (larger magnitude ``x``, smaller ``y`` aligned to it with
    guard, round and sticky bits, a 28-bit add, normalise, round to nearest even), cut so that
    each stage holds at most one carry chain and one shifter:

    1. From ``a``, ``b``: which magnitude is larger (a 31-bit compare, one carry chain), both
       exponent differences (short chains beside it), and per operand "exponent all ones",
       "exponent zero", "fraction non-zero" (two LUT levels).
    2. Swap into ``x``/``y``; shift ``y`` right by the exponent difference; the sticky bit as
       "a one of ``y`` below the shift amount" (``y[j] & (d > j + 3)``, OR-ed), which is
       parallel to the shifter instead of after it. The special cases (NaN, infinities,
       zeros, which ``fp_add`` decides before any arithmetic) become one flag and the result
       word they give, carried along to the last stage.
    3. The 28-bit add or subtract (one carry chain, subtraction as ``x + ~y + 1`` through a
       carry-in bit), then the leading-zero count of the sum and its zero test. ``ex + 1``
       and ``ex + 2`` for stage 4 are computed beside it.
    4. Normalise: the sum shifted left by the leading-zero count (or right by one on a carry
       out), the exponent ``e`` and ``e + 1`` (each one subtraction of the count), and the
       round-up bit.
    5. Round (the 24-bit increment, one carry chain); its carry into the hidden bit picks
       ``e + 1`` over ``e``, and with it the overflow and flush-to-zero tests precomputed for
       both; then the final choice between special result, exact-cancellation zero,
       infinity, flushed zero and the rounded number. ``r`` is this stage's register.

    Stages 1 and 2 are short; the leading-zero count cannot share a stage with the shifter
    it drives (about 5 + 3 levels), nor the add with the shifter that feeds it, which is what
    sets five stages.
    """

    latency = 5

    def __init__(self) -> None:
        self.a = a = Signal(32, name="a")
        self.b = b = Signal(32, name="b")
        self.r = Signal(32, reset_less=True)

        # -- stage 1: compare, exponent differences, operand classes
        ea, eb = a[23:31], b[23:31]
        a1, b1 = _reg(self, "a1", a, 32), _reg(self, "b1", b, 32)
        swap1 = _reg(self, "swap1", b[0:31] > a[0:31], 1)
        dab1, dba1 = _reg(self, "dab1", ea - eb, 8), _reg(self, "dba1", eb - ea, 8)
        a_emax1, b_emax1 = _reg(self, "a_emax1", ea == 255, 1), _reg(self, "b_emax1", eb == 255, 1)
        a_ez1, b_ez1 = _reg(self, "a_ez1", ea == 0, 1), _reg(self, "b_ez1", eb == 0, 1)
        a_fnz1, b_fnz1 = (
            _reg(self, "a_fnz1", a[0:23] != 0, 1),
            _reg(self, "b_fnz1", b[0:23] != 0, 1),
        )

        # -- stage 2: swap, align, sticky; special cases
        sa, sb = a1[31], b1[31]
        sx, ex, mx = Signal(name="sx"), Signal(8, name="ex"), Signal(24, name="mx")
        sy, my, d = Signal(name="sy"), Signal(24, name="my"), Signal(8, name="d")
        self.comb += [
            sx.eq(Mux(swap1, sb, sa)),
            ex.eq(Mux(swap1, b1[23:31], a1[23:31])),
            mx.eq(Cat(Mux(swap1, b1[0:23], a1[0:23]), 1)),
            sy.eq(Mux(swap1, sa, sb)),
            my.eq(Cat(Mux(swap1, a1[0:23], b1[0:23]), 1)),
            d.eq(Mux(swap1, dba1, dab1)),
        ]
        shifted = Signal(27)
        sticky = Signal()
        # my << 3 shifted right by d loses a one exactly when some my[j] sits below d - 3.
        lost = [my[j] & (d > j + 3) for j in range(24)]
        self.comb += [
            shifted.eq(Cat(Replicate(0, 3), my) >> d),
            sticky.eq(_any(lost)),
        ]
        a_nan, b_nan = a_emax1 & a_fnz1, b_emax1 & b_fnz1
        a_inf, b_inf = a_emax1 & ~a_fnz1, b_emax1 & ~b_fnz1
        spec, spec_r = Signal(name="spec"), Signal(32, name="spec_r")
        self.comb += [
            spec.eq(a_emax1 | b_emax1 | a_ez1 | b_ez1),
            If(a_nan | b_nan | (a_inf & b_inf & (sa != sb)), spec_r.eq(QNAN))
            .Elif(a_inf, spec_r.eq(_inf(sa)))
            .Elif(b_inf, spec_r.eq(_inf(sb)))
            .Elif(a_ez1 & b_ez1, spec_r.eq(_zero(sa & sb)))
            .Elif(a_ez1, spec_r.eq(b1))
            .Else(spec_r.eq(a1)),
        ]
        sx2, ex2, mx2 = (
            _reg(self, "sx2", sx, 1),
            _reg(self, "ex2", ex, 8),
            _reg(self, "mx2", mx, 24),
        )
        y2 = _reg(self, "y2", Cat(shifted[0] | sticky, shifted[1:27]), 27)
        sub2 = _reg(self, "sub2", sx ^ sy, 1)
        spec2, spec_r2 = _reg(self, "spec2", spec, 1), _reg(self, "spec_r2", spec_r, 32)

        # -- stage 3: add, leading zeros
        # x - y = x + ~y + 1: the extra low bit (1 + 1 on subtraction) is the carry-in, so the
        # add and the subtract are one carry chain. (Cat, not x << 3: inside a Verilog
        # concatenation a shift keeps its operand's width and would drop the top bits.)
        ext = Signal(29)
        self.comb += ext.eq(
            Cat(sub2, Replicate(0, 3), mx2) + Cat(sub2, y2 ^ Replicate(sub2, 27), sub2)
        )
        s = ext[1:29]
        lz = _lzc(self, s, 27)
        s3, lz3 = _reg(self, "s3", s, 28), _reg(self, "lz3", lz, 5)
        s_zero3 = _reg(self, "s_zero3", s == 0, 1)
        ex3, ex13, ex23 = (
            _reg(self, "ex3", ex2, 8),
            _reg(self, "ex13", ex2 + 1, 9),
            _reg(self, "ex23", ex2 + 2, 9),
        )
        sx3, spec3, spec_r3 = (
            _reg(self, "sx3", sx2, 1),
            _reg(self, "spec3", spec2, 1),
            _reg(self, "spec_r3", spec_r2, 32),
        )

        # -- stage 4: normalise
        norm = Signal(26)  # below the hidden one: 23 fraction bits, guard, round, sticky
        e, e1 = Signal((11, True), name="e"), Signal((11, True), name="e1")
        # signed copies: e may go below zero
        exs, ex1s = Signal((11, True), name="exs"), Signal((11, True), name="ex1s")
        lzs = Signal((11, True), name="lzs")
        self.comb += [exs.eq(ex3), ex1s.eq(ex13), lzs.eq(lz3)]
        self.comb += If(
            s3[27],
            norm.eq(Cat(s3[0] | s3[1], s3[2:27])),
            e.eq(ex13),
            e1.eq(ex23),
        ).Else(
            norm.eq((s3 << lz3)[0:26]),
            e.eq(exs - lzs),
            e1.eq(ex1s - lzs),
        )
        up = norm[2] & (norm[1] | norm[0] | norm[3])
        frac4, up4 = _reg(self, "frac4", norm[3:26], 23), _reg(self, "up4", up, 1)
        e4, e14 = _reg(self, "e4", e, (11, True)), _reg(self, "e14", e1, (11, True))
        s_zero4, sx4 = _reg(self, "s_zero4", s_zero3, 1), _reg(self, "sx4", sx3, 1)
        spec4, spec_r4 = _reg(self, "spec4", spec3, 1), _reg(self, "spec_r4", spec_r3, 32)

        # -- stage 5: round, exponent, result
        mr = Signal(24)  # bit 23 is the carry into the hidden one (1.11..1 + ulp = 10.0)
        self.comb += mr.eq(frac4 + up4)
        carry = mr[23]
        over = Mux(carry, e14 >= 255, e4 >= 255)
        under = Mux(carry, e14 <= 0, e4 <= 0)
        exp = Mux(carry, e14[0:8], e4[0:8])
        self.sync += (
            If(spec4, self.r.eq(spec_r4))
            .Elif(s_zero4, self.r.eq(0))  # exact cancellation: +0 under round to nearest
            .Elif(over, self.r.eq(_inf(sx4)))
            .Elif(under, self.r.eq(_zero(sx4)))  # flush to zero
            .Else(self.r.eq(Cat(mr[0:23], exp, sx4)))
        )


class PipeFpMul(Module):
    """``r = a * b`` in fp32, bit-identical to ``fp32.fp_mul``; latency 4.

    The 24x24 significand product is written the way DSP inference wants it (operand
    registers, ``*``, a register, a register), so yosys ``synth_xilinx`` and Vivado put the
    multiplier with its A/B, M and P registers into DSP48 slices; the exponent and the special
    cases travel beside it in fabric registers:

    1. Operand registers: the significands with their hidden ones; the sign, the exponent sum
       and per operand "exponent all ones", "exponent zero", "fraction non-zero".
    2. The product into the M register. Beside it: the special cases (NaN, infinities, zeros)
       as one flag and the result word they give, and ``E = ea + eb - 127``.
    3. The P register. Beside it, for each of ``E``, ``E + 1``, ``E + 2`` (the exponent for
       a product below 2 or at least 2, before and after a rounding carry), its low 8 bits and
       the overflow test, and the zero and below-zero tests that decide flushing.
    4. Normalise and round in one stage: pick the 23 fraction bits, the round, sticky and
       lowest bits by the product's top bit (two versions of each, side by side, so the pick
       is one mux), the round-up bit, the 24-bit increment (one carry chain), and the
       result chosen by the precomputed tests. ``r`` is this stage's register.
    """

    latency = 4

    def __init__(self) -> None:
        self.a = a = Signal(32, name="a")
        self.b = b = Signal(32, name="b")
        self.r = Signal(32, reset_less=True)

        # -- stage 1: operand registers
        ea, eb = a[23:31], b[23:31]
        ma1, mb1 = _reg(self, "ma1", Cat(a[0:23], 1), 24), _reg(self, "mb1", Cat(b[0:23], 1), 24)
        sr1 = _reg(self, "sr1", a[31] ^ b[31], 1)
        es1 = _reg(self, "es1", ea + eb, 9)
        a_emax1, b_emax1 = _reg(self, "a_emax1", ea == 255, 1), _reg(self, "b_emax1", eb == 255, 1)
        a_ez1, b_ez1 = _reg(self, "a_ez1", ea == 0, 1), _reg(self, "b_ez1", eb == 0, 1)
        a_fnz1, b_fnz1 = (
            _reg(self, "a_fnz1", a[0:23] != 0, 1),
            _reg(self, "b_fnz1", b[0:23] != 0, 1),
        )

        # -- stage 2: the product (DSP M register); special cases; exponent
        p2 = _reg(self, "p2", ma1 * mb1, 48)
        a_nan, b_nan = a_emax1 & a_fnz1, b_emax1 & b_fnz1
        a_inf, b_inf = a_emax1 & ~a_fnz1, b_emax1 & ~b_fnz1
        spec_r = Signal(32)
        self.comb += (
            If(a_nan | b_nan | (a_inf & b_ez1) | (a_ez1 & b_inf), spec_r.eq(QNAN))
            .Elif(a_inf | b_inf, spec_r.eq(_inf(sr1)))
            .Else(spec_r.eq(_zero(sr1)))
        )
        spec2 = _reg(self, "spec2", a_emax1 | b_emax1 | a_ez1 | b_ez1, 1)
        spec_r2 = _reg(self, "spec_r2", spec_r, 32)
        es = Signal((11, True))  # a signed copy: E may go below zero
        self.comb += es.eq(es1)
        e2 = _reg(self, "e2", es - 127, (11, True))
        sr2 = _reg(self, "sr2", sr1, 1)

        # -- stage 3: DSP P register; exponent candidates and their tests
        p3 = _reg(self, "p3", p2, 48)
        exp3 = [_reg(self, f"exp3_{k}", e2 + k, 8) for k in range(3)]
        over3 = [_reg(self, f"over3_{k}", e2 >= 255 - k, 1) for k in range(3)]
        zero3 = [_reg(self, f"zero3_{k}", e2 == -k, 1) for k in range(2)]
        low3 = [_reg(self, f"low3_{k}", e2 <= -k, 1) for k in range(2)]
        sr3, spec3, spec_r3 = (
            _reg(self, "sr3", sr2, 1),
            _reg(self, "spec3", spec2, 1),
            _reg(self, "spec_r3", spec_r2, 32),
        )

        # -- stage 4: normalise, round, result
        top = p3[47]  # product in [2, 4): exponent one higher, fraction one bit further up
        frac = Mux(top, p3[24:47], p3[23:46])
        guard = Mux(top, p3[23], p3[22])
        lsb = Mux(top, p3[24], p3[23])
        sticky = Mux(top, p3[0:23] != 0, p3[0:22] != 0)
        top_ones = Mux(top, p3[24:48] == 0xFFFFFF, p3[23:47] == 0xFFFFFF)
        up = guard & (sticky | lsb)
        mr = Signal(24)  # as in fp_mul: bit 23 is the carry into the hidden one
        self.comb += mr.eq(frac + up)
        # The exponent is E + top + carry: the candidates E, E + 1, E + 2 of stage 3.
        exp = Mux(top, Mux(mr[23], exp3[2], exp3[1]), Mux(mr[23], exp3[1], exp3[0]))
        over = Mux(top, Mux(mr[23], over3[2], over3[1]), Mux(mr[23], over3[1], over3[0]))
        e0_zero, e0_low = Mux(top, zero3[1], zero3[0]), Mux(top, low3[1], low3[0])
        self.sync += (
            If(spec3, self.r.eq(spec_r3))
            # Gradual underflow would round values in [2^-127, 2^-126) up to the smallest
            # normal exactly when the top 24 product bits are all ones; the rest is flushed.
            .Elif(e0_zero & top_ones, self.r.eq(Cat(Replicate(0, 23), 1, Replicate(0, 7), sr3)))
            .Elif(e0_low, self.r.eq(_zero(sr3)))
            .Elif(over, self.r.eq(_inf(sr3)))
            .Else(self.r.eq(Cat(mr[0:23], exp, sr3)))
        )


class PipeIntMul(Module):
    """``r = (a * b) & 0xFFFFFFFF`` (two's complement wrap); latency 3.

    1. Operand registers (DSP A/B registers).
    2. The low 32 bits of the product (DSP M register).
    3. ``r`` (DSP P register).
    """

    latency = 3

    def __init__(self) -> None:
        self.a = a = Signal(32, name="a")
        self.b = b = Signal(32, name="b")
        a1, b1 = _reg(self, "a1", a, 32), _reg(self, "b1", b, 32)
        p2 = _reg(self, "p2", a1 * b1, 32)
        self.r = _reg(self, "r", p2, 32)
