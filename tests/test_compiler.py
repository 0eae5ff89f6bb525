"""ff.compile / ff.run: expressions in index notation, lowered to SAM graphs of the overlay's
primitives and run token by token on their reference models (emu), against numpy's einsum."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fiberflow as ff
from fiberflow.host.compiler.graph import BLOCKS
from fiberflow.host.compiler.semiring import SEMIRINGS
from fiberflow.overlay.primitives import registry


@pytest.fixture(scope="module")
def dev():  # type: ignore[no-untyped-def]
    d = ff.open("emu")
    yield d
    d.close()


def _int(shape: tuple[int, ...], density: float, rng: np.random.Generator) -> np.ndarray:
    a = rng.integers(-9, 10, size=shape).astype(np.int32)
    return np.where(rng.random(shape) < density, a, 0).astype(np.int32)


def _dense(x: object) -> np.ndarray:
    if isinstance(x, ff.Tensor):
        return x.to_numpy()
    if sp.issparse(x):
        return x.toarray()
    return np.asarray(x)


# SAM's evaluation set: expression, formats, operand shapes by index
SAM = [
    ("y(i) = A(i,j) * x(j)", {}),
    ("y(i) = A(i,j) * x(j)", {"x": "s", "y": "s"}),  # SpMSpV
    ("X(i,j) = B(i,k) * C(k,j)", {"B": "ds", "C": "ds", "X": "ds"}),  # Gustavson
    ("X(i,j) = B(i,k) * C(k,j)", {"B": "ds", "C": "ds:1,0", "X": "ds"}),  # inner product
    ("X(i,j) = S(i,j) * U(i,k) * V(k,j)", {"U": "dd", "V": "dd:1,0"}),  # SDDMM
    ("X(i,j) = A(i,j) + B(i,j)", {}),
    ("X(i,j) = A(i,j) * B(i,j)", {}),
    ("X(i,j,k) = A(i,j,k) + B(i,j,k)", {}),
    ("X(i,j,k) = A(i,j,k) * B(i,j,k)", {}),
    ("X(i,j) = A(i,j) + B(i,j) + C(i,j)", {}),
    ("a = B(i,j,k) * C(i,j,k)", {}),
    ("X(i,j) = B(i,j,k) * c(k)", {}),  # TTV
    ("X(i,j,k) = B(i,j,l) * C(k,l)", {}),  # TTM
    ("X(i,j) = B(i,k,l) * C(j,k) * D(j,l)", {}),  # MTTKRP
    ("x(i) = b(i) - C(i,j) * d(j)", {}),  # residual
    ("x(i) = a * C(j,i) * d(j) + b * f(i)", {"C": "ds:1,0"}),  # MatTransMul
    ("x(i) = b(i) + C(i,j)", {}),  # j summed over C alone: b plus C's row sums
]


def _operands(expression: str, sizes: dict[str, int], density: float, seed: int) -> dict:
    from fiberflow.host.compiler import expr as ex

    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for acc in ex.accesses(ex.parse(expression).rhs):
        shape = tuple(sizes[v] for v in acc.indices)
        out.setdefault(
            acc.name, _int(shape, density, rng) if shape else np.int32(rng.integers(-3, 4))
        )
    return out


def _reference(expression: str, operands: dict) -> np.ndarray:
    """numpy's einsum of the expression, term by term, wrapped to int32."""
    from fiberflow.host.compiler import expr as ex

    a = ex.parse(expression)

    def ev(node: object, idx: str) -> np.ndarray:
        if isinstance(node, ex.Access):
            return np.asarray(operands[node.name], np.int64), "".join(node.indices)
        if isinstance(node, ex.Product):
            parts = [ev(f, idx) for f in node.factors]
            spec = ",".join(p[1] for p in parts)
            keep = "".join(sorted(set("".join(p[1] for p in parts))))
            return np.einsum(f"{spec}->{keep}", *[p[0] for p in parts]), keep
        parts = [ev(t, idx) for t in node.terms]
        # each term summed over its own indices not in the result's, then added
        out = 0
        for sign, (val, ix) in zip(node.signs, parts, strict=True):
            keep = "".join(c for c in idx if c in ix)  # in the result's order
            out = out + sign * np.einsum(f"{ix}->{keep}", val)
            last = keep
        return out, last

    val, ix = ev(a.rhs, "".join(a.lhs.indices))
    return np.einsum(f"{ix}->{''.join(a.lhs.indices)}", val).astype(np.int64).astype(np.int32)


