"""IEEE 754 binary32 add and multiply as combinational Migen logic, and their numpy model.

Policy (the same in hardware and model, see ``docs/primitives.md``):

* Rounding: round to nearest, ties to even.
* Subnormals: flushed to zero. A subnormal input is read as a zero of the same sign
  (denormals-are-zero), and a result that IEEE arithmetic would return as a subnormal is
  returned as a zero of the same sign (flush-to-zero). A result that IEEE gradual underflow
  rounds *up* to the smallest normal stays that normal. So the hardware result is exactly
  ``ftz(numpy_float32_op(daz(a), daz(b)))``.
* NaN: any NaN result is the canonical quiet NaN ``0x7FC00000`` (payloads are not propagated).
* min/max: NaN if either input is NaN; ``-0 < +0``; subnormals read as signed zeros.

Why our own: LiteX and Migen have no floating point cores, and the fused structure here (one
shared unpack, explicit flush rules) keeps the block small and matches the model bit for bit.
"""

from __future__ import annotations

import numpy as np
from migen import Cat, If, Module, Mux, Replicate, Signal

QNAN = 0x7FC00000


def _lzc(m: Module, x: Signal, width: int) -> Signal:
    """Leading zeros of ``x[0:width]`` (``width`` if ``x`` is zero)."""
    n = Signal(max=width + 1)
    m.comb += n.eq(width)
    for i in range(width):  # later statements win: the highest set bit decides
        m.comb += If(x[i], n.eq(width - 1 - i))
    return n


def fp_add(m: Module, a: Signal, b: Signal, negate_b: Signal | int = 0) -> Signal:
    """``a + b`` (or ``a - b`` when ``negate_b``) under the policy above; combinational."""
    r = Signal(32)
    sa, ea, fa = a[31], a[23:31], a[0:23]
    sb = Signal()
    eb, fb = b[23:31], b[0:23]
    m.comb += sb.eq(b[31] ^ negate_b)
    a_nan, b_nan = (ea == 255) & (fa != 0), (eb == 255) & (fb != 0)
    a_inf, b_inf = (ea == 255) & (fa == 0), (eb == 255) & (fb == 0)
    a_zero, b_zero = ea == 0, eb == 0

    # Larger magnitude first (x), smaller (y) aligned to it.
    swap = Signal()
    m.comb += swap.eq(b[0:31] > a[0:31])
    sx, ex, mx = Signal(), Signal(8), Signal(24)
    sy, ey, my = Signal(), Signal(8), Signal(24)
    m.comb += [
        sx.eq(Mux(swap, sb, sa)),
        ex.eq(Mux(swap, eb, ea)),
        mx.eq(Cat(Mux(swap, fb, fa), 1)),
        sy.eq(Mux(swap, sa, sb)),
        ey.eq(Mux(swap, ea, eb)),
        my.eq(Cat(Mux(swap, fa, fb), 1)),
    ]
    d = Signal(8)
    my3 = Signal(27)  # mantissa with guard, round and sticky positions
    shifted = Signal(27)
    sticky = Signal()
    y_al = Signal(27)
    m.comb += [
        d.eq(ex - ey),
        my3.eq(my << 3),
        If(
            d >= 27,
            shifted.eq(0),
            sticky.eq(1),
        ).Else(
            shifted.eq(my3 >> d),
            sticky.eq((shifted << d)[0:27] != my3),
        ),
        y_al.eq(Cat(shifted[0] | sticky, shifted[1:27])),
    ]
    eff_sub = Signal()
    s = Signal(28)
    m.comb += [
        eff_sub.eq(sx ^ sy),
        If(eff_sub, s.eq((mx << 3) - y_al)).Else(s.eq((mx << 3) + y_al)),
    ]
    # Normalise: the hidden one at bit 26 of the 27-bit sum (dropped from `norm`).
    lz = _lzc(m, s, 27)
    norm = Signal(26)  # below the hidden one: 23 fraction bits, guard, round, sticky
    e = Signal((11, True))
    exs, lzs = Signal((11, True)), Signal((11, True))  # signed copies: e may go below zero
    m.comb += [exs.eq(ex), lzs.eq(lz)]
    m.comb += If(
        s[27],
        norm.eq(Cat(s[0] | s[1], s[2:27])),
        e.eq(exs + 1),
    ).Else(
        norm.eq((s << lz)[0:26]),
        e.eq(exs - lzs),
    )
    # Round: the 23 fraction bits plus the round-up bit; bit 23 of the sum is the carry into
    # the hidden one (1.11..1 + ulp = 10.0), which bumps the exponent and leaves fraction 0.
    up = norm[2] & (norm[1] | norm[0] | norm[3])
    mr = Signal(24)
    er = Signal((11, True))
    m.comb += [
        mr.eq(norm[3:26] + up),
        er.eq(e + mr[23]),
    ]
    frac = mr[0:23]

    m.comb += [
        If(
            a_nan | b_nan | (a_inf & b_inf & (sa != sb)),
            r.eq(QNAN),
        )
        .Elif(a_inf, r.eq(Cat(Replicate(0, 23), Replicate(1, 8), sa)))
        .Elif(b_inf, r.eq(Cat(Replicate(0, 23), Replicate(1, 8), sb)))
        .Elif(a_zero & b_zero, r.eq(Cat(Replicate(0, 31), sa & sb)))
        .Elif(a_zero, r.eq(Cat(fb, eb, sb)))
        .Elif(b_zero, r.eq(a))
        .Elif(s == 0, r.eq(0))  # exact cancellation: +0 under round to nearest
        .Elif(er >= 255, r.eq(Cat(Replicate(0, 23), Replicate(1, 8), sx)))
        .Elif(er <= 0, r.eq(Cat(Replicate(0, 31), sx)))  # flush to zero
        .Else(r.eq(Cat(frac, er[0:8], sx)))
    ]
    return r


