"""One emu device shared by many threads: every result right, no memory lost, close() safe.

The switch interval is made tiny so that threads are switched inside the device's methods
(the races these tests guard against showed as wrong results, spurious errors, leaked device
memory and crashes)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import scipy.sparse as sp

import fiberflow as ff

JOIN_TIMEOUT = 120.0


@pytest.fixture
def tiny_switch_interval() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def run_threads(target: Callable[[int], None], count: int) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(seed: int) -> None:
        try:
            target(seed)
        except BaseException as exc:  # reported by the test, with its thread's traceback
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(s,)) for s in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return errors


def matrix(rng: np.random.Generator) -> sp.csr_array:
    m, n = int(rng.integers(1, 120)), int(rng.integers(1, 90))
    A = sp.random_array((m, n), density=float(rng.uniform(0.01, 0.3)), format="csr", rng=rng)
    return sp.csr_array(A, dtype=np.float32)


def close(got: np.ndarray, A: sp.csr_array, x: np.ndarray) -> bool:
    want = A.astype(np.float64) @ x.astype(np.float64)
    return got.shape == want.shape and np.allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("threads", [4, 8])
def test_threads_sharing_a_device_get_right_results_and_free_everything(
    threads: int, tiny_switch_interval: None
) -> None:
    dev = ff.open("emu")
    checked = [0] * threads

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for i in range(240 // threads * 4):
            A = matrix(rng)
            x = rng.standard_normal(A.shape[1]).astype(np.float32)
            kind = i % 3
            if kind == 0:  # a temporary resident matrix, put and freed inside the call
                y = ff.spmv(A, x, device=dev)
                assert close(y, A, x), "wrong SpMV result"
            elif kind == 1:  # a resident matrix, used twice, freed explicitly
                h = dev.put(A)
                assert close(ff.spmv(h, x, device=dev), A, x), "wrong resident SpMV result"
                x2 = -x
                assert close(ff.spmv(h, x2, device=dev), A, x2), "wrong resident SpMV result"
                h.free()
            else:  # plain buffers: what is written is read back
                data = rng.integers(0, 256, int(rng.integers(1, 5000)), dtype=np.uint8)
                b = dev.alloc(data.size)
                b.write(data)
                assert np.array_equal(b.array, data), "a buffer's bytes changed under it"
                dev.free(b)
            checked[seed] += 1

    errors = run_threads(work, threads)
    assert not errors, errors[:3]
    assert sum(checked) == threads * (240 // threads * 4)
    assert dev.memory_used == 0 and "buffers=0" in repr(dev)


def test_close_while_other_threads_work(tiny_switch_interval: None) -> None:
    rng = np.random.default_rng(1)
    A = sp.csr_array(sp.random_array((3000, 3000), density=0.01, rng=rng), dtype=np.float32)
    x = rng.standard_normal(3000).astype(np.float32)
    dev = ff.open("emu")
    h = dev.put(A)
    started = threading.Barrier(4)
    outcomes: list[str] = []

    def work(seed: int) -> None:
        started.wait(JOIN_TIMEOUT)
        try:
            for _ in range(10_000):
                assert close(ff.spmv(h, x, device=dev), A, x), "wrong result before close"
        except ff.DeviceError:
            outcomes.append("refused")
        else:
            outcomes.append("finished")

    runner = threading.Thread(
        target=lambda: outcomes.extend(f"{e!r}" for e in run_threads(work, 3))
    )
    runner.start()
    started.wait(JOIN_TIMEOUT)
    time.sleep(0.05)
    dev.close()
    runner.join(JOIN_TIMEOUT)
    assert not runner.is_alive()
    assert outcomes.count("refused") == 3, outcomes
    assert dev.closed and dev.memory_used == 0 and h.freed
    with pytest.raises(ff.DeviceError, match="closed"):
        dev.alloc(16)
    dev.close()  # twice is fine


def test_wait_counts_the_time_spent_waiting_for_another_threads_job() -> None:
    dev = ff.open("emu")
    A = sp.csr_array(sp.eye_array(50, format="csr"), dtype=np.float32)
    h = dev.put(A)
    holding, release = threading.Event(), threading.Event()

    def hold_the_device() -> None:
        # Stands for a long job of another thread: wait() runs jobs holding this lock.
        with dev._run_lock:
            holding.set()
            release.wait(JOIN_TIMEOUT)

    t = threading.Thread(target=hold_the_device)
    t.start()
    try:
        assert holding.wait(JOIN_TIMEOUT)
        start = time.monotonic()
        with pytest.raises(ff.DeviceTimeoutError, match="other threads"):
            ff.spmv(h, np.ones(50, np.float32), device=dev, timeout=0.05)
        assert time.monotonic() - start < 0.05 * 1.1 + 0.2
    finally:
        release.set()
        t.join(JOIN_TIMEOUT)
    assert np.array_equal(ff.spmv(h, np.ones(50, np.float32), device=dev), np.ones(50))
