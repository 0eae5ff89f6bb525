"""Pipelined fp32 add, fp32 multiply and int32 multiply for the lane's fixed-latency back end.

Each unit is a Migen ``Module`` with inputs ``a``, ``b`` (``Signal(32)``), a registered output
``r`` and an int ``latency``: operands presented in cycle ``t`` give ``r`` in cycle
``t + latency``. The units advance every cycle (no enable, no stall) and hold no state besides
the operands in flight, so back-to-back operands are independent; their registers have no reset
(they only carry data, and resetting wide pipelines costs routing for nothing).

The results are bit-identical to the combinational references in :mod:`fiberflow.overlay.lanes.fp32`
(``fp_add``, ``fp_mul``: flush-to-zero, denormals-are-zero, canonical NaN, round to nearest
even) and to ``(a * b) & 0xFFFFFFFF`` for the integer multiply. What changes is the split
into stages, chosen so that no register-to-register path is deeper than 8 LUT/MUXF levels of a
Xilinx 7-series mapping (``boards.timing.logic_depth``), with at most one carry chain in series
per stage: the single-cycle ``fp_add`` is 34 levels deep, the shell's critical path.

The first stage of every unit reads ``a`` and ``b`` directly (not a bare input register,
which would cost a cycle of latency), with little logic: two LUT levels in the fp32 units (the
adder's swap is one LUT into a 31-bit carry chain and one mux; the multiplier's operand class
tests read at most 23 bits), none in the integer multiply. So an operand mux of up to 6 levels
may sit in front of a unit. yosys measures such short paths longer when they have slack (its
mapper trades their depth for area), so the figure to check is the user's whole design.

Measured with ``boards.timing.logic_depth`` on each unit behind registered inputs
(``tests/test_pipe_arith.py``, marked slow): ``PipeFpAdd`` (latency 4) 7 LUT levels,
``PipeFpMul`` (latency 4) 6 and two DSP48E1, ``PipeIntMul`` (latency 3) none and three DSP48E1.
"""

from __future__ import annotations

from functools import reduce
from operator import or_

from migen import Cat, If, Module, Mux, Replicate, Signal
from migen.fhdl.structure import _Value

from fiberflow.overlay.lanes.fp32 import QNAN

__all__ = ["PipeFpAdd", "PipeFpMul", "PipeIntMul"]


def _operands(m: Module) -> tuple[Signal, Signal]:
    """The unit's inputs ``a`` and ``b``, set on ``m`` and returned."""
    m.a, m.b = Signal(32, name="a"), Signal(32, name="b")
    return m.a, m.b


def _reg(m: Module, name: str, value: _Value | int, bits: int | tuple[int, bool]) -> Signal:
    """A pipeline register (no reset) loaded with ``value`` every cycle."""
    r = Signal(bits, name=name, reset_less=True)
    m.sync += r.eq(value)
    return r


def _inf(sign: _Value) -> _Value:
    return Cat(Replicate(0, 23), Replicate(1, 8), sign)


def _zero(sign: _Value) -> _Value:
    return Cat(Replicate(0, 31), sign)


def _lzc(m: Module, x: _Value, width: int) -> Signal:
    """Leading zeros of ``x[0:width]``, ``width - 1`` if ``x`` is zero (so it fits in
    ``log2(width)`` bits when ``width`` is a power of two)."""
    n = Signal(max=width, name="lzc")
    m.comb += n.eq(width - 1)
    for i in range(1, width):  # later statements win: the highest set bit decides
        m.comb += If(x[i], n.eq(width - 1 - i))
    return n


