"""The dask device: row blocks on the workers of a LocalCluster, bit-identical to one device,
shipping only what each block touches, and surviving a worker killed during a call."""

from __future__ import annotations

import itertools
import os
import signal
import threading

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fiberflow as ff
from fiberflow import datasets
from fiberflow.errors import DeviceError, ShapeError

# distributed's own sockets, closed by its garbage collection rather than by its close(), would
# otherwise fail the tests that start and stop clusters under the suite's warnings-as-errors
pytestmark = pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)
distributed = pytest.importorskip(
    "distributed", reason="the dask extra: pip install 'fiberflow[dask]'"
)
from fiberflow.host.devices.dask_device import RESOURCE, choose_workers, row_blocks  # noqa: E402


@pytest.fixture(autouse=True)
def _short_connect_timeout():
    """A lost worker's address is retried for Dask's connect timeout (30 s by default) by
    whatever still calls it; a test need not wait that long."""
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "5s"}):
        yield


def _cluster(n: int, **kw: object):
    cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", **kw)  # fmt: skip
    return cluster, distributed.Client(cluster)


@pytest.fixture(scope="module")
def client():
    cluster, c = _cluster(3)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def dev(client):
    with ff.open("dask", client=client, device="emu") as d:
        yield d


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32 if a.dtype == np.float32 else np.int32)


def _matrices() -> dict[str, sp.csr_array]:
    rng = np.random.default_rng(3)
    empty_rows = sp.random_array((500, 300), density=0.02, format="csr", dtype=np.float32, rng=4)
    empty_rows = sp.csr_array(empty_rows.multiply((np.arange(500) % 7 != 0)[:, None]))
    return {
        "poisson2d_32": sp.csr_array(datasets.load("poisson2d_32"), dtype=np.float32),
        "powerlaw_2000": sp.csr_array(datasets.load("powerlaw_2000"), dtype=np.float32),
        "random": sp.random_array((3000, 2000), density=0.004, format="csr", rng=rng).astype(
            np.float32
        ),
        "empty rows": empty_rows,
        "one row": sp.csr_array(np.array([[0, 1.5, 0, -2.0]], np.float32)),
        "no nonzeros": sp.csr_array((40, 30), dtype=np.float32),
        "int32": sp.csr_array(sp.random_array((400, 400), density=0.05, rng=5) * 100).astype(
            np.int32
        ),
    }


@pytest.mark.parametrize("name", list(_matrices()))
def test_results_are_bit_identical_to_one_device(dev, name: str) -> None:
    A = _matrices()[name]
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(A.shape[1]) * 10).astype(A.dtype)
    B = (rng.standard_normal((A.shape[1], 5)) * 10).astype(A.dtype)
    with ff.open("emu") as one:
        want_y, want_c = ff.spmv(A, x, device=one), ff.spmm(A, B, device=one)
    with dev.put(A) as h:
        assert h.shape == A.shape and h.nnz == A.nnz
        np.testing.assert_array_equal(_bits(ff.spmv(h, x, device=dev)), _bits(want_y))
        np.testing.assert_array_equal(_bits(h @ B), _bits(want_c))
    # packed per call, as ff.spmv(A, x) on one device
    np.testing.assert_array_equal(_bits(ff.spmv(A, x, device=dev)), _bits(want_y))


def test_blocks_ship_only_the_x_they_touch(dev) -> None:
    A = sp.csr_array(datasets.load("poisson2d_32"), dtype=np.float32)
    x = np.ones(A.shape[1], np.float32)
    with dev.put(A) as h:
        h @ x
    s = dev.last_stats
    assert len(s.per_worker) == 3
    nnz = [sum(r.nnz for r in v) for v in s.per_worker.values()]
    assert sum(nnz) == A.nnz and max(nnz) - min(nnz) <= 0.01 * A.nnz + 10  # balanced
    assert s.bytes_shipped <= 1.2 * s.bytes_touched  # the goal
    # a banded matrix's blocks touch their own band and its edges: a third of x each, and more
    assert s.bytes_touched < 0.4 * s.bytes_broadcast
    assert s.cycles == max(sum(r.cycles for r in v) for v in s.per_worker.values())
    assert s.energy_j == pytest.approx(sum(r.energy_j for _, r in s.blocks))
    assert "shipped" in s.summary()


