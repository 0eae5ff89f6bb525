"""The rtl device under hostile, concurrent and interrupted use: threads sharing one device,
Ctrl-C during a job, timeouts held for the whole call, closed devices and bad options, resets
that clear injected faults, tile shapes checked before packing, and progress for long work.
Every result is compared bit for bit with the emulator's."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

import fiberflow as ff
from fiberflow.errors import DeviceError, DTypeError, FiberflowError, TileShapeError
from fiberflow.host.images import job as jobs
from fiberflow.overlay.regmap import HOST

pytestmark = pytest.mark.rtl
pytest.importorskip("fiberflow.host.devices.rtl")


from test_rtl_device import same_bits  # noqa: E402


@pytest.fixture(scope="module")
def rtl():  # type: ignore[no-untyped-def]
    dev = ff.open("rtl", dtype=("float32", "int32"))
    yield dev
    dev.close()


@pytest.fixture(scope="module")
def emu():  # type: ignore[no-untyped-def]
    return ff.open("emu")


def small(seed: int, m: int = 150, n: int = 120) -> sp.csr_array:
    r = np.random.default_rng(seed)
    return sp.csr_array(sp.random_array((m, n), density=0.05, rng=r, dtype=np.float32))


# An SpMM of LONG_A with LONG_B runs as 4 jobs (k = 8 each), about a million cycles (seconds of
# simulation): long enough to interrupt and to time out at 1 s, short enough for a test.
LONG_A = sp.csr_array(sp.random_array((4000, 4000), density=0.004, rng=5, dtype=np.float32))
LONG_X = np.random.default_rng(6).standard_normal(4000).astype(np.float32)
LONG_B = np.random.default_rng(7).standard_normal((4000, 32)).astype(np.float32)


def check_ready(rtl, emu) -> None:  # type: ignore[no-untyped-def]
    A = small(99)
    x = np.random.default_rng(98).standard_normal(A.shape[1]).astype(np.float32)
    assert same_bits(ff.spmv(A, x, device=rtl, timeout=30), ff.spmv(A, x, device=emu))


# -- threads ----------------------------------------------------------------------------------


def test_four_threads_share_one_device(rtl, emu) -> None:  # type: ignore[no-untyped-def]
    calls = 12
    work: list[list[tuple[str, Any, np.ndarray]]] = []
    for t in range(4):
        mine = []
        for i in range(calls):
            A = small(100 * t + i, 60 + 7 * i, 50 + 5 * t)
            r = np.random.default_rng(1000 * t + i)
            if i % 3 == 2:
                B = r.standard_normal((A.shape[1], 1 + i % 5)).astype(np.float32)
                mine.append(("spmm", A, B))
            else:
                mine.append(("spmv", A, r.standard_normal(A.shape[1]).astype(np.float32)))
        work.append(mine)
    want = [[getattr(ff, k)(A, d, device=emu) for k, A, d in mine] for mine in work]
    got: list[list[np.ndarray]] = [[] for _ in work]
    errors: list[BaseException] = []

    def run(t: int) -> None:
        try:
            for i, (kernel, A, d) in enumerate(work[t]):
                if i % 4 == 1:  # a resident matrix: put, use, free
                    h = rtl.put(A)
                    got[t].append(getattr(ff, kernel)(h, d, device=rtl, timeout=30))
                    h.free()
                else:
                    got[t].append(getattr(ff, kernel)(A, d, device=rtl, timeout=30))
        except BaseException as exc:
            errors.append(exc)

    start = time.monotonic()
    threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads), "threads still running after 120 s"
    elapsed = time.monotonic() - start
    assert not errors, errors
    for t in range(4):
        assert len(got[t]) == calls
        for g, w in zip(got[t], want[t], strict=True):
            assert same_bits(g, w)
    assert elapsed < 60


# -- interrupts -------------------------------------------------------------------------------


def test_keyboard_interrupt_in_the_polling_loop(rtl, emu, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    h = rtl.put(LONG_A)
    polls = [0]
    real_poll = rtl.shell.poll

    def poll(*args: Any) -> Any:
        if args[0] != HOST.offset("STATUS"):  # the reset's wait for the DMA engines' drain
            return real_poll(*args)
        polls[0] += 1
        if polls[0] == 3:
            raise KeyboardInterrupt
        return real_poll(*args)

    monkeypatch.setattr(rtl.shell, "poll", poll)
    with pytest.raises(KeyboardInterrupt):
        ff.spmv(h, LONG_X, device=rtl, timeout=60)
    monkeypatch.undo()
    assert polls[0] == 3
    # The next job, with buffers at the addresses the interrupted one had, is right.
    assert same_bits(
        ff.spmv(h, LONG_X, device=rtl, timeout=60), ff.spmv(LONG_A, LONG_X, device=emu)
    )
    h.free()
    check_ready(rtl, emu)


def test_ctrl_c_during_a_job(rtl, emu) -> None:  # type: ignore[no-untyped-def]
    """A real SIGALRM whose handler raises KeyboardInterrupt, as Ctrl-C's does, 0.2 s into a
    split SpMM (several seconds)."""
    h = rtl.put(LONG_A)

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    start = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(KeyboardInterrupt):
            ff.spmm(h, LONG_B, device=rtl, timeout=60)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - start < 2.0  # it stopped at once, not at the end of the job
    assert same_bits(
        ff.spmm(h, LONG_B[:, :3], device=rtl), ff.spmm(LONG_A, LONG_B[:, :3], device=emu)
    )
    h.free()
    check_ready(rtl, emu)


# -- timeouts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [0.3, 1.0])
def test_timeout_holds_for_a_split_spmm(rtl, emu, timeout: float) -> None:  # type: ignore[no-untyped-def]
    h = rtl.put(LONG_A)
    start = time.monotonic()
    with pytest.raises(ff.DeviceTimeoutError, match="the device was reset and is ready"):
        ff.spmm(h, LONG_B, device=rtl, timeout=timeout)
    elapsed = time.monotonic() - start
    assert elapsed <= timeout * 1.1 + 0.2, elapsed
    h.free()
    check_ready(rtl, emu)


def test_timeout_holds_for_spmv(rtl, emu) -> None:  # type: ignore[no-untyped-def]
    h = rtl.put(LONG_A)
    start = time.monotonic()
    with pytest.raises(ff.DeviceTimeoutError):
        ff.spmv(h, LONG_X, device=rtl, timeout=0.05)
    assert time.monotonic() - start <= 0.05 * 1.1 + 0.2
    h.free()
    check_ready(rtl, emu)


@pytest.mark.parametrize("bad", ["5", -1.0, 0, math.nan, math.inf, None, True])
def test_bad_timeouts_are_device_errors(rtl, bad: Any) -> None:  # type: ignore[no-untyped-def]
    A = small(3)
    with pytest.raises(DeviceError, match="timeout must be"):
        ff.spmv(A, np.ones(A.shape[1], np.float32), device=rtl, timeout=bad)


# -- faults and resets ------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["dma_error", "hang_ddr", "hang_lanes", "hang_cpu"])
def test_reset_clears_every_fault(rtl, emu, fault: str) -> None:  # type: ignore[no-untyped-def]
    A = small(4)
    h = rtl.put(A)
    rtl.inject(fault, h.buffer if fault == "dma_error" else None)
    rtl.reset()
    x = np.ones(A.shape[1], np.float32)
    assert same_bits(ff.spmv(h, x, device=rtl, timeout=5), ff.spmv(A, x, device=emu))
    h.free()


@pytest.mark.parametrize("fault", ["dma_error", "hang_ddr"])
def test_a_fault_fails_one_job(rtl, emu, fault: str) -> None:  # type: ignore[no-untyped-def]
    A = small(5)
    h = rtl.put(A)
    rtl.inject(fault, h.buffer if fault == "dma_error" else None)
    x = np.ones(A.shape[1], np.float32)
    with pytest.raises(DeviceError, match=r"DMA_READ|DMA_TIMEOUT"):
        ff.spmv(h, x, device=rtl, timeout=30)
    assert same_bits(ff.spmv(h, x, device=rtl, timeout=5), ff.spmv(A, x, device=emu))
    h.free()


# -- closed devices and bad options -----------------------------------------------------------


def test_a_closed_device_says_so() -> None:
    dev = ff.open("rtl", lanes=4)
    buf = dev.alloc(64)
    A = small(6)
    dev.close()
    dev.close()  # twice is fine
    calls = [
        lambda: dev.alloc(16),
        lambda: dev.free(buf),
        lambda: dev.memory_used,
        lambda: dev.find(buf.address),
        lambda: dev.read_reg(0),
        lambda: dev.write_reg(0, 0),
        lambda: dev.load_overlay(),
        lambda: dev.reset(),
        lambda: dev.inject(None),
        lambda: dev.submit(buf),
        lambda: dev.wait(1),
        lambda: dev.put(A),
        lambda: dev.tile_limits(),
        lambda: dev.check_tile((8, 8)),
        lambda: dev.pack_to_fit(None),
        lambda: ff.spmv(A, np.ones(A.shape[1], np.float32), device=dev),
    ]
    for call in calls:
        with pytest.raises(DeviceError, match=r"closed; open a new one with ff\.open\('rtl'"):
            call()
    assert "RtlDevice" in repr(dev)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"lanes": "4"}, "lanes must be an integer"),
        ({"lanes": 0}, "lanes must be an integer"),
        ({"lanes": True}, "lanes must be an integer"),
        ({"dtype": "float64"}, "dtype must be 'float32', 'int32'"),
        ({"dtype": 3}, "dtype must be"),
        ({"board": "no-such-board"}, "unknown board 'no-such-board'; known boards"),
        ({"board": 7}, "board must be a board name"),
        ({"clock": 100}, "unexpected keyword argument 'clock'"),
        ({"tile_bytes": "big"}, "tile_bytes must be an integer"),
        ({"dma_engines": 1.5}, "dma_engines must be an integer"),
        ({"max_k": 65}, "max_k must be 1..64"),
        ({"bus_bits": 33}, "bus_bits must be 64 or 128"),
        ({"ddr": "fast"}, "ddr must be a fiberflow.host.devices.rtl.DdrModel"),
    ],
)
def test_bad_options_are_fiberflow_errors(options: dict[str, Any], match: str) -> None:
    with pytest.raises(FiberflowError, match=match):
        ff.open("rtl", **options)


def test_without_the_hw_extra_the_error_says_how_to_get_it() -> None:
    code = (
        "import sys; sys.modules['migen'] = None\n"
        "import fiberflow as ff\n"
        "from fiberflow.errors import ToolchainError\n"
        "try:\n"
        "    ff.open('rtl')\n"
        "except ToolchainError as exc:\n"
        "    print('ToolchainError:', exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "ToolchainError:" in out.stdout, out.stdout + out.stderr
    assert "pip install 'fiberflow[hw]'" in out.stdout


# -- tile shapes ------------------------------------------------------------------------------


def test_tiles_too_large_are_refused_before_packing(rtl) -> None:  # type: ignore[no-untyped-def]
    i = rtl.driver.info
    rows, cols = i.y_bytes // 4, i.x_bytes // 4
    with pytest.raises(TileShapeError, match=rf"tile=\({rows}, {cols}\)"):
        rtl.check_tile((4 * rows, 4 * cols))
    assert rtl.check_tile((rows, cols)) == (rows, cols)
    # Not whole bus beats: x slices start mid-beat, so one column less than a beat fits.
    step = i.bus_bytes // 4
    assert rtl.check_tile((rows - step + 1, cols - step + 1))
    with pytest.raises(TileShapeError):
        rtl.check_tile((rows, cols + 1))
    with pytest.raises(TileShapeError):
        rtl.check_tile((rows + 1, cols))
    A = sp.csr_array(sp.random_array((50, 3 * cols), density=0.001, rng=0, dtype=np.float32))
    with pytest.raises(TileShapeError, match="does not fit"):
        rtl.put(A, tile=(50, cols + 8))
    with pytest.raises(TileShapeError, match="does not fit"):  # a temporary resident matrix
        ff.spmv(A, np.ones(A.shape[1], np.float32), device=rtl, tile=(50, cols + 8))
    # A tile of a shape that fits, with more nonzeros than a tile buffer holds.
    B = sp.csr_array(sp.random_array((5000, 9000), density=0.0005, rng=1, dtype=np.float32))
    with pytest.raises(TileShapeError, match="more than a lane's 32,768-byte tile buffer"):
        rtl.put(B, tile=(4096, 4096))
    assert rtl.memory_used == 0
    # A tile larger than the matrix is cut to it first.
    assert rtl.check_tile((4096, 4 * cols), shape=(100, cols))
    for bad in [(0, 5), (5,), "big", (2.5, 4), None]:
        with pytest.raises(TileShapeError, match=r"at least 1|must be an integer|has 1 modes"):
            rtl.check_tile(bad)
    with pytest.raises(DTypeError, match="computes in float32 and int32, not float64"):
        rtl.check_tile((8, 8), "float64")


def test_the_largest_tiles_run(rtl, emu) -> None:  # type: ignore[no-untyped-def]
    i = rtl.driver.info
    rows, cols = i.y_bytes // 4, i.x_bytes // 4
    step = i.bus_bytes // 4
    r = np.random.default_rng(8)
    A = sp.csr_array(
        sp.random_array((rows + 40, 2 * cols + 9), density=2e-5, rng=r, dtype=np.float32)
    )
    x = r.standard_normal(A.shape[1]).astype(np.float32)
    B = r.standard_normal((A.shape[1], 3)).astype(np.float32)
    for tile in [(rows, cols), (rows - step + 1, cols - step + 1)]:
        h = rtl.put(A, tile=tile)
        assert same_bits(ff.spmv(h, x, device=rtl), ff.spmv(A, x, device=emu, tile=tile))
        assert same_bits(ff.spmm(h, B, device=rtl), ff.spmm(A, B, device=emu, tile=tile))
        h.free()


# -- progress ---------------------------------------------------------------------------------


def test_long_jobs_show_cycles_short_ones_stay_quiet(rtl, emu, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FIBERFLOW_PROGRESS", "1")
    start = time.monotonic()
    check_ready(rtl, emu)
    took = time.monotonic() - start
    assert took < 0.5  # a short job ...
    assert "rtl job" not in capsys.readouterr().err  # ... stays quiet
    h = rtl.put(LONG_A)
    start = time.monotonic()
    ff.spmm(h, LONG_B, device=rtl, timeout=60)
    took = time.monotonic() - start
    h.free()
    err = capsys.readouterr().err
    # Past half a second the bar appears (between 0.5 and 1 s it may not have been drawn yet).
    if took > 1.0:
        assert "rtl job" in err and "cycle" in err
    elif took < 0.5:
        assert "rtl job" not in err


def test_the_verilator_build_is_a_stage_only_when_it_builds(rtl, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from fiberflow import progress
    from fiberflow.host.devices.rtl import build_shell
    from fiberflow.overlay.sim import verilator_build

    stages: list[str] = []
    real = progress.stage

    def stage(desc: str, note: str = "") -> Any:
        stages.append(desc)
        return real(desc, note)

    monkeypatch.setattr(progress, "stage", stage)
    cfg = rtl.config
    build_shell(cfg)  # built by the module's device: a cache hit
    assert stages == []

    class Built(Exception):
        pass

    def build_into(*args: Any) -> None:
        raise Built

    monkeypatch.setenv("FIBERFLOW_CACHE", str(tmp_path))  # an empty cache: it builds
    monkeypatch.setattr(verilator_build, "_build_into", build_into)
    with pytest.raises(Built):
        build_shell(cfg)
    assert stages == ["building the Verilator model of the overlay"]


# -- outputs over inputs ----------------------------------------------------------------------


@pytest.mark.parametrize("over", ["matrix image", "dense input", "descriptor"])
def test_firmware_refuses_an_output_over_an_input(rtl, emu, over: str) -> None:  # type: ignore[no-untyped-def]
    """A hand-written descriptor whose y range overlaps A's image, x or the descriptor: the
    firmware refuses it (BAD_JOB at y_addr's offset, 56) before writing a byte, and the
    inputs are intact afterwards."""
    A = small(20)
    x = np.random.default_rng(21).standard_normal(A.shape[1]).astype(np.float32)
    h = rtl.put(A)
    table, tiles = h.schedule(rtl.lanes, 1)
    xb = rtl.alloc(x.nbytes)
    xb.write(x)
    jb = rtl.alloc(jobs.descriptor_bytes(len(table), len(tiles)))
    y_addr = {"matrix image": h.buffer, "dense input": xb, "descriptor": jb}[over].address
    jobs.write_descriptor(
        jb.array, kernel="spmv", dtype=h.dtype, m=A.shape[0], n=A.shape[1], k=1,
        a_addr=h.buffer.address, a_bytes=h.image_bytes, x_addr=xb.address, y_addr=y_addr,
        lane_table=table, tile_list=tiles,
    )  # fmt: skip
    image, desc = h.buffer.array.copy(), jb.array.copy()
    with pytest.raises(DeviceError, match=r"BAD_JOB.*info 0x38"):
        rtl.wait(rtl.submit(jb), 20)
    assert np.array_equal(h.buffer.array, image) and np.array_equal(jb.array, desc)
    assert np.array_equal(xb.view(np.float32, x.size), x)
    assert same_bits(ff.spmv(h, x, device=rtl), ff.spmv(A, x, device=emu))
    for b in (xb, jb):
        rtl.free(b)
    h.free()


def test_a_closed_device_can_be_collected() -> None:
    """Migen's signal naming keeps every object it meets on the stack; opening a device
    must not leave the device (and its model) reachable after close."""
    import gc
    import weakref

    refs = []
    for _ in range(3):
        dev = ff.open("rtl")
        dev.close()
        refs.append(weakref.ref(dev))
        del dev
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
