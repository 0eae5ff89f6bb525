"""``ff.compile`` and ``ff.run``: an expression in index notation, compiled to a SAM graph and
run on a device, with operands by name.

General graphs run on the emulator only: the overlay's lanes implement SpMV and SpMM
(``ff.spmv``, ``ff.spmm``), not the primitives one by one.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np
import scipy.sparse as sp

from fiberflow.errors import DeviceError, DTypeError, FormatError, ShapeError
from fiberflow.host.compiler import execute, fast
from fiberflow.host.compiler import expr as ex
from fiberflow.host.compiler import lower as lw
from fiberflow.host.compiler.semiring import Semiring
from fiberflow.host.compiler.semiring import semiring as _semiring
from fiberflow.host.formats import dtypes
from fiberflow.host.formats.formats import DENSE, Format
from fiberflow.host.formats.tensor import Tensor


class Kernel:
    """A compiled expression. ``k.graph`` is its SAM graph (``k.graph.to_dot()``),
    ``k.order`` its loop order, ``k.formats`` every operand's format and the result's.

    Call it with the operands by name and a device: ``X = k(B=A1, C=A2, device=dev)``.
    A kernel holds no state between calls and may be called from several threads.
    """

    def __init__(self, program: lw.Program, semiring: Semiring) -> None:
        self.program = program
        self.semiring = semiring
        self.graph = program.graph
        self.order = "".join(program.order) if all(len(v) == 1 for v in program.order) else \
            ",".join(program.order)  # fmt: skip
        self.formats = {name: str(f) for name, f in program.formats.items()}
        self.expression = program.assignment.text
        lhs = program.assignment.lhs
        self.operands = tuple(dict.fromkeys(a.name for a in program.accesses))
        self.result = lhs.name
        self.fast = fast.path(program)

    def __repr__(self) -> str:
        return (
            f"<fiberflow kernel {self.expression!r}: formats {self.formats}, order "
            f"{self.order}, semiring {self.semiring.name}, {len(self.graph.nodes)} nodes>"
        )

    def __call__(self, *, device: Any = None, dtype: Any = None, trace: bool = False,
                 engine: str = "auto", **operands: Any) -> Any:  # fmt: skip
        """Run on ``device`` (the emulator). ``dtype`` converts every operand explicitly
        (float64 input needs it). With ``trace=True``, returns ``(result, streams)``:
        every stream's tokens by name (``"n3.crd"``). ``engine``: ``"token"`` runs the graph
        token by token on the primitives' models, ``"fast"`` the kernel's fast path (SpGEMM,
        element-wise add and multiply, SDDMM, SpMSpV: the same bits), ``"auto"`` the fast
        path when there is one and no trace is asked for."""
        _check_device(device)
        prog = self.program
        missing = [n for n in self.operands if n not in operands]
        extra = [n for n in operands if n not in self.operands]
        if missing or extra:
            raise ShapeError(
                f"{self.expression!r} takes operands {', '.join(self.operands)}"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; {', '.join(extra)} not in the expression" if extra else "")
            )
        ranks = {a.name: len(a.indices) for a in prog.accesses}
        # Python numbers as scalars take the tensors' type (float32 unless they are int32)
        plain = {n for n in self.operands if ranks[n] == 0 and _python_number(operands[n])}
        converted = {n: _operand(n, operands[n], ranks[n], prog.formats[n], dtype)
                     for n in self.operands if n not in plain}  # fmt: skip
        kinds = {v.dtype for v in converted.values()}
        own = dtype if dtype is not None else (kinds.copy().pop() if len(kinds) == 1 else "float32")
        for n in plain:
            converted[n] = _operand(n, operands[n], 0, prog.formats[n], own)
        kinds = {v.dtype for v in converted.values()}
        if len(kinds) > 1:
            raise DTypeError(
                f"the operands mix {' and '.join(sorted(str(k) for k in kinds))}; pass "
                "dtype='float32' or dtype='int32' to convert them all"
            )
        vtype = kinds.pop() if kinds else np.dtype(np.float32)
        add, mul, identity = self.semiring.ops(vtype)
        uses_sub = any(n.kind == "alu" and n.params["op"] == "sub" for n in self.graph.nodes)
        sub = self.semiring.sub(vtype) if uses_sub else None
        sizes = _sizes(prog, converted)
        alu = execute.Ops(add, mul, sub, identity)
        ops = {n: c.operand for n, c in converted.items()}
        if engine not in ("auto", "token", "fast"):
            raise DeviceError(f"engine must be 'auto', 'token' or 'fast', not {engine!r}")
        fast_path = self.fast if engine != "token" and not trace else None
        if engine == "fast" and fast_path is None:
            raise FormatError(
                f"{self.expression!r} has no fast path"
                + (" with trace=True" if trace and self.fast else "")
                + ": run it with engine='token'"
            )
        streams = None
        if fast_path is not None:
            levels, words = fast_path(ops, alu, sizes)
        else:
            out = execute.run(self.graph, ops, alu, sizes, prog.out_levels, prog.out_values,
                              keep=prog.summed, trace=trace)  # fmt: skip
            levels, words = _written(prog, out)
            streams = out.trace
        pydata = any(c.pydata for c in converted.values())
        result = _assemble(prog, levels, words, sizes, vtype, identity, pydata)
        return (result, streams) if trace else result


class _Converted:
    def __init__(self, operand: execute.Operand, dtype: np.dtype, shape: tuple[int, ...],
                 pydata: bool = False) -> None:  # fmt: skip
        self.operand, self.dtype, self.shape, self.pydata = operand, dtype, shape, pydata


def _check_device(device: Any) -> None:
    if device is None:
        raise DeviceError(
            "a compiled kernel needs device=: open one with dev = ff.open('emu'); fiberflow "
            "keeps no default device"
        )
    if getattr(device, "name", None) != "emu":
        raise DeviceError(
            f"general SAM graphs run on the emulator only (ff.open('emu')), not on the "
            f"{getattr(device, 'name', type(device).__name__)!r} device: the overlay's lanes run "
            "SpMV and SpMM, through ff.spmv and ff.spmm"
        )
    if getattr(device, "closed", False):
        raise DeviceError("the device is closed; open another with ff.open('emu')")


def _python_number(x: Any) -> bool:
    """A Python int or float (weak, as numpy treats them), not a numpy scalar or a bool."""
    return type(x) in (int, float)


def _operand(name: str, x: Any, rank: int, fmt: Format, dtype: Any) -> _Converted:
    what = f"operand {name}"
    if rank == 0:
        arr = np.asarray(x)
        if arr.size != 1 or sp.issparse(x):
            raise ShapeError(
                f"{what} is a scalar in the expression; pass a number, not {arr.shape}"
            )
        vals = dtypes.coerce(arr.reshape(1), dtype, f"{what}'s value")
        return _Converted(execute.Operand((), _words(vals)), vals.dtype, ())
    pydata = type(x).__module__.split(".")[0] == "sparse" and hasattr(x, "coords")
    try:
        if isinstance(x, Tensor):
            t = x
            if t.fmt != fmt or (dtype is not None and t.dtype != dtypes.check_supported(dtype)):
                coords, vals = t.to_coo()
                t = Tensor.from_coo(coords, vals, t.shape, fmt, dtype)
        elif sp.issparse(x) and x.ndim == 2:
            t = Tensor.from_scipy(x, fmt, dtype)
        elif sp.issparse(x) or pydata:
            t = Tensor.from_coo(np.asarray(x.coords), np.asarray(x.data), x.shape, fmt, dtype)
        else:
            arr = np.asarray(x)
            if arr.dtype.kind in "OSUV":
                raise ShapeError(f"a {type(x).__name__} is not an array or a tensor")
            t = Tensor.from_numpy(arr, fmt, dtype)
    except (ShapeError, FormatError, DTypeError) as e:
        raise type(e)(f"{what}: {e}") from None
    if t.ndim != rank:
        raise ShapeError(
            f"{what} has {t.ndim} dimension(s) but the expression gives it {rank} indices"
        )
    levels = tuple(
        (DENSE, lv.size) if lv.kind == DENSE else (lv.kind, lv.pos, lv.crd) for lv in t.levels
    )
    return _Converted(execute.Operand(levels, _words(t.values)), t.dtype, t.shape, pydata)


def _words(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values).view(np.uint32)


def _sizes(prog: lw.Program, converted: dict[str, _Converted]) -> dict[str, int]:
    """Each index's dimension; a ShapeError with a caret where two operands disagree."""
    sizes: dict[str, tuple[int, ex.Access, int]] = {}
    for acc in prog.accesses:
        shape = converted[acc.name].shape
        for k, v in enumerate(acc.indices):
            if v in sizes and sizes[v][0] != shape[k]:
                n, other, m = sizes[v]
                raise ex.error(
                    prog.assignment.text, *acc.spans[k],
                    f"index {v} is {shape[k]} here ({acc.name}'s mode {k}) but {n} in "
                    f"{other.name} (its mode {m})", ShapeError,
                )  # fmt: skip
            sizes.setdefault(v, (shape[k], acc, k))
    return {v: s[0] for v, s in sizes.items()}