def fp_mul(m: Module, a: Signal, b: Signal) -> Signal:
    """``a * b`` under the policy above; combinational (one 24x24 multiplier)."""
    r = Signal(32)
    sa, ea, fa = a[31], a[23:31], a[0:23]
    sb, eb, fb = b[31], b[23:31], b[0:23]
    sr = Signal()
    m.comb += sr.eq(sa ^ sb)
    a_nan, b_nan = (ea == 255) & (fa != 0), (eb == 255) & (fb != 0)
    a_inf, b_inf = (ea == 255) & (fa == 0), (eb == 255) & (fb == 0)
    a_zero, b_zero = ea == 0, eb == 0

    p = Signal(48)
    n = Signal(48)  # p normalised: bit 47 set
    e0 = Signal((11, True))
    eas, ebs = Signal((11, True)), Signal((11, True))  # signed copies: e0 may go below zero
    m.comb += [
        eas.eq(ea),
        ebs.eq(eb),
        p.eq(Cat(fa, 1) * Cat(fb, 1)),
        If(p[47], n.eq(p), e0.eq(eas + ebs - 126)).Else(n.eq(p << 1), e0.eq(eas + ebs - 127)),
    ]
    up = n[23] & ((n[0:23] != 0) | n[24])
    mr = Signal(24)  # as in fp_add: bit 23 is the carry into the hidden one
    er = Signal((11, True))
    frac = mr[0:23]
    top_ones, e0_zero, e0_low = Signal(), Signal(), Signal()
    m.comb += [
        mr.eq(n[24:47] + up),
        er.eq(e0 + mr[23]),
        top_ones.eq(n[24:48] == 0xFFFFFF),
        e0_zero.eq(e0 == 0),
        e0_low.eq(e0 <= 0),
    ]
    inf = Cat(Replicate(0, 23), Replicate(1, 8), sr)
    m.comb += [
        If(a_nan | b_nan | (a_inf & b_zero) | (a_zero & b_inf), r.eq(QNAN))
        .Elif(a_inf | b_inf, r.eq(inf))
        .Elif(a_zero | b_zero, r.eq(Cat(Replicate(0, 31), sr)))
        # Gradual underflow would round values in [2^-127, 2^-126) up to the smallest normal
        # exactly when the top 24 product bits are all ones; everything else below is flushed.
        .Elif(e0_zero & top_ones, r.eq(Cat(Replicate(0, 23), 1, Replicate(0, 7), sr)))
        .Elif(e0_low, r.eq(Cat(Replicate(0, 31), sr)))
        .Elif(er >= 255, r.eq(inf))
        .Else(r.eq(Cat(frac, er[0:8], sr)))
    ]
    return r


