"""The pynq device (on a simulated board, through the real pynq package) under concurrent and
interrupted use, as tests/test_rtl_robust.py does for the rtl device: threads sharing one
device, Ctrl-C in its wait loop, one timeout per call, closed devices, tile checks. Marked
``board``: run with an interpreter that has pynq (``python -m pytest -m board``)."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.boards import build
from fiberflow.boards import load as load_board
from fiberflow.errors import DeviceError, TileShapeError

pynq = pytest.importorskip("pynq")
pytestmark = pytest.mark.board

BOARD = "zcu104" if int(pynq.__version__.split(".")[0]) >= 4 else "pynq-z2"


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp(BOARD)
    build.generate(load_board(BOARD), {"kernels": ("spmv", "spmm")}, out)
    d = ff.open("pynq", overlay=str(out), emulate=True)
    yield d
    d.close()


@pytest.fixture(scope="module")
def emu(dev):  # type: ignore[no-untyped-def]
    return ff.open("emu", lanes=dev.lanes)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def small(seed: int, m: int = 90, n: int = 70) -> sp.csr_array:
    r = np.random.default_rng(seed)
    return sp.csr_array(sp.random_array((m, n), density=0.05, rng=r, dtype=np.float32))


# A job of about a million cycles (an SpMM with LONG_B: seconds of simulation).
LONG_A = sp.csr_array(sp.random_array((4000, 4000), density=0.004, rng=5, dtype=np.float32))
LONG_X = np.random.default_rng(6).standard_normal(4000).astype(np.float32)
LONG_B = np.random.default_rng(7).standard_normal((4000, 16)).astype(np.float32)


def check_ready(dev, emu) -> None:  # type: ignore[no-untyped-def]
    A = small(99)
    x = np.random.default_rng(98).standard_normal(A.shape[1]).astype(np.float32)
    assert same_bits(ff.spmv(A, x, device=dev, timeout=30), ff.spmv(A, x, device=emu))


def test_threads_share_one_device(dev, emu) -> None:  # type: ignore[no-untyped-def]
    work = [[small(10 * t + i, 40 + 9 * i) for i in range(5)] for t in range(3)]
    xs = [[np.ones(A.shape[1], np.float32) * (t + 1) for A in row] for t, row in enumerate(work)]
    want = [
        [ff.spmv(A, x, device=emu) for A, x in zip(row, xr, strict=True)]
        for row, xr in zip(work, xs, strict=True)
    ]
    got: list[list[np.ndarray]] = [[] for _ in work]
    errors: list[BaseException] = []

    def run(t: int) -> None:
        try:
            for A, x in zip(work[t], xs[t], strict=True):
                got[t].append(ff.spmv(A, x, device=dev, timeout=60))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=180)
    assert not any(th.is_alive() for th in threads)
    assert not errors, errors
    for g, w in zip(got, want, strict=True):
        assert len(g) == len(w) and all(same_bits(a, b) for a, b in zip(g, w, strict=True))


def test_keyboard_interrupt_in_the_wait_loop(dev, emu, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    h = dev.put(LONG_A)
    port = dev._driver.port
    calls = [0]
    real = port.elapse

    def elapse(cycles: int) -> None:
        calls[0] += 1
        if calls[0] == 5:
            raise KeyboardInterrupt
        real(cycles)

    monkeypatch.setattr(port, "elapse", elapse)
    with pytest.raises(KeyboardInterrupt):
        ff.spmv(h, LONG_X, device=dev, timeout=60)
    monkeypatch.undo()
    want = ff.spmv(LONG_A, LONG_X, device=emu, tile=h.tile)
    assert same_bits(ff.spmv(h, LONG_X, device=dev, timeout=120), want)
    h.free()


def test_timeout_holds(dev, emu) -> None:  # type: ignore[no-untyped-def]
    h = dev.put(LONG_A)
    start = time.monotonic()
    with pytest.raises(ff.DeviceTimeoutError):
        ff.spmm(h, LONG_B, device=dev, timeout=0.2)
    assert time.monotonic() - start <= 0.2 * 1.1 + 0.2
    h.free()
    check_ready(dev, emu)


def test_tiles_too_large_are_refused(dev) -> None:  # type: ignore[no-untyped-def]
    i = dev.info
    with pytest.raises(TileShapeError, match=rf"tile=\({i.y_bytes // 4}, {i.x_bytes // 4}\)"):
        dev.put(small(3, 5000, 5000), tile=(5000, 5000))
    assert dev.check_tile((i.y_bytes // 4, i.x_bytes // 4))


def test_a_closed_device_says_so(dev) -> None:  # type: ignore[no-untyped-def]
    other = ff.open("pynq", overlay=str(dev.folder), emulate=True)
    other.close()
    calls: list[Any] = [
        lambda: other.alloc(16),
        lambda: other.read_reg(0),
        lambda: other.wait(1),
        lambda: other.reset(),
        lambda: ff.spmv(small(4), np.ones(70, np.float32), device=other),
    ]
    for call in calls:
        with pytest.raises(DeviceError, match="pynq device is closed"):
            call()


def test_a_broken_axi_rule_fails_on_a_simulated_board(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The simulated board's DDR model checks the overlay's memory ports as the rtl device's
    does: with its longest burst set below the engines' 16 beats, a job raises."""
    from fiberflow.host.devices.rtl import DdrModel

    build.generate(load_board(BOARD), {"kernels": ("spmv",)}, tmp_path)
    A = small(5)
    x = np.ones(A.shape[1], dtype=np.float32)
    with ff.open("pynq", overlay=str(tmp_path), emulate=True, ddr=DdrModel(max_burst_beats=8)) as d:
        with pytest.raises(DeviceError, match="burst longer than the port allows"):
            ff.spmv(A, x, device=d, timeout=60)