def _written(prog: lw.Program, out: execute.Written) -> tuple[list, np.ndarray]:
    """The result's levels (seg, crd) and value words from what reached its writers."""
    if not prog.assignment.lhs.indices:
        return [], np.array(
            [t.value for t in out.values if isinstance(t, execute.Val)][:1], np.uint32
        )
    levels = execute.levels((*out.levels, *out.kept))
    words = np.array([t.value for t in out.values if isinstance(t, execute.Val)], np.uint32)
    result, summed = levels[: len(out.levels)], levels[len(out.levels) :]
    if summed and prog.formats[prog.assignment.lhs.name].levels[-1] != DENSE:
        # a sparse last level stores only the coordinates that had something to sum
        has = np.ones(len(summed[-1][1]), bool)
        for seg, _ in reversed(summed):
            below = np.concatenate([[0], np.cumsum(has)])
            has = below[seg[1:]] > below[seg[:-1]]  # a parent with a child that has some
        seg, crd = result[-1]
        kept = np.concatenate([[0], np.cumsum(has)])
        result[-1] = (kept[seg], crd[has])
        words = words[has]
    return result, words


def _assemble(prog: lw.Program, levels: list, words: np.ndarray, sizes: dict[str, int],
              vtype: np.dtype, identity: int, pydata: bool) -> Any:  # fmt: skip
    """The result in its format: numpy for a dense format (positions nothing was written to
    hold the semiring's identity), scipy csr_array for a sparse matrix, ff.Tensor otherwise
    (pydata sparse.COO when an operand was one)."""
    lhs = prog.assignment.lhs
    fmt = prog.formats[lhs.name]
    values = words.view(vtype)
    if not lhs.indices:
        return values[0] if len(values) else np.array(identity, np.uint32).view(vtype)[()]
    shape = tuple(sizes[v] for v in lhs.indices)
    if fmt.levels == (DENSE, "s") and fmt.order == (0, 1) and len(levels[1][0]) == shape[0] + 1:
        # CSR as it stands: every row was a fiber of the iteration (not so when the rows
        # came from an operand's compressed level)
        seg, crd = levels[1]
        index = np.int32 if len(crd) < 2**31 else np.int64  # one index type, as scipy wants
        seg, crd = seg.astype(index, copy=False), crd.astype(index, copy=False)
        return sp.csr_array((values, crd, seg), shape=shape, copy=False)
    coords = [levels[0][1]]
    for seg, crd in levels[1:]:
        parent = np.repeat(np.arange(len(seg) - 1), np.diff(seg))
        coords = [c[parent] for c in coords] + [crd]
    if len(values) != len(coords[-1]):  # pragma: no cover
        raise AssertionError("the result's values do not match its coordinates")
    logical = np.empty((len(shape), len(values)), np.int64)
    logical[list(fmt.order)] = np.array(coords) if coords else logical
    if all(kind == DENSE for kind in fmt.levels):
        dense = np.full(shape, identity, np.uint32).view(vtype)
        dense[tuple(logical)] = values
        return dense
    if len(shape) == 2:
        A = sp.coo_array((values, (logical[0], logical[1])), shape=shape).tocsr()
        A.sort_indices()
        return A
    t = Tensor.from_coo(logical, values, shape, fmt)
    if pydata:
        import sparse  # an operand was one, so the package is there

        return sparse.COO(logical, values, shape=shape)
    return t