def test_solvers_run_on_the_sharded_matrix(dev) -> None:
    A, b = datasets.fem_poisson(20)
    A32, b32 = sp.csr_array(A, dtype=np.float32), b.astype(np.float32)
    iterations = []
    for op in (
        ff.aslinearoperator(A32, device=dev),
        ff.aslinearoperator(A32, device=ff.open("emu")),
    ):
        steps: list[int] = []
        sla.cg(op, b32, rtol=1e-5, callback=lambda _, steps=steps: steps.append(1))
        iterations.append(len(steps))
    assert iterations[0] == iterations[1] > 5
    with dev.put(A32) as h:
        with ff.open("emu") as one:
            want = ff.spmv(sp.csr_array(A32.T), b32, device=one)
        np.testing.assert_array_equal(_bits(h.T @ b32), _bits(want))


def test_a_worker_killed_during_a_call_never_gives_a_wrong_answer() -> None:
    cluster, client = _cluster(3)
    try:
        dev = ff.open("dask", client=client, device="emu")
        A = sp.random_array((60000, 60000), density=5e-4, format="csr", dtype=np.float32, rng=1)
        B = np.random.default_rng(1).standard_normal((60000, 96)).astype(np.float32)
        with ff.open("emu") as one:
            want = ff.spmm(A, B, device=one)
        h = dev.put(A)
        victim = dev.shards[1].pid().result()
        killer = threading.Timer(0.3, os.kill, (victim, signal.SIGKILL))
        killer.start()
        try:
            got = h @ B
        except DeviceError:
            got = None  # allowed: a clear error instead of an answer
        killer.join()
        retries = dev.last_stats.retries if got is not None else 0
        if got is not None:
            np.testing.assert_array_equal(_bits(got), _bits(want))
        again = h @ B  # the device still works, on the workers left
        np.testing.assert_array_equal(_bits(again), _bits(want))
        retries += dev.last_stats.retries
        assert retries >= 1 and dev.alive.count(False) == 1
        dev.close()
    finally:
        client.close()
        cluster.close()


def test_with_every_worker_lost_a_call_says_so() -> None:
    cluster, client = _cluster(2)
    try:
        dev = ff.open("dask", client=client, device="emu")
        A = sp.random_array((300, 300), density=0.05, format="csr", dtype=np.float32, rng=2)
        h = dev.put(A)
        for s in dev.shards:
            os.kill(s.pid().result(), signal.SIGKILL)
        with pytest.raises(DeviceError, match="every worker of this dask device is lost"):
            h @ np.ones(300, np.float32)
        dev.close()
    finally:
        client.close()
        cluster.close()


def test_bad_calls_fail_on_the_host_with_clear_errors(client, dev) -> None:
    with pytest.raises(DeviceError, match="needs client="):
        ff.open("dask")
    with pytest.raises(DeviceError, match="names what each worker opens"):
        ff.open("dask", client=client, device="dask")
    with pytest.raises(DeviceError, match="could not open a 'emu' device"):
        ff.open("dask", client=client, device="emu", lanes=99)
    with pytest.raises(DeviceError, match="no such worker"):
        ff.open("dask", client=client, workers=["tcp://127.0.0.1:1"])
    A = sp.random_array((50, 40), density=0.1, format="csr", dtype=np.float32, rng=0)
    held = [s.held().result() for s in dev.shards]
    h = dev.put(A)
    assert sum(s.held().result() for s in dev.shards) == sum(held) + 3
    with pytest.raises(ShapeError, match="x has length 39"):
        h @ np.ones(39, np.float32)
    h.free()
    with pytest.raises(DeviceError, match="not resident on this dask device"):
        ff.spmv(h, np.ones(40, np.float32), device=dev)
    assert [s.held().result() for s in dev.shards] == held  # freed on every worker


def test_workers_advertising_fpga_are_chosen() -> None:
    info = {"tcp://a:1": {"resources": {}}, "tcp://b:1": {"resources": {RESOURCE: 1}},
            "tcp://c:1": {"resources": {RESOURCE: 1}}}  # fmt: skip
    assert choose_workers(info) == (["tcp://b:1", "tcp://c:1"], {RESOURCE: 1})
    none = {k: {"resources": {}} for k in info}
    assert choose_workers(none) == (sorted(info), None)
    assert choose_workers(info, ["tcp://a:1"]) == (["tcp://a:1"], None)
    with pytest.raises(DeviceError, match="no workers"):
        choose_workers({})
    cluster, client = _cluster(2, resources={RESOURCE: 1})
    try:
        with ff.open("dask", client=client) as d:
            assert len(d.workers) == 2 and d._resources == {RESOURCE: 1}
            A = sp.random_array((200, 200), density=0.05, format="csr", dtype=np.float32, rng=1)
            with ff.open("emu") as one:
                np.testing.assert_array_equal(
                    _bits(ff.spmv(A, np.ones(200, np.float32), device=d)),
                    _bits(ff.spmv(A, np.ones(200, np.float32), device=one)),
                )
    finally:
        client.close()
        cluster.close()