@pytest.mark.parametrize("expression, formats", SAM, ids=[e for e, _ in SAM])
def test_sam_expressions_match_einsum(expression: str, formats: dict, dev) -> None:  # type: ignore[no-untyped-def]
    sizes = {"i": 5, "j": 4, "k": 3, "l": 2}
    for seed in range(3):
        ops = _operands(expression, sizes, 0.5, seed)
        got = ff.run(expression, formats=formats, device=dev, **ops)
        want = _reference(expression, ops)
        np.testing.assert_array_equal(_dense(got), want)


def test_the_graph_is_made_of_the_overlays_primitives() -> None:
    k = ff.compile("X(i,j) = B(i,k) * C(k,j)", {"B": "ds", "C": "ds", "X": "ds"})
    assert k.order == "ikj"  # Gustavson by default for CSR operands
    # every node but the operands' roots is a block ``fiberflow lint`` builds
    assert all(BLOCKS[n.kind] in registry.PRIMITIVES for n in k.graph.nodes if n.kind != "root")
    assert {b for b in BLOCKS.values() if b} <= set(registry.PRIMITIVES)
    counts = k.graph.count()
    assert counts["spacc"] == 1 and counts["intersect"] == 1
    assert counts["scan_compressed"] == 2 and counts["scan_dense"] == 2
    dot = k.graph.to_dot()
    assert dot.startswith("digraph sam {") and dot.count("->") == sum(
        len(n.inputs) for n in k.graph.nodes
    )
    assert "spacc\\nsum over k into j" in dot


def test_an_inner_product_order_drops_empty_intersections(dev) -> None:  # type: ignore[no-untyped-def]
    """With k innermost, rows and columns whose k fibers do not meet store nothing, not an
    explicit zero."""
    B = sp.csr_array(np.array([[1, 0], [0, 0], [0, 2]], np.int32))
    C = sp.csr_array(np.array([[0, 3, 0], [0, 0, 4]], np.int32))
    k = ff.compile("X(i,j) = B(i,k) * C(k,j)", {"C": "ds:1,0"}, order="ijk")
    assert k.order == "ijk" and k.graph.count()["reduce"] == 1
    X = k(B=B, C=C, device=dev)
    assert X.nnz == 2 and (X.toarray() == (B @ C).toarray()).all()


def test_cancellation_keeps_explicit_zeros(dev) -> None:  # type: ignore[no-untyped-def]
    A = sp.random_array((6, 6), density=0.5, format="csr", dtype=np.float32, rng=1)
    X = ff.run("X(i,j) = A(i,j) + B(i,j)", A=A, B=-A, device=dev)
    assert X.nnz == A.nnz and not X.data.any()


def test_float32_sums_are_sequential_and_match_the_fast_path(dev) -> None:  # type: ignore[no-untyped-def]
    """The token-level SpMV and SpMM are bit-identical to ff.spmv / ff.spmm on emu (sums in
    increasing column order)."""
    rng = np.random.default_rng(7)
    A = sp.random_array((40, 30), density=0.3, format="csr", dtype=np.float32, rng=rng)
    x = rng.standard_normal(30).astype(np.float32)
    y = ff.run("y(i) = A(i,j) * x(j)", A=A, x=x, device=dev)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y.view(np.uint32), ff.spmv(A, x, device=dev).view(np.uint32))
    B = rng.standard_normal((30, 3)).astype(np.float32)
    C = ff.run("C(i,n) = A(i,j) * B(j,n)", A=A, B=B, formats={"B": "dd", "C": "dd"}, device=dev)
    np.testing.assert_array_equal(C.view(np.uint32), ff.spmm(A, B, device=dev).view(np.uint32))


def _semiring_reference(A: sp.csr_array, x: np.ndarray, name: str) -> np.ndarray:
    add = {"plus_times": np.add, "min_plus": np.minimum, "max_plus": np.maximum,
           "max_times": np.maximum, "min_times": np.minimum,
           "lor_land": np.maximum}[name]  # fmt: skip
    mul = {"plus_times": np.multiply, "min_plus": np.add, "max_plus": np.add,
           "max_times": np.multiply, "min_times": np.multiply,
           "lor_land": np.minimum}[name]  # fmt: skip
    ident = {"plus_times": 0, "lor_land": 0, "min_plus": np.inf, "min_times": np.inf,
             "max_plus": -np.inf, "max_times": -np.inf}[name]  # fmt: skip
    out = []
    for i in range(A.shape[0]):
        acc = x.dtype.type(ident) if x.dtype == np.float32 else None
        if acc is None:
            info = np.iinfo(np.int32)
            acc = np.int32({np.inf: info.max, -np.inf: info.min}.get(ident, 0))
        for p in range(A.indptr[i], A.indptr[i + 1]):
            acc = add(acc, mul(A.data[p], x[A.indices[p]]))
        out.append(acc)
    return np.array(out, dtype=x.dtype)