class PipeFpAdd(Module):
    """``r = a + b`` in fp32, bit-identical to ``fp32.fp_add``; latency 4.

    The arithmetic is ``fp_add``'s (larger magnitude ``x``, smaller ``y`` aligned to it with
    guard, round and sticky bits, a 28-bit add, normalise, round to nearest even), cut so that
    each stage holds at most one carry chain in series:

    1. From ``a``, ``b``: which magnitude is larger (a 31-bit compare, one carry chain), the
       swap into ``x``/``y`` and the matching exponent difference ``d`` (both differences
       are short chains beside the compare). Two LUT levels.
    2. Align ``y``: shift it right by ``d``; the sticky bit as "a one of ``y`` below the shift
       amount" (``y[j] & (d > j + 3)``, OR-ed), parallel to the shifter instead of after it;
       then the 28-bit add or subtract (one carry chain, subtraction as ``x + ~y + 1``
       through a carry-in bit). Beside it, the special cases (NaN, infinities, zeros, which
       ``fp_add`` decides before any arithmetic) become one flag and the result word they
       give, carried to the last stage.
    3. Normalise, coarse half: the number of leading zero bytes of the sum (three zero tests),
       the sum shifted left by them, and the leading zeros of the top byte of that (the fine
       count); a carry out of the sum instead shifts it right by one (count 0). The exponent
       base ``ex`` or ``ex + 1`` (on a carry out) is chosen here, and the exact-cancellation
       test.
    4. Normalise, fine half (a left shift by 0-7, one 8:1 mux level), the round-up bit, the
       24-bit increment (one carry chain); beside it the exponent ``e = base - count`` and
       ``e + 1`` (one chain each) with their overflow and flush-to-zero tests, of which the
       increment's carry into the hidden bit picks one; then the final choice between special
       result, exact-cancellation zero, infinity, flushed zero and the rounded number. ``r``
       is this stage's register.

    Splitting the leading-zero count at a byte boundary is what lets normalisation share
    stages: a whole count followed by a whole shift is about 5 + 3 LUT levels, the coarse
    count, shift and fine count about 6, and the fine shift leaves room for the rounding.
    """

    latency = 4

    def __init__(self) -> None:
        a, b = _operands(self)
        self.r = Signal(32, name="r", reset_less=True)

        # -- stage 1: compare and swap
        ea, eb = a[23:31], b[23:31]
        # b > a as the borrow of a - b: yosys maps a subtraction to one carry chain (1 LUT
        # level), where it splits a ">" over LUTs and a short chain (3 levels).
        swap, diff_unused = Signal(name="swap"), Signal(31, name="diff_unused")
        self.comb += Cat(diff_unused, swap).eq(a[0:31] - b[0:31])
        x1, y1 = _reg(self, "x1", Mux(swap, b, a), 32), _reg(self, "y1", Mux(swap, a, b), 32)
        dab, dba = Signal(8, name="dab"), Signal(8, name="dba")
        self.comb += [dab.eq(ea - eb), dba.eq(eb - ea)]
        d1 = _reg(self, "d1", Mux(swap, dba, dab), 8)

        # -- stage 2: align, sticky, add; special cases
        sx, ex, fx = x1[31], x1[23:31], x1[0:23]
        sy, ey, fy = y1[31], y1[23:31], y1[0:23]
        my = Cat(fy, 1)
        shifted = Signal(27, name="shifted")
        sticky = Signal(name="sticky")
        # my << 3 shifted right by d loses a one exactly when some my[j] sits below d - 3.
        self.comb += [
            shifted.eq(Cat(Replicate(0, 3), my) >> d1),
            sticky.eq(reduce(or_, [my[j] & (d1 > j + 3) for j in range(24)])),
        ]
        sub = sx ^ sy
        # x - y = x + ~y + 1: the extra low bit (1 + 1 on subtraction) is the carry-in, so the
        # add and the subtract are one carry chain. (Cat, not x << 3: inside a Verilog
        # concatenation a shift keeps its operand's width and would drop the top bits.)
        y_al = Cat(shifted[0] | sticky, shifted[1:27])
        s, carry_in_unused = Signal(28, name="s"), Signal(name="carry_in_unused")
        self.comb += Cat(carry_in_unused, s).eq(
            Cat(sub, Replicate(0, 3), fx, 1) + Cat(sub, y_al ^ Replicate(sub, 27), sub)
        )
        s2 = _reg(self, "s2", s, 28)
        # The special cases with x the larger magnitude: an infinity or NaN operand is x
        # (unless both are), and a zero x means both are zeros.
        x_emax, y_emax, x_ez, y_ez = ex == 255, ey == 255, ex == 0, ey == 0
        x_nan, y_nan = x_emax & (fx != 0), y_emax & (fy != 0)
        spec_r = Signal(32, name="spec_r")
        self.comb += (
            If(x_nan | y_nan | (x_emax & y_emax & (sx != sy)), spec_r.eq(QNAN))
            .Elif(x_emax, spec_r.eq(_inf(sx)))
            .Elif(x_ez, spec_r.eq(_zero(sx & sy)))
            .Else(spec_r.eq(x1))
        )
        spec2 = _reg(self, "spec2", x_emax | y_emax | x_ez | y_ez, 1)
        spec_r2 = _reg(self, "spec_r2", spec_r, 32)
        ex2, ex12, ex22 = (
            _reg(self, "ex2", ex, 9),
            _reg(self, "ex12", ex + 1, 9),
            _reg(self, "ex22", ex + 2, 9),
        )
        sx2 = _reg(self, "sx2", sx, 1)

        # -- stage 3: normalise by whole bytes, count the rest
        v, carry_out = s2[0:27], s2[27]
        z8, z16, z24 = v[19:27] == 0, v[11:27] == 0, v[3:27] == 0
        coarse = Signal(2, name="coarse")  # leading zero bytes of v (0 on a carry out)
        w = Signal(27, name="w")
        self.comb += [
            If(carry_out, coarse.eq(0), w.eq(Cat(s2[0] | s2[1], s2[2:28])))
            .Elif(z24, coarse.eq(3), w.eq(v << 24))
            .Elif(z16, coarse.eq(2), w.eq(v << 16))
            .Elif(z8, coarse.eq(1), w.eq(v << 8))
            .Else(coarse.eq(0), w.eq(v)),
        ]
        fine = _lzc(self, w[19:27], 8)  # 7 also when w's top byte is zero: then s2 is zero
        w3, coarse3 = _reg(self, "w3", w, 27), _reg(self, "coarse3", coarse, 2)
        fine3 = _reg(self, "fine3", Mux(carry_out, 0, fine), 3)
        s_zero3 = _reg(self, "s_zero3", s2 == 0, 1)
        base3 = _reg(self, "base3", Mux(carry_out, ex12, ex2), 9)
        base13 = _reg(self, "base13", Mux(carry_out, ex22, ex12), 9)
        sx3, spec3, spec_r3 = (
            _reg(self, "sx3", sx2, 1),
            _reg(self, "spec3", spec2, 1),
            _reg(self, "spec_r3", spec_r2, 32),
        )

        # -- stage 4: shift by the rest, round, exponent, result
        norm = Signal(26, name="norm")  # below the hidden one: fraction, guard, round, sticky
        self.comb += norm.eq((w3 << fine3)[0:26])
        up = norm[2] & (norm[1] | norm[0] | norm[3])
        mr = Signal(24, name="mr")  # bit 23 is the carry into the hidden one (1.11..1 + ulp)
        self.comb += mr.eq(norm[3:26] + up)
        # signed copies: the exponent may go below zero
        lz, base, base1 = (Signal((11, True), name=n) for n in ("lz", "base", "base1"))
        e, e1 = Signal((11, True), name="e"), Signal((11, True), name="e1")
        self.comb += [
            lz.eq(Cat(fine3, coarse3)),
            base.eq(base3),
            base1.eq(base13),
            e.eq(base - lz),
            e1.eq(base1 - lz),
        ]
        carry = mr[23]
        over = Mux(carry, e1 >= 255, e >= 255)
        under = Mux(carry, e1 <= 0, e <= 0)
        exp = Mux(carry, e1[0:8], e[0:8])
        self.sync += (
            If(spec3, self.r.eq(spec_r3))
            .Elif(s_zero3, self.r.eq(0))  # exact cancellation: +0 under round to nearest
            .Elif(over, self.r.eq(_inf(sx3)))
            .Elif(under, self.r.eq(_zero(sx3)))  # flush to zero
            .Else(self.r.eq(Cat(mr[0:23], exp, sx3)))
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
       result chosen by the precomputed tests (the overflow test's carry found beside the
       chain). ``r`` is this stage's register.
    """

    latency = 4

    def __init__(self) -> None:
        a, b = _operands(self)
        self.r = Signal(32, name="r", reset_less=True)

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
        spec_r = Signal(32, name="spec_r")
        self.comb += (
            If(a_nan | b_nan | (a_inf & b_ez1) | (a_ez1 & b_inf), spec_r.eq(QNAN))
            .Elif(a_inf | b_inf, spec_r.eq(_inf(sr1)))
            .Else(spec_r.eq(_zero(sr1)))
        )
        spec2 = _reg(self, "spec2", a_emax1 | b_emax1 | a_ez1 | b_ez1, 1)
        spec_r2 = _reg(self, "spec_r2", spec_r, 32)
        es = Signal((11, True), name="es")  # a signed copy: E may go below zero
        self.comb += es.eq(es1)
        e2 = _reg(self, "e2", es - 127, (11, True))
        sr2 = _reg(self, "sr2", sr1, 1)

        # -- stage 3: DSP P register; exponent candidates and their tests
        p3 = _reg(self, "p3", p2, 48)
        exp3 = [_reg(self, f"exp3_{k}", (e2 + k)[0:8], 8) for k in range(3)]
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
        mr = Signal(24, name="mr")  # as in fp_mul: bit 23 is the carry into the hidden one
        self.comb += mr.eq(frac + up)
        # The exponent is E + top + carry: the candidates E, E + 1, E + 2 of stage 3. The
        # overflow test, which picks the result, takes the carry from beside the increment's
        # carry chain (rounding up a fraction of all ones), not from its end; the exponent,
        # a data field like the fraction, may wait for the chain.
        carry = Signal(name="carry")
        frac_ones = Mux(top, p3[24:47] == 0x7FFFFF, p3[23:46] == 0x7FFFFF)
        self.comb += carry.eq(up & frac_ones)
        exp = Mux(top, Mux(mr[23], exp3[2], exp3[1]), Mux(mr[23], exp3[1], exp3[0]))
        over = Mux(top, Mux(carry, over3[2], over3[1]), Mux(carry, over3[1], over3[0]))
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
        a, b = _operands(self)
        a1, b1 = _reg(self, "a1", a, 32), _reg(self, "b1", b, 32)
        p2 = _reg(self, "p2", a1 * b1, 32)
        self.r = _reg(self, "r", p2, 32)