def fp_order_key(m: Module, a: Signal) -> Signal:
    """An unsigned key that orders non-NaN floats as numbers, with -0 < +0 and subnormals read
    as signed zeros."""
    k = Signal(32)
    z = Signal(32)
    m.comb += [
        z.eq(Mux(a[23:31] == 0, Cat(Replicate(0, 31), a[31]), a)),
        k.eq(Mux(z[31], ~z, z | 0x80000000)),
    ]
    return k


def fp_minmax(m: Module, a: Signal, b: Signal, is_max: Signal | int) -> Signal:
    r = Signal(32)
    ka, kb = fp_order_key(m, a), fp_order_key(m, b)
    a_nan = (a[23:31] == 255) & (a[0:23] != 0)
    b_nan = (b[23:31] == 255) & (b[0:23] != 0)
    za = Mux(a[23:31] == 0, Cat(Replicate(0, 31), a[31]), a)
    zb = Mux(b[23:31] == 0, Cat(Replicate(0, 31), b[31]), b)
    m.comb += If(a_nan | b_nan, r.eq(QNAN)).Elif((ka <= kb) ^ is_max, r.eq(za)).Else(r.eq(zb))
    return r


# ---- numpy model ---------------------------------------------------------------------------


def daz(bits: np.ndarray) -> np.ndarray:
    """Subnormal inputs -> zeros of the same sign (uint32 bit patterns in and out)."""
    bits = np.asarray(bits, dtype=np.uint32)
    sub = (bits & 0x7F800000) == 0
    return np.where(sub, bits & 0x80000000, bits).astype(np.uint32)


def ftz_canon(bits: np.ndarray) -> np.ndarray:
    """Subnormal results -> signed zeros; every NaN -> the canonical quiet NaN."""
    bits = daz(bits)
    nan = ((bits & 0x7F800000) == 0x7F800000) & ((bits & 0x007FFFFF) != 0)
    return np.where(nan, np.uint32(QNAN), bits).astype(np.uint32)


def _f(bits: np.ndarray) -> np.ndarray:
    return daz(bits).view(np.float32)


def _key(bits: np.ndarray) -> np.ndarray:
    z = daz(bits)
    return np.where(z >> 31 == 1, ~z, z | np.uint32(0x80000000)).astype(np.uint32)


def model_add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return ftz_canon((_f(a) + _f(b)).view(np.uint32))


def model_sub(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return ftz_canon((_f(a) - _f(b)).view(np.uint32))


def model_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return ftz_canon((_f(a) * _f(b)).view(np.uint32))


def _nan(bits: np.ndarray) -> np.ndarray:
    bits = np.asarray(bits, dtype=np.uint32)
    return ((bits & 0x7F800000) == 0x7F800000) & ((bits & 0x007FFFFF) != 0)


def model_min(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.uint32), np.asarray(b, np.uint32)
    r = np.where(_key(a) <= _key(b), daz(a), daz(b))
    return np.where(_nan(a) | _nan(b), np.uint32(QNAN), r).astype(np.uint32)


def model_max(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.uint32), np.asarray(b, np.uint32)
    r = np.where(_key(a) > _key(b), daz(a), daz(b))
    return np.where(_nan(a) | _nan(b), np.uint32(QNAN), r).astype(np.uint32)