@pytest.mark.parametrize("name", list(SEMIRINGS))
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_semirings_against_plain_python(name: str, dtype: type, dev) -> None:  # type: ignore[no-untyped-def]
    if name == "lor_land" and dtype == np.float32:
        with pytest.raises(ff.DTypeError, match="int32"):
            ff.run("y(i) = A(i,j) * x(j)", A=sp.eye_array(3, dtype=np.float32, format="csr"),
                   x=np.ones(3, np.float32), semiring=name, device=dev)  # fmt: skip
        return
    rng = np.random.default_rng(3)
    M = (rng.random((12, 9)) < 0.3) * rng.integers(1, 5, (12, 9))
    M[4] = 0  # an empty row: the identity
    if name == "lor_land":
        M = (M != 0).astype(np.int64)
    A = sp.csr_array(M.astype(dtype))
    x = (rng.integers(0, 2, 9) if name == "lor_land" else rng.integers(1, 6, 9)).astype(dtype)
    y = ff.run("y(i) = A(i,j) * x(j)", A=A, x=x, semiring=name, device=dev)
    want = _semiring_reference(A, x, name)
    np.testing.assert_array_equal(y.view(np.uint32), want.view(np.uint32))


def test_errors_point_at_the_offending_index(dev) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(
        ff.FormatError, match=r"(?s)expected a tensor.*\n\s+X\(i\) = A\(i,j\) \*\s*\n\s+\^"
    ):
        ff.compile("X(i) = A(i,j) *")
    with pytest.raises(ff.ShapeError, match=r"(?s)index q of the result.*\^"):
        ff.compile("X(i,q) = A(i,j) * x(j)")
    with pytest.raises(ff.ShapeError, match=r"(?s)same indices.*\n\s+\^"):
        ff.compile("X(i,j) = b(i) + C(i,j)")  # no broadcasting
    with pytest.raises(ff.FormatError, match=r"(?s)stored as 'ds'.*\^"):
        ff.compile("X(i,j) = B(i,k) * C(k,j)", order="ijk")
    with pytest.raises(ff.FormatError, match="each index once"):
        ff.compile("X(i,j) = B(i,k) * C(k,j)", order="ij")
    with pytest.raises(ff.FormatError, match="Gustavson"):
        ff.compile("X(i,j) = B(i,k) * C(k,j)", {"B": "ds:1,0"}, order="kij")
    with pytest.raises(ff.FormatError, match="unknown semiring"):
        ff.compile("y(i) = A(i,j) * x(j)", semiring="plus_plus")
    with pytest.raises(ff.FormatError, match="has no meaning"):
        one = np.ones(2, np.int32)
        C = sp.eye_array(2, dtype=np.int32)
        ff.run("x(i) = b(i) - C(i,j) * d(j)", b=one, C=C, d=one, semiring="min_plus", device=dev)
    k = ff.compile("y(i) = A(i,j) * x(j)")
    with pytest.raises(ff.ShapeError, match=r"(?s)index j is 4 here.*\^"):
        k(A=sp.eye_array(3, dtype=np.float32, format="csr"), x=np.ones(4, np.float32), device=dev)
    with pytest.raises(ff.DTypeError, match="dtype="):
        k(A=sp.eye_array(3, format="csr"), x=np.ones(3), device=dev)  # float64
    with pytest.raises(ff.ShapeError, match="missing x"):
        k(A=sp.eye_array(3, dtype=np.float32, format="csr"), device=dev)
    with pytest.raises(ff.DeviceError, match="needs device="):
        k(A=sp.eye_array(3, dtype=np.float32, format="csr"), x=np.ones(3, np.float32))

    class Board:
        name = "pynq"

    with pytest.raises(ff.DeviceError, match="emulator only"):
        k(
            A=sp.eye_array(3, dtype=np.float32, format="csr"),
            x=np.ones(3, np.float32),
            device=Board(),
        )
    closed = ff.open("emu")
    closed.close()
    with pytest.raises(ff.DeviceError, match="closed"):
        k(A=sp.eye_array(3, dtype=np.float32), x=np.ones(3, np.float32), device=closed)
    # float64 converted when asked, the device still works after every error above
    y = k(A=sp.eye_array(3, format="csr"), x=np.arange(3.0), dtype="float32", device=dev)
    np.testing.assert_array_equal(y, np.arange(3, dtype=np.float32))


