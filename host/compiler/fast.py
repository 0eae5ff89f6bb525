"""Fast paths for the named kernels' graphs (C, host/cgraph.c): the same ALU operations in the
same order as the token-level run, so the same bits, at the speed of plain loops.

A compiled program has one when its expression, formats and loop order are those of SpGEMM in
Gustavson's order, element-wise add or multiply of CSR matrices, SDDMM, SpMSpV, or SpMV /
SpMM with a dense x / B, whatever the operands are called (:func:`signature`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fiberflow.host.compiler import expr as ex
from fiberflow.host.compiler.execute import Operand, Ops
from fiberflow.host.compiler.lower import Program

try:
    from fiberflow.host._cemu import ffi, lib
except ImportError:  # pragma: no cover - the package's C extension was not built
    ffi = lib = None

# (the result's storage-order levels (seg, crd)..., value words)
Result = tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]


def _canonical(prog: Program) -> tuple[dict[str, str], dict[str, str]]:
    """Canonical names, in order of appearance (the result first): operands X, A, B, C...,
    indices i, j, k..."""
    a = prog.assignment
    names: dict[str, str] = {a.lhs.name: "X"}
    idx: dict[str, str] = {}
    for acc in (a.lhs, *prog.accesses):
        if acc.name not in names:
            k = len(names) - 1
            names[acc.name] = "ABCDEFGH"[k] if k < 8 else f"T{k}"
        for v in acc.indices:
            idx.setdefault(v, "ijklmnop"[len(idx)] if len(idx) < 8 else f"v{len(idx)}")
    return names, idx


def signature(prog: Program) -> str:
    """The program with its operands and indices renamed (:func:`_canonical`):
    ``"X(i,j)=A(i,k)*B(k,j) A:ds B:ds X:ds order ikj"``."""
    a = prog.assignment
    names, idx = _canonical(prog)

    def text(node: ex.Node) -> str:
        if isinstance(node, ex.Access):
            return f"{names[node.name]}({','.join(idx[v] for v in node.indices)})"
        if isinstance(node, ex.Product):
            return "*".join(text(f) for f in node.factors)
        pairs = enumerate(zip(node.signs, node.terms, strict=True))
        return "".join(("+" if s > 0 else "-") * (k > 0) + text(t) for k, (s, t) in pairs)

    fmts = " ".join(
        f"{names[n]}:{f}" for n, f in sorted(prog.formats.items(), key=lambda t: names[t[0]])
    )
    return f"{text(a.lhs)}={text(a.rhs)} {fmts} order {''.join(idx[v] for v in prog.order)}"


def _csr(op: Operand) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    (_, rows), (_, pos, crd) = op.levels
    return rows, np.ascontiguousarray(pos, np.int64), np.ascontiguousarray(crd, np.int32), op.words


def _p(kind: str, a: np.ndarray):
    return ffi.from_buffer(f"{kind}[]", a)


def _spgemm(names: list[str], ops: dict[str, Operand], alu: Ops, sizes: list[int]) -> Result:
    m, arp, aci, av = _csr(ops[names[0]])
    _, brp, bci, bv = _csr(ops[names[1]])
    n = sizes[1]  # (sizes: i, j, k)
    crp = np.empty(m + 1, np.int64)
    work = np.empty(max(n, 1), np.int64)
    nnz = lib.ff_spgemm_rows(m, n, _p("int64_t", arp), _p("int32_t", aci),
                             _p("int64_t", brp), _p("int32_t", bci), _p("int64_t", crp),
                             _p("int64_t", work))  # fmt: skip
    cci, cv = np.empty(nnz, np.int32), np.empty(nnz, np.uint32)
    acc = np.empty(max(n, 1), np.uint32)
    lib.ff_spgemm(m, n, _p("int64_t", arp), _p("int32_t", aci), _p("uint32_t", av),
                  _p("int64_t", brp), _p("int32_t", bci), _p("uint32_t", bv), alu.add, alu.mul,
                  _p("int64_t", crp), _p("int32_t", cci), _p("uint32_t", cv), _p("int64_t", work),
                  _p("uint32_t", acc))  # fmt: skip
    return [(np.array([0, m]), np.arange(m)), (crp, cci)], cv


def _ewise(both: int) -> Callable[[list[str], dict[str, Operand], Ops, list[int]], Result]:
    def run(names: list[str], ops: dict[str, Operand], alu: Ops, sizes: list[int]) -> Result:
        m, arp, aci, av = _csr(ops[names[0]])
        _, brp, bci, bv = _csr(ops[names[1]])
        room = min(len(aci), len(bci)) if both else len(aci) + len(bci)
        crp, cci, cv = (
            np.empty(m + 1, np.int64),
            np.empty(room, np.int32),
            np.empty(room, np.uint32),
        )
        nnz = lib.ff_ewise(m, _p("int64_t", arp), _p("int32_t", aci), _p("uint32_t", av),
                           _p("int64_t", brp), _p("int32_t", bci), _p("uint32_t", bv), both,
                           alu.mul if both else alu.add, alu.identity, _p("int64_t", crp),
                           _p("int32_t", cci), _p("uint32_t", cv))  # fmt: skip
        return [(np.array([0, m]), np.arange(m)), (crp, cci[:nnz])], cv[:nnz]

    return run


def _sddmm(names: list[str], ops: dict[str, Operand], alu: Ops, sizes: list[int]) -> Result:
    m, srp, sci, sv = _csr(ops[names[0]])
    r = sizes[2]
    u = np.ascontiguousarray(ops[names[1]].words)  # U (m, r), row-major
    vt = np.ascontiguousarray(ops[names[2]].words)  # V stored j then k: V transposed, (n, r)
    out = np.empty(len(sv), np.uint32)
    lib.ff_sddmm(m, _p("int64_t", srp), _p("int32_t", sci), _p("uint32_t", sv),
                 _p("uint32_t", u), _p("uint32_t", vt), r, alu.add, alu.mul, alu.identity,
                 _p("uint32_t", out))  # fmt: skip
    return [(np.array([0, m]), np.arange(m)), (srp, sci)], out


def _spmspv(names: list[str], ops: dict[str, Operand], alu: Ops, sizes: list[int]) -> Result:
    m, arp, aci, av = _csr(ops[names[0]])
    ((_, _, xcrd),) = ops[names[1]].levels
    n = sizes[1]
    xc = np.ascontiguousarray(xcrd, np.int64)
    yi, yv = np.empty(m, np.int64), np.empty(m, np.uint32)
    xw, has = np.empty(max(n, 1), np.uint32), np.empty(max(n, 1), np.uint8)
    kept = lib.ff_spmspv(m, n, _p("int64_t", arp), _p("int32_t", aci), _p("uint32_t", av),
                         len(xc), _p("int64_t", xc), _p("uint32_t", ops[names[1]].words),
                         alu.add, alu.mul, alu.identity, _p("int64_t", yi), _p("uint32_t", yv),
                         _p("uint32_t", xw), _p("uint8_t", has))  # fmt: skip
    return [(np.array([0, kept]), yi[:kept])], yv[:kept]


def _spmm_dense(
    keep_first: int,
) -> Callable[[list[str], dict[str, Operand], Ops, list[int]], Result]:
    """SpMV (reducer: ``keep_first`` 0) and SpMM in Gustavson's order (sparse accumulator:
    1) with a dense x / B and a dense result: the semirings of ``ff.spmv`` / ``ff.spmm`` that
    the overlay lacks."""

    def run(names: list[str], ops: dict[str, Operand], alu: Ops, sizes: list[int]) -> Result:
        m, arp, aci, av = _csr(ops[names[0]])
        b = np.ascontiguousarray(ops[names[1]].words)
        k = sizes[1] if len(sizes) == 3 else 1  # (sizes: i, [the result's columns,] j)
        out = np.empty(m * k, np.uint32)
        lib.ff_spmm_dense(m, _p("int64_t", arp), _p("int32_t", aci), _p("uint32_t", av),
                          _p("uint32_t", b), k, alu.add, alu.mul, alu.identity, keep_first,
                          _p("uint32_t", out))  # fmt: skip
        rows = (np.array([0, m]), np.arange(m))  # the dense result: every row and column
        if len(sizes) == 2:
            return [rows], out
        return [rows, (np.arange(m + 1) * k, np.tile(np.arange(k), m))], out

    return run


PATHS: dict[str, Callable[[list[str], dict[str, Operand], Ops, list[int]], Result]] = {
    "X(i,j)=A(i,k)*B(k,j) A:ds B:ds X:ds order ikj": _spgemm,
    "X(i,j)=A(i,j)+B(i,j) A:ds B:ds X:ds order ij": _ewise(0),
    "X(i,j)=A(i,j)*B(i,j) A:ds B:ds X:ds order ij": _ewise(1),
    "X(i,j)=A(i,j)*B(i,k)*C(k,j) A:ds B:dd C:dd:1,0 X:ds order ijk": _sddmm,
    "X(i)=A(i,j)*B(j) A:ds B:s X:s order ij": _spmspv,
    "X(i)=A(i,j)*B(j) A:ds B:d X:d order ij": _spmm_dense(0),
    "X(i,j)=A(i,k)*B(k,j) A:ds B:dd X:dd order ikj": _spmm_dense(1),
}


def path(prog: Program) -> Callable[[dict[str, Operand], Ops, dict[str, int]], Result] | None:
    """The fast path of ``prog``, or None."""
    fn = PATHS.get(signature(prog)) if lib is not None else None
    if fn is None:
        return None
    canonical, idx = _canonical(prog)
    names = list(canonical)[1:]  # the operands, A, B, ... (the result is X)

    def run(ops: dict[str, Operand], alu: Ops, sizes: dict[str, int]) -> Result:
        return fn(names, ops, alu, [sizes[v] for v in idx])

    return run
