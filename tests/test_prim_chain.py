"""Primitives compose: y = A @ x (CSR) as a SAM graph of scanners, array readers, ALU and
reducer, wired with LiteX ``connect`` and run in Verilator as one block.

    root -> dense scan -+-> crd_i ---------------------------------------------> rows
                        +-> ref_i -> compressed scan -+-> crd_j -> x reader -+
                                                      +-> ref_j -> A reader -+-> ALU (FMUL)
                                                                    -> reducer (FADD) -> y
"""

import numpy as np
import pytest
import scipy.sparse as sp

from fiberflow.overlay.lanes import fp32
from fiberflow.overlay.primitives import alu, array, reduce, scanner
from fiberflow.overlay.primitives.alu import Op
from fiberflow.overlay.primitives.primitive import Primitive
from fiberflow.overlay.primitives.stream import Stop, Val, parse
from fiberflow.overlay.sim.simharness import StreamSim

pytestmark = pytest.mark.rtl


class SpmvGraph(Primitive):
    def __init__(self) -> None:
        super().__init__()
        root = self.sink("root")
        rows_out = self.source("rows")
        y_out = self.source("y")
        dim = self.config("n_rows", 32)
        scan_i = scanner.DenseScanner()
        scan_j = scanner.CompressedScanner()
        read_a = array.ArrayReader("a_vals")
        read_x = array.ArrayReader("x_vals")
        mul = alu.Alu()
        red = reduce.Reducer()
        self.submodules += scan_i, scan_j, read_a, read_x, mul, red
        self.rd_ports += scan_j.rd_ports + read_a.rd_ports + read_x.rd_ports
        (i_crd, i_ref), (j_crd, j_ref) = scan_i.sources, scan_j.sources
        self.comb += [
            scan_i.cfg[0].eq(dim),
            mul.cfg[0].eq(Op.FMUL),
            red.cfg[0].eq(Op.FADD),  # op; init 0 (+0.0) and level 0 stay at their reset value
            root.connect(scan_i.sinks[0]),
            i_crd.connect(rows_out),
            i_ref.connect(scan_j.sinks[0]),
            j_ref.connect(read_a.sinks[0]),
            j_crd.connect(read_x.sinks[0]),
            read_a.sources[0].connect(mul.sinks[0]),
            read_x.sources[0].connect(mul.sinks[1]),
            mul.sources[0].connect(red.sinks[0]),
            red.sources[0].connect(y_out),
        ]


@pytest.fixture(scope="module")
def sim():
    return StreamSim("chain_spmv", SpmvGraph())


def sequential_spmv(A: sp.csr_array, x: np.ndarray) -> np.ndarray:
    """The graph's arithmetic: per row, acc = +0; acc = fadd(acc, fmul(a, x[j])) in order."""
    y = np.zeros(A.shape[0], dtype=np.uint32)
    xb = x.view(np.uint32)
    for r in range(A.shape[0]):
        acc = np.zeros(1, np.uint32)
        lo, hi = A.indptr[r], A.indptr[r + 1]
        for q in range(lo, hi):
            p = fp32.model_mul(A.data[q : q + 1].view(np.uint32), xb[A.indices[q]][None])
            acc = fp32.model_add(acc, p)
        y[r] = acc[0]
    return y


@pytest.mark.parametrize("seed", range(3))
def test_spmv_graph_matches_scipy(sim, seed):
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(1, 60)), int(rng.integers(1, 60))
    A = sp.random_array((n, m), density=0.15, format="csr", dtype=np.float32, rng=rng)
    A.sort_indices()
    x = rng.standard_normal(m).astype(np.float32)
    res = sim.run(
        [parse("0 D")],
        cfg={"n_rows": n},
        rmem={
            "seg0": A.indptr.astype(np.uint32),
            "seg1": A.indptr.astype(np.uint32),
            "crd": np.append(A.indices, 0).astype(np.uint32),
            "a_vals": np.append(A.data, 0).astype(np.float32).view(np.uint32),
            "x_vals": x.view(np.uint32),
        },
        p_valid=0.5,
        p_ready=0.5,
        seed=seed,
    )
    rows, y = res.outputs
    assert rows == [Val(r) for r in range(n)] + [Stop(0), parse("D")[0]]
    # the row fibers end with S0 .. S0 S1; reducing level 0 leaves one sum per row, then S0
    assert y[-2:] == parse("S0 D") and len(y) == n + 2
    got = np.array([t.value for t in y[:-2]], dtype=np.uint32)
    assert np.array_equal(got, sequential_spmv(A, x))  # bit-exact with the defined order
    np.testing.assert_allclose(
        got.view(np.float32), A.astype(np.float64) @ x.astype(np.float64), rtol=1e-4, atol=1e-5
    )


def test_spmv_graph_one_nonzero_per_cycle(sim):
    n, m = 4, 1000
    A = sp.csr_array(np.ones((n, m), dtype=np.float32))
    x = np.ones(m, dtype=np.float32)
    seg = A.indptr.astype(np.uint32)
    res = sim.run(
        [parse("0 D")],
        cfg={"n_rows": n},
        rmem={
            "seg0": seg,
            "seg1": seg,
            "crd": A.indices.astype(np.uint32),
            "a_vals": A.data.view(np.uint32),
            "x_vals": x.view(np.uint32),
        },
    )
    got = np.array([t.value for t in res.outputs[1][:-2]], dtype=np.uint32).view(np.float32)
    assert np.array_equal(got, np.full(n, 1000.0, np.float32))
    assert res.cycles <= A.nnz + n + 12  # nonzeros + row stops + pipeline fill