def compile(
    expression: str, formats: dict[str, str] | None = None, *, order: str | None = None,
    semiring: str = "plus_times",
) -> Kernel:  # fmt: skip
    """Compile ``expression`` (index notation, e.g. ``"X(i,j) = B(i,k) * C(k,j)"``).

    ``formats`` gives operands' and the result's formats in TACO's letters (``"ds"`` CSR,
    ``"ds:1,0"`` CSC, ``"d"``, ``"sss"``...); the defaults are dense vectors, CSR matrices and
    CSF tensors. ``order`` is the loop order (``"ikj"``); by default the first of: the result's
    indices then the summed ones, Gustavson's (the summed ones before the result's last), or
    any order the formats allow. ``semiring`` is a GraphBLAS name (``plus_times``,
    ``min_plus``, ``max_plus``, ``max_times``, ``min_times``, ``lor_land``).
    """
    return _compiled(expression, _freeze(formats), order, _semiring(semiring).name)


def _freeze(formats: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    if formats is None:
        return ()
    if not isinstance(formats, dict):
        raise FormatError(f"formats must be a dict of operand name -> format, not {formats!r}")
    return tuple(sorted((str(k), str(v)) for k, v in formats.items()))


_cache_lock = threading.Lock()


@functools.lru_cache(maxsize=256)
def _compiled_cached(expression: str, formats: tuple, order: str | None, semiring: str) -> Kernel:
    return Kernel(lw.lower(expression, dict(formats), order), _semiring(semiring))


def _compiled(expression: str, formats: tuple, order: str | None, semiring: str) -> Kernel:
    with _cache_lock:
        return _compiled_cached(expression, formats, order, semiring)


def run(expression: str, *, device: Any = None, formats: dict[str, str] | None = None,
        order: str | None = None, semiring: str = "plus_times", dtype: Any = None,
        trace: bool = False, engine: str = "auto", **operands: Any) -> Any:  # fmt: skip
    """Compile ``expression`` (cached) and run it: ``ff.run("x(i) = b(i) - C(i,j) * d(j)",
    b=b, C=A, d=x, device=dev)``. Operands' formats default to what they are: scipy
    matrices CSR, numpy arrays dense, ff.Tensor its own. (So operands cannot be called
    device, formats, order, semiring, dtype, trace or engine.)"""
    given = dict(formats or {})
    for name, x in operands.items():
        if name not in given:
            if isinstance(x, Tensor):
                given[name] = x.format
            elif isinstance(x, np.ndarray) and x.ndim >= 1:
                given[name] = "d" * x.ndim
    try:
        k = compile(expression, given, order=order, semiring=semiring)
    except FormatError:
        if formats is None and given:  # the operands' own formats may not suit any order
            k = compile(expression, None, order=order, semiring=semiring)
        else:
            raise
    return k(device=device, dtype=dtype, trace=trace, engine=engine, **operands)