def test_trace_returns_every_stream(dev) -> None:  # type: ignore[no-untyped-def]
    A = sp.csr_array(np.array([[1, 0, 2], [0, 0, 0]], np.int32))
    y, streams = ff.run("y(i) = A(i,j) * x(j)", A=A, x=np.array([1, 2, 3], np.int32),
                        trace=True, device=dev)  # fmt: skip
    assert list(y) == [7, 0]
    assert [repr(t) for t in streams["n0.ref"]] == ["0", "D"]
    crd = [s for name, s in streams.items() if name.endswith(".crd")]
    assert any([repr(t) for t in s] == ["0", "2", "S0", "S1", "D"] for s in crd)


EXPRESSIONS = [e for e, _ in SAM]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    expression=st.sampled_from(EXPRESSIONS),
    sizes=st.fixed_dictionaries({v: st.integers(1, 5) for v in "ijkl"}),
    density=st.sampled_from([0.0, 0.2, 0.6, 1.0]),
    kinds=st.lists(st.sampled_from("ds"), min_size=12, max_size=12),
    flips=st.lists(st.booleans(), min_size=6, max_size=6),
    seed=st.integers(0, 2**16),
)
def test_random_formats_shapes_and_densities(  # type: ignore[no-untyped-def]
    expression, sizes, density, kinds, flips, seed
) -> None:
    """Any formats (dense or compressed levels, matrices in either mode order): either the
    compiler finds a loop order and the result equals einsum's, or it says why not."""
    from fiberflow.host.compiler import expr as ex

    a = ex.parse(expression)
    names = list(dict.fromkeys(acc.name for acc in (*ex.accesses(a.rhs), a.lhs)))
    ranks = {acc.name: len(acc.indices) for acc in (*ex.accesses(a.rhs), a.lhs)}
    formats = {}
    for n, name in enumerate(names):
        r = ranks[name]
        if r == 0:
            continue
        f = "".join(kinds[2 * n + m] for m in range(r))
        if r == 2 and flips[n % len(flips)]:
            f += ":1,0"
        formats[name] = f
    try:
        k = ff.compile(expression, formats)
    except ff.FormatError:
        assume(False)
        return
    ops = _operands(expression, sizes, density, seed)
    with ff.open("emu") as d:
        got = k(device=d, **ops)
    np.testing.assert_array_equal(_dense(got), _reference(expression, ops))