def test_row_blocks_cover_every_row_with_balanced_nonzeros() -> None:
    indptr = np.concatenate([[0], np.cumsum(np.random.default_rng(0).integers(0, 20, 1000))])
    blocks = row_blocks(indptr, 4)
    assert blocks[0][0] == 0 and blocks[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in itertools.pairwise(blocks))
    per = [indptr[r1] - indptr[r0] for r0, r1 in blocks]
    assert max(per) - min(per) <= 2 * 20
    assert row_blocks(np.array([0]), 3) == []
    assert row_blocks(np.array([0, 5]), 3) == [(0, 1)]


@pytest.mark.rtl
def test_rtl_workers_are_bit_identical_to_the_emulator() -> None:
    cluster, client = _cluster(2)
    try:
        A = sp.csr_array(datasets.load("poisson2d_32"), dtype=np.float32)
        x = np.random.default_rng(0).standard_normal(A.shape[1]).astype(np.float32)
        with ff.open("dask", client=client, device="rtl", timeout=600) as d, ff.open("emu") as one:
            y = ff.spmv(A, x, device=d)
            np.testing.assert_array_equal(_bits(y), _bits(ff.spmv(A, x, device=one)))
            assert all(not s.estimated for _, s in d.last_stats.blocks)
    finally:
        client.close()
        cluster.close()


def test_the_bench_reports_bytes_shipped_against_touched_and_broadcast() -> None:
    import argparse

    from fiberflow.bench import sharded
    from fiberflow.bench.counted import cases

    for kernel, cols in (("spmv", 1), ("spmm", 4)):
        args = argparse.Namespace(workers=2, worker_device="emu", scheduler=None, scale=0.02,
                                  repeat=1, cols=cols, overlay=None, emulate=False)  # fmt: skip
        report = sharded.run(args, kernel)
        assert len(report.rows) == len(cases(0.02)) and report.target == f"{kernel}-dask"
        for row in report.rows:
            shipped, touched, broadcast, ratio = row[4:8]
            assert touched <= broadcast and ratio == pytest.approx(shipped / touched)
            assert ratio <= 1.2  # the goal
            assert row[12] < row[11]  # the busiest worker's cycles, below one device's
        assert report.data["overhead_seconds"] > 0


def test_the_network_model_adds_the_busiest_block_the_bytes_and_the_overhead() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "scripts" / "distributed_model.py"
    spec = importlib.util.spec_from_file_location("distributed_model", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    A = sp.csr_array(datasets.load("poisson2d_32"), dtype=np.float32)
    with ff.open("emu") as dev:
        one = mod.model(A, 1, 1, 0.006, 117e6, dev)
        four = mod.model(A, 1, 4, 0.006, 117e6, dev)
    assert one["touched"] == 4 * A.shape[1]  # one block touches every column once
    assert four["touched"] > one["touched"]  # the bands' edges are shipped to both sides
    assert one["network"] == pytest.approx((one["touched"] + 4 * A.shape[0]) / 117e6)
    assert four["device"] < one["device"]
    assert four["total"] == pytest.approx(four["device"] + four["network"] + 0.006)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.integers(1, 300),
    cols=st.integers(1, 300),
    density=st.floats(0.0, 0.3),
    k=st.integers(1, 9),
    seed=st.integers(0, 2**31),
)
def test_any_matrix_gives_one_devices_bits(dev, rows: int, cols: int, density: float, k: int,
                                           seed: int) -> None:  # fmt: skip
    rng = np.random.default_rng(seed)
    A = sp.random_array((rows, cols), density=density, format="csr", rng=rng).astype(np.float32)
    B = rng.standard_normal((cols, k)).astype(np.float32)
    with ff.open("emu") as one:
        want = ff.spmm(A, B, device=one) if k > 1 else ff.spmv(A, B[:, 0], device=one)
    got = ff.spmm(A, B, device=dev) if k > 1 else ff.spmv(A, B[:, 0], device=dev)
    np.testing.assert_array_equal(_bits(got), _bits(want))


def test_a_handle_used_with_another_device_says_so(dev) -> None:
    A = sp.random_array((50, 50), density=0.1, format="csr", dtype=np.float32, rng=0)
    x = np.ones(50, np.float32)
    with ff.open("emu") as one:
        for h, other in ((dev.put(A), one), (one.put(A), dev)):
            with pytest.raises(DeviceError, match="already resident on a device"):
                ff.spmv(h, x, device=other)
            h.free()