def test_named_kernels_and_spmv_semirings(dev) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    A = sp.random_array((30, 20), density=0.2, format="csr", dtype=np.float32, rng=rng)
    B = sp.random_array((20, 25), density=0.2, format="csr", dtype=np.float32, rng=rng)
    X = ff.spgemm(A, B, device=dev)
    assert isinstance(X, sp.csr_array) and X.has_sorted_indices
    np.testing.assert_allclose(X.toarray(), (A @ B).toarray(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ff.add(A, A, device=dev).toarray(), (2 * A).toarray())
    np.testing.assert_array_equal(ff.multiply(A, A, device=dev).toarray(), A.multiply(A).toarray())
    U = rng.standard_normal((30, 4)).astype(np.float32)
    V = rng.standard_normal((4, 20)).astype(np.float32)
    S = ff.sddmm(A, U, V, device=dev)
    np.testing.assert_allclose(S.toarray(), A.multiply(U @ V).toarray(), rtol=1e-5, atol=1e-5)
    x = np.zeros(20, np.float32)
    x[[3, 7]] = 1
    y = ff.spmspv(A, x, device=dev)
    assert isinstance(y, ff.Tensor) and y.nnz == np.count_nonzero(A[:, [3, 7]].sum(axis=1))
    np.testing.assert_array_equal(y.to_numpy(), A @ x)
    # the overlay's semiring on the fast path, any other through the compiler (emu)
    M = sp.csr_array(np.array([[1, 0, 2], [0, 0, 0], [0, 3, 0]], np.float32))
    v = np.array([1, 2, 3], np.float32)
    np.testing.assert_array_equal(ff.spmv(M, v, device=dev, semiring="min_plus"), [2, np.inf, 5])
    C = ff.spmm(M, np.ones((3, 2), np.float32), device=dev, semiring="max_times")
    np.testing.assert_array_equal(C, [[2, 2], [-np.inf, -np.inf], [3, 3]])
    with pytest.raises(ff.DeviceError, match="resident"):
        ff.spmv(dev.put(M), v, device=dev, semiring="min_plus")
    with pytest.raises(ff.ShapeError, match="2-D"):
        ff.spgemm(v, M, device=dev)


def _awkward(  # type: ignore[no-untyped-def]
    shape: tuple[int, int], density: float, dtype: type, rng: np.random.Generator,
    subnormals: bool = True,
):  # fmt: skip
    """A random CSR matrix whose float32 values include zeros of both signs, infinities, NaNs
    (payloads too) and, with ``subnormals``, subnormals (which send the fast paths' plain
    float arithmetic back to the ALU's operations)."""
    A = sp.random_array(shape, density=density, format="csr", dtype=np.float32, rng=rng)
    if dtype == np.int32:
        A.data = rng.integers(-(2**31), 2**31, A.nnz).astype(np.int32)
        return A
    special = np.array([0.0, -0.0, np.inf, -np.inf, 1e-40, -3e-39, np.nan], np.float32)
    bits = special.view(np.uint32).copy()
    bits[-1] = 0x7FA00001  # a signalling NaN with a payload
    if not subnormals:
        bits = np.delete(bits, [4, 5])
    pick = rng.random(A.nnz) < 0.2
    A.data = np.where(pick, bits[rng.integers(0, len(bits), A.nnz)].view(np.float32),
                      (A.data - 0.5) * 4).astype(np.float32)  # fmt: skip
    return A


@pytest.mark.parametrize("name", list(SEMIRINGS))
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_fast_paths_are_bit_exact_with_the_token_level_run(name: str, dtype: type, dev) -> None:  # type: ignore[no-untyped-def]
    if name == "lor_land" and dtype == np.float32:
        return
    rng = np.random.default_rng(zlib.crc32(f"{name} {dtype.__name__}".encode()))
    shapes = ((7, 5, 6, 0.5), (12, 9, 11, 0.15), (1, 1, 1, 1.0), (4, 3, 5, 0.0), (30, 20, 25, 0.3))
    for (m, k, n, density), sub in itertools.product(shapes, (True, False)):
        A = _awkward((m, k), density, dtype, rng, sub)
        B = _awkward((k, n), density, dtype, rng, sub)
        C = _awkward((m, k), density, dtype, rng, sub)
        U = _awkward((m, 3), 1.0, dtype, rng, sub).toarray()
        V = _awkward((3, k), 1.0, dtype, rng, sub).toarray()
        if name == "lor_land":
            A, B, C = (abs(M.sign()).astype(np.int32) for M in (A, B, C))
            U, V = (np.abs(np.sign(M)).astype(np.int32) for M in (U, V))
        cases = [
            ("X(i,j) = A(i,k) * B(k,j)", {"B": "ds", "X": "ds"}, "ikj", {"A": A, "B": B}),
            ("X(i,j) = A(i,j) + B(i,j)", {}, None, {"A": A, "B": C}),
            ("X(i,j) = A(i,j) * B(i,j)", {}, None, {"A": A, "B": C}),
            ("X(i,j) = S(i,j) * U(i,k) * V(k,j)", {"U": "dd", "V": "dd:1,0"}, "ijk",
             {"S": A, "U": U, "V": V}),
        ]  # fmt: skip
        x = B.toarray()[:, 0] if n else np.zeros(k, dtype)  # sparse: its zeros are dropped
        cases.append(("y(i) = A(i,j) * x(j)", {"x": "s", "y": "s"}, None, {"A": A, "x": x}))
        # ff.spmv / ff.spmm with a semiring: dense x and B, dense results (Gustavson for SpMM)
        cases.append(("y(i) = A(i,j) * x(j)", {"x": "d", "y": "d"}, None, {"A": A, "x": x}))
        cases.append(("C(i,n) = A(i,j) * B(j,n)", {"B": "dd", "C": "dd"}, None,
                      {"A": A, "B": B.toarray()}))  # fmt: skip
        for expression, formats, order, ops in cases:
            kern = ff.compile(expression, formats, order=order, semiring=name)
            assert kern.fast is not None, expression
            fast = kern(device=dev, engine="fast", **ops)
            token = kern(device=dev, engine="token", **ops)
            if isinstance(fast, ff.Tensor):
                assert fast == token
                continue
            if isinstance(fast, np.ndarray):
                np.testing.assert_array_equal(fast.view(np.uint32), token.view(np.uint32))
                continue
            assert fast.shape == token.shape
            np.testing.assert_array_equal(fast.indptr, token.indptr)
            np.testing.assert_array_equal(fast.indices, token.indices)
            np.testing.assert_array_equal(fast.data.view(np.uint32), token.data.view(np.uint32))
    with pytest.raises(ff.FormatError, match="no fast path"):  # (a residual has none)
        one = np.ones(A.shape[0], dtype)
        ff.compile("x(i) = b(i) - C(i,j) * d(j)")(
            b=one, C=A, d=np.ones(k, dtype), device=dev, engine="fast"
        )


def test_graph_command_writes_dot(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from fiberflow.cli import main

    out = tmp_path / "g.dot"
    args = ["graph", "X(i,j) = B(i,k) * C(k,j)", "--formats", "B=ds", "C=ds", "-o", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "order ikj" in printed and "spacc x1" in printed
    assert (
        out.read_text()
        == ff.compile("X(i,j) = B(i,k) * C(k,j)", {"B": "ds", "C": "ds"}).graph.to_dot()
    )
    assert main(["graph", "X(i,j) = B(k,i) * C(k,j)"]) == 1
    assert "^" in capsys.readouterr().err
    assert main(["graph", "y(i) = A(i,j) * x(j)", "--formats", "A"]) == 1
    assert "NAME=FORMAT" in capsys.readouterr().err
    assert main(["graph", "y(i) = A(i,j) * x(j)", "-o", str(tmp_path / "g.txt")]) == 1


def test_graph_command_draws_svg(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from fiberflow.cli import main

    pytest.importorskip("matplotlib")
    assert main(["graph", "x(i) = b(i) - C(i,j) * d(j)", "-o", str(tmp_path / "g.svg")]) == 0
    svg = (tmp_path / "g.svg").read_text()
    assert "<svg" in svg and svg.count("<path") > 20


def test_python_numbers_take_the_tensors_type(dev) -> None:  # type: ignore[no-untyped-def]
    x = np.arange(3, dtype=np.float32)
    np.testing.assert_array_equal(ff.run("y(i) = a * x(i)", a=2.0, x=x, device=dev), 2 * x)
    i = np.arange(3, dtype=np.int32)
    y = ff.run("y(i) = a * x(i)", a=3, x=i, device=dev)
    assert y.dtype == np.int32 and list(y) == [0, 3, 6]
    with pytest.raises(ff.DTypeError, match="truncate"):
        ff.run("y(i) = a * x(i)", a=2.5, x=i, device=dev)
    with pytest.raises(ff.DTypeError, match="dtype="):  # a numpy float64 is not converted
        ff.run("y(i) = a * x(i)", a=np.float64(2.5), x=x, device=dev)
    with pytest.raises(ff.DeviceError, match="engine"):
        ff.run("y(i) = a * x(i)", a=2.0, x=x, device=dev, engine="turbo")


@pytest.mark.parametrize("name", ["poisson2d_32", "powerlaw_2000"])
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_real_matrices(name: str, dtype: type, dev) -> None:  # type: ignore[no-untyped-def]
    """The bundled matrices (a 2-D Laplacian, a power-law graph) through every named kernel,
    against scipy: int32 exactly, float32 within its rounding."""
    from fiberflow import datasets

    A = datasets.load(name)
    A = sp.csr_array((np.round(A.data * 3 + 1).astype(dtype), A.indices, A.indptr), A.shape)
    B = sp.csr_array(A.T)
    B.sort_indices()
    exact = dtype == np.int32

    def same(got: object, want: object) -> None:
        g = got.toarray() if sp.issparse(got) else np.asarray(got)
        w = want.toarray() if sp.issparse(want) else np.asarray(want)
        if exact:
            np.testing.assert_array_equal(g, w.astype(np.int64).astype(np.int32))
        else:
            np.testing.assert_allclose(g, w, rtol=2e-6, atol=1e-5 * max(1.0, np.abs(w).max()))

    same(ff.spgemm(A, B, device=dev), A.astype(np.int64) @ B.astype(np.int64) if exact else A @ B)
    same(ff.add(A, B, device=dev), A + B)
    same(ff.multiply(A, B, device=dev), A.multiply(B))
    rng = np.random.default_rng(1)
    U = rng.integers(-3, 4, (A.shape[0], 8)).astype(dtype)
    V = rng.integers(-3, 4, (8, A.shape[1])).astype(dtype)
    same(ff.sddmm(A, U, V, device=dev), A.multiply(U.astype(np.int64) @ V.astype(np.int64)))
    x = np.zeros(A.shape[1], dtype)
    x[:: max(1, A.shape[1] // 50)] = 2
    same(ff.spmspv(A, x, device=dev).to_numpy(), A @ x)


def test_spgemm_semirings_against_plain_python(dev) -> None:  # type: ignore[no-untyped-def]
    """min_plus SpGEMM is the distance product: X[i,j] = min over k of A[i,k] + B[k,j]."""
    rng = np.random.default_rng(2)
    M = (rng.random((9, 7)) < 0.35) * rng.integers(1, 9, (9, 7))
    N = (rng.random((7, 8)) < 0.35) * rng.integers(1, 9, (7, 8))
    A, B = sp.csr_array(M.astype(np.float32)), sp.csr_array(N.astype(np.float32))
    X = ff.spgemm(A, B, device=dev, semiring="min_plus").tocoo()
    got = {(int(i), int(j)): v for i, j, v in zip(X.row, X.col, X.data, strict=True)}
    want = {}
    for i in range(9):
        for j in range(8):
            ks = [k for k in range(7) if M[i, k] and N[k, j]]
            if ks:  # stored only where a path exists
                want[(i, j)] = min(M[i, k] + N[k, j] for k in ks)
    assert got == want


def test_nd_inputs_and_outputs(dev) -> None:  # type: ignore[no-untyped-def]
    """scipy's N-D coo_array in, ff.Tensor out for sparse results of rank other than 2."""
    rng = np.random.default_rng(3)
    dense = ((rng.random((4, 3, 5)) < 0.4) * rng.integers(-5, 6, (4, 3, 5))).astype(np.int32)
    T = sp.coo_array(dense)
    assert T.ndim == 3
    X = ff.run("X(i,j,k) = A(i,j,k) * B(i,j,k)", A=T, B=ff.Tensor.from_numpy(dense, "sss"),
               device=dev)  # fmt: skip
    assert isinstance(X, ff.Tensor) and X.format == "sss"
    np.testing.assert_array_equal(X.to_numpy(), dense * dense)
    c = np.arange(5, dtype=np.int32)
    Y = ff.run("X(i,j) = B(i,j,k) * c(k)", B=T, c=c, formats={"X": "dd"}, device=dev)
    np.testing.assert_array_equal(Y, np.einsum("ijk,k->ij", dense, c))


@st.composite
def expressions(draw: st.DrawFn) -> str:
    """A random sum of products of tensors (and scalars) over the indices i, j, k, l."""
    names = iter("ABCDEFGH")
    terms = []
    for _ in range(draw(st.integers(1, 2))):
        factors = []
        for _ in range(draw(st.integers(1, 3))):
            idx = draw(st.lists(st.sampled_from("ijkl"), max_size=3, unique=True))
            name = next(names)
            factors.append(f"{name}({','.join(idx)})" if idx else name.lower())
        terms.append(" * ".join(factors))
    used = sorted(set("".join(terms)) & set("ijkl"))
    lhs = draw(st.lists(st.sampled_from(used or ["i"]), max_size=3, unique=True)) if used else []
    sign = draw(st.sampled_from([" + ", " - "]))
    return f"X({','.join(lhs)}) = " + sign.join(terms) if lhs else "x = " + sign.join(terms)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    expression=expressions(),
    sizes=st.fixed_dictionaries({v: st.integers(1, 4) for v in "ijkl"}),
    density=st.sampled_from([0.0, 0.3, 1.0]),
    seed=st.integers(0, 2**16),
    float32=st.booleans(),
)
def test_random_expressions(expression, sizes, density, seed, float32) -> None:  # type: ignore[no-untyped-def]
    """Random expressions: either the compiler finds a graph and its result equals einsum's
    (int32 exactly, float32 within its rounding), or it refuses with a FiberflowError."""
    try:
        k = ff.compile(expression)
    except (ff.FormatError, ff.ShapeError):
        assume(False)
        return
    ops = _operands(expression, sizes, density, seed)
    want = _reference(expression, ops)
    if float32:
        ops = {
            n: np.float32(v) if np.ndim(v) == 0 else v.astype(np.float32) for n, v in ops.items()
        }
    with ff.open("emu") as d:
        got = _dense(k(device=d, **ops))
    if float32:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    else:
        np.testing.assert_array_equal(got, want)


def test_pydata_sparse_in_and_out(dev) -> None:  # type: ignore[no-untyped-def]
    """pydata sparse.COO operands; an N-D sparse result comes back as a sparse.COO."""
    sparse = pytest.importorskip("sparse")
    rng = np.random.default_rng(4)
    d = ((rng.random((4, 3, 5)) < 0.4) * rng.integers(-5, 6, (4, 3, 5))).astype(np.int32)
    A = sparse.COO.from_numpy(d)
    X = ff.run("X(i,j,k) = A(i,j,k) + B(i,j,k)", A=A, B=A, device=dev)
    assert isinstance(X, sparse.COO)
    np.testing.assert_array_equal(X.todense(), 2 * d)
    Y = ff.run("X(i,j) = A(i,j) * B(i,j)", A=A[:, :, 0], B=A[:, :, 0], device=dev)
    assert isinstance(Y, sp.csr_array)
    np.testing.assert_array_equal(Y.toarray(), d[:, :, 0] ** 2)


def test_fast_paths_need_no_migen() -> None:
    """A plain install (no hw extra, so no Migen) imports fiberflow and runs the named
    kernels' fast paths; the token-level engine says which extra it needs."""
    code = """
import sys
sys.modules["migen"] = None
import numpy as np, scipy.sparse as sp
import fiberflow as ff
d = ff.open("emu")
A = sp.random_array((20, 20), density=0.2, format="csr", dtype=np.float32, rng=1)
assert abs(ff.spgemm(A, A, device=d) - A @ A).max() == 0
y = ff.spmv(A, np.ones(20, np.float32), device=d, semiring="min_plus")  # a fast path too
try:
    one = np.ones(20, np.float32)
    ff.run("x(i) = b(i) - C(i,j) * d(j)", b=one, C=A, d=one, device=d)
except ff.ToolchainError as e:
    print("ToolchainError", e)
"""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "ToolchainError" in run.stdout and "fiberflow[hw]" in run.stdout


def test_many_operands_and_indices(dev) -> None:  # type: ignore[no-untyped-def]
    """Nine operands and nine indices compile (no fast path matches) and run."""
    names = "ABCDEFGHJ"
    idx = "abcdefghm"
    expr = "x = " + " * ".join(f"{n}({v})" for n, v in zip(names, idx, strict=True))
    k = ff.compile(expr)
    assert k.fast is None
    ops = {n: np.full(2, 2, np.int32) for n in names}
    assert int(k(device=dev, **ops)) == 2**9 * 2**9  # each index summed over 2 entries of 2


def test_the_c_alu_is_the_reference_models() -> None:
    """host/cgraph.c's ALU, on which every fast path rests, against overlay/primitives/alu.py's
    op_words for every operation: random words and the awkward fp32 ones (signed zeros, subnormals,
    infinities, NaNs with payloads, the extremes)."""
    lib = pytest.importorskip("fiberflow.host._cemu").lib
    alu = pytest.importorskip("fiberflow.overlay.primitives.alu")
    special = np.array([0, 0x80000000, 1, 0x807FFFFF, 0x00800000, 0x7F7FFFFF, 0xFF7FFFFF,
                        0x7F800000, 0xFF800000, 0x7FC00000, 0x7FA00001, 0xFFC00001,
                        0x3F800000, 0xBF800000, 0x7FFFFFFF, 0x80000001], np.uint32)  # fmt: skip
    rng = np.random.default_rng(9)
    words = np.concatenate(
        [special, rng.integers(0, 2**32, 300, dtype=np.uint64).astype(np.uint32)]
    )
    a, b = (g.ravel() for g in np.meshgrid(words[:60], words[:60]))
    a = np.concatenate([a, words])
    b = np.concatenate([b, words[::-1]])
    for op in alu.ALL_OPS:
        want = alu.op_words(op, a, b)
        got = np.array([lib.ff_alu(int(op), int(x), int(y)) for x, y in zip(a, b, strict=True)],
                       np.uint32)  # fmt: skip
        np.testing.assert_array_equal(got, want, err_msg=op.name)


def test_the_token_level_run_refuses_what_would_not_fit(dev, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A level scanned under every reference of an outer index (x under every row of C) is
    counted before the scan: past the budget, a DeviceError that says why, not a process the
    kernel kills for its memory."""
    from fiberflow.host.compiler import execute

    C = sp.random_array((60, 50), density=0.1, format="csr", dtype=np.float32, rng=3)
    b, d = np.ones(60, np.float32), np.ones(50, np.float32)
    want = ff.run("x(i) = b(i) - C(i,j) * d(j)", b=b, C=C, d=d, device=dev)
    monkeypatch.setattr(execute, "MAX_TOKENS", 2000)  # 60 rows x 50 of d: 3,000 coordinates
    with pytest.raises(ff.DeviceError, match=r"(?s)d's level 0 is scanned under each of 60"):
        ff.run("x(i) = b(i) - C(i,j) * d(j)", b=b, C=C, d=d, device=dev)
    monkeypatch.undo()
    np.testing.assert_array_equal(ff.run("x(i) = b(i) - C(i,j) * d(j)", b=b, C=C, d=d,
                                         device=dev), want)  # fmt: skip
