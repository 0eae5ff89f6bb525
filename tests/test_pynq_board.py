"""The board path through the real pynq package, on a simulated board (marked ``board``).

``ff.open("pynq", overlay=DIR, emulate=True)`` loads a ``fiberflow build`` folder with
``pynq.Overlay``, maps the control block with ``pynq.MMIO`` and allocates with
``pynq.allocate``, on a pynq ``Device`` whose registers and DDR are the rtl device's Verilator
shell. The code under test is the board device's own: only the PL is simulated.

Run with an interpreter that has pynq (CI installs it in its own virtualenv, since pynq pins
numpy < 2): ``python -m pytest -m board``. Skipped when pynq is not importable.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

pynq = pytest.importorskip("pynq")

import fiberflow as ff  # noqa: E402
from fiberflow.boards import build, hwh  # noqa: E402
from fiberflow.boards import load as load_board  # noqa: E402
from fiberflow.errors import DeviceError, DeviceTimeoutError, FiberflowError  # noqa: E402
from fiberflow.host.devices import pynq_sim  # noqa: E402
from fiberflow.overlay import regmap  # noqa: E402
from fiberflow.overlay.regmap import HOST  # noqa: E402

pytestmark = pytest.mark.board

# Each pynq release is tested on a board it supports: PYNQ 4.0 runs only on Zynq UltraScale+
# boards (the PYNQ-Z1/Z2 images end at 3.1).
PYNQ_MAJOR = int(pynq.__version__.split(".")[0])
BOARD, ARCH = ("zcu104", "aarch64") if PYNQ_MAJOR >= 4 else ("pynq-z2", "armv7l")

FFJ0 = regmap.JOB_MAGIC
COPY = 1


SMALL_LANES = {"kernels": ("spmv", "spmm"), "tile_bytes": 4096, "x_bytes": 1024, "y_bytes": 4096}


def _build(tmp_path_factory: pytest.TempPathFactory, board: str, **params: object) -> str:
    out = tmp_path_factory.mktemp(board)
    build.generate(load_board(board), params, out)
    return str(out)


@pytest.fixture(scope="module")
def board_folder(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The bare shell (placeholder lanes): the register, copy-job and fault tests need no
    datapath, and it simulates several times faster."""
    return _build(tmp_path_factory, BOARD, kernels=())


@pytest.fixture(scope="module")
def dev(board_folder: str):
    d = ff.open("pynq", overlay=board_folder, emulate=True)
    yield d
    d.close()


def _copy_job(dev, src, dst, nbytes: int, engine: int = 0):
    jb = dev.alloc(32)
    jb.write(np.array([FFJ0, COPY, src.address, dst.address, nbytes, engine, 0, 0], "<u4"))
    jb.flush()
    return jb


def _copy(dev, nbytes: int = 8192, seed: int = 0, timeout: float = 20.0):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 2**32, nbytes // 4, dtype=np.uint32)
    src, dst = dev.alloc(nbytes), dev.alloc(nbytes)
    src.write(data)
    src.flush()
    jb = _copy_job(dev, src, dst, nbytes)
    try:
        stats = dev.wait(dev.submit(jb), timeout=timeout)
        dst.invalidate()
        return data, dst.view("<u4").copy(), stats
    finally:
        for b in (src, dst, jb):
            dev.free(b)


# -- the emulation .hwh, parsed by pynq --------------------------------------------------------


class _RegisterFile:
    """A stand-in for the shell: plain registers (no Verilator), for the .hwh and clock checks."""

    def __init__(self) -> None:
        self.regs: dict[int, int] = {}

    def read_reg(self, offset: int) -> int:
        return self.regs.get(offset, 0)

    def write_reg(self, offset: int, value: int) -> None:
        self.regs[offset] = value

    def reset(self) -> None:
        self.regs.clear()


@pytest.mark.parametrize(
    ("board", "arch", "base"),
    [
        pytest.param(
            "pynq-z2",
            "armv7l",
            0x4000_0000,
            marks=pytest.mark.skipif(PYNQ_MAJOR >= 4, reason="PYNQ 4.0 dropped Zynq-7000 boards"),
        ),
        ("zcu104", "aarch64", 0xA000_0000),
    ],
)
def test_pynq_parses_the_emulation_hwh_and_sets_the_fabric_clock(
    tmp_path_factory: pytest.TempPathFactory, board: str, arch: str, base: int
) -> None:
    folder = _build(tmp_path_factory, board)
    manifest = json.loads(Path(folder, "manifest.json").read_text())
    span = manifest["overlay"]["control_range"]
    regs = _RegisterFile()
    pynq_sim.prepare_clocks()
    sim = pynq_sim.SimulatedPynqDevice(regs, arch=arch, control_base=base, control_range=span)
    ol = pynq.Overlay(f"{folder}/{hwh.EMULATION_DIR}/fiberflow.bit", device=sim)
    assert sim.downloads == 1
    ctrl = ol.ip_dict["overlay"]
    assert (ctrl["phys_addr"], ctrl["addr_range"]) == (base, span)
    assert ctrl["type"] == "xilinx.com:module_ref:fiberflow_overlay:1.0"
    assert ol.clock_dict[0]["enable"] == 1
    assert [ol.clock_dict[i]["enable"] for i in (1, 2, 3)] == [0, 0, 0]
    # pynq programmed the PS clock registers from the .hwh: fabric clock 0 at the board's rate
    assert sim.fabric_clock_mhz(0) == pytest.approx(manifest["board"]["fabric_clock_mhz"])
    # register accesses through pynq.MMIO reach the shell at the control base
    mmio = pynq.MMIO(base, span, device=sim)
    mmio.write(0x1C, 0x1234_5678)
    assert regs.regs[0x1C] == 0x1234_5678
    assert mmio.read(0x1C) == 0x1234_5678
    with pytest.raises(DeviceError, match="bus error"):
        pynq.MMIO(0x1000, 4, device=sim).read(0)


def test_divisors_match_what_vivado_would_pick() -> None:
    d0, d1 = hwh.divisors(1000.0, 100.0)
    assert 1000.0 / (d0 * d1) == 100.0
    d0, d1 = hwh.divisors(1500.0, 100.0)
    assert 1500.0 / (d0 * d1) == 100.0
    d0, d1 = hwh.divisors(1000.0, 142.0)
    assert abs(1000.0 / (d0 * d1) - 142.0) < 1.0


# -- the device: registers, jobs, errors ------------------------------------------------------


@pytest.mark.parametrize("older", [1, 0x10000])
def test_an_overlay_older_than_the_firmware_needs_is_refused(
    board_folder, monkeypatch, older
) -> None:  # type: ignore[no-untyped-def]
    """The shipped firmware relies on the register map's minor version (2.2: the lanes'
    arming): an overlay that reports an earlier minor, or another major, is refused at open."""
    from fiberflow.host.devices.pynq_device import PynqDevice

    read = PynqDevice.read_reg

    def read_reg(self, offset: int) -> int:  # type: ignore[no-untyped-def]
        value = read(self, offset)
        return value - older if offset == HOST.offset("VERSION") else value

    monkeypatch.setattr(PynqDevice, "read_reg", read_reg)
    with pytest.raises(DeviceError, match=r"register map is version .*rebuild the overlay"):
        ff.open("pynq", overlay=board_folder, emulate=True)


def test_open_reads_the_shell_through_pynq_mmio(dev) -> None:
    assert dev.read_reg(HOST.offset("ID")) == regmap.ID_MAGIC
    assert dev.read_reg(HOST.offset("VERSION")) == regmap.VERSION
    assert dev.lanes == dev.info.lanes == 4
    assert dev.clock_mhz == pytest.approx(100.0)
    board = load_board(BOARD)
    assert dev.control_base == board.control.base
    # the default build's engines, one HP port each, as many as reach the board's DDR
    # bandwidth: two 64-bit ports on a PYNQ-Z2, four 128-bit ports (one per lane) on a ZCU104
    engines = {"pynq-z2": 2, "zcu104": 4}[BOARD]
    assert dev.info.dma_engines == engines == build.default_params(board, 4)["dma_engines"]
    assert dev.bus_bytes_per_cycle == board.bus_bytes_per_cycle(engines)
    # The simulated device stays out of pynq's globals: never discovered, never active.
    with warnings.catch_warnings():  # off a board pynq warns that it found no device
        warnings.simplefilter("ignore", UserWarning)
        assert dev.pynq_device not in pynq.Device.devices
    assert getattr(pynq.Device, "_active_device", None) is not dev.pynq_device


def test_register_round_trip_through_pynq(dev) -> None:
    off = HOST.offset("JOB_ADDR")
    for value in (0, 0xFFFF_FFFF, 0xA5A5_5A5A, 0x1000_0040):
        dev.write_reg(off, value)
        assert dev.read_reg(off) == value
    # the same register seen through pynq's own driver for the overlay block
    mmio = pynq.MMIO(dev.control_base, dev.control_range, device=dev.pynq_device)
    assert mmio.read(off) == 0x1000_0040
    mmio.write(off, 0x2000_0080)
    assert dev.read_reg(off) == 0x2000_0080
    with pytest.raises(DeviceError, match="not a word"):
        dev.read_reg(0x3)
    with pytest.raises(DeviceError, match="not a word"):
        dev.write_reg(dev.control_range, 0)


def test_firmware_runs_and_heartbeat_moves(dev) -> None:
    hb = HOST.offset("HEARTBEAT")
    before = dev.read_reg(hb)
    dev.pynq_device.elapse(5000)
    assert dev.read_reg(hb) != before


def test_buffers_are_pynq_buffers_in_simulated_ddr(dev) -> None:
    buf = dev.alloc(100)
    assert isinstance(buf.pynq_buffer, pynq.buffer.PynqBuffer)
    assert buf.address == buf.pynq_buffer.device_address
    assert buf.nbytes == 100 and not buf.array.any()
    live = len(dev.pynq_device.shell._buffers)
    dev.free(buf)
    assert len(dev.pynq_device.shell._buffers) == live - 1
    with pytest.raises(DeviceError, match="free it once"):
        dev.free(buf)


@pytest.mark.parametrize("nbytes", [16, 4096, 12_288])  # whole beats of a 64- or 128-bit bus
def test_copy_job_bit_exact(dev, nbytes: int) -> None:
    data, out, stats = _copy(dev, nbytes, seed=nbytes)
    np.testing.assert_array_equal(out, data)
    assert not stats.estimated and stats.device == "pynq"
    c = dev.last_counters
    assert c.dma_read_bytes[0] >= nbytes and c.dma_write_bytes[0] == nbytes
    assert c.tiles_done == -(-nbytes // dev.info.tile_bytes)
    assert stats.cycles > nbytes // dev.info.bus_bytes


def test_dma_error_is_decoded_and_the_device_recovers(dev) -> None:
    src, dst = dev.alloc(4096), dev.alloc(4096)
    jb = _copy_job(dev, src, dst, 4096)
    shell = dev.pynq_device.shell
    shell.inject_dma_error(src.address, src.address + 4096, 2)
    try:
        with pytest.raises(DeviceError, match=r"DMA_READ.*SLVERR.*reset") as info:
            dev.wait(dev.submit(jb), timeout=20)
        assert not isinstance(info.value, DeviceTimeoutError)
    finally:
        shell.inject_dma_error(0, 0, 0)
        for b in (src, dst, jb):
            dev.free(b)
    data, out, _ = _copy(dev, 4096, seed=7)
    np.testing.assert_array_equal(out, data)


def test_bad_descriptor_is_decoded(dev) -> None:
    jb = dev.alloc(32)
    jb.write(np.array([FFJ0, 99, 0, 0, 0, 0, 0, 0], "<u4"))
    try:
        with pytest.raises(DeviceError, match="BAD_OPCODE"):
            dev.wait(dev.submit(jb), timeout=20)
    finally:
        dev.free(jb)
    data, out, _ = _copy(dev, 64, seed=8)
    np.testing.assert_array_equal(out, data)


def test_hung_firmware_times_out_and_the_device_recovers(dev) -> None:
    src, dst = dev.alloc(4096), dev.alloc(4096)
    jb = _copy_job(dev, src, dst, 4096)
    dev.pynq_device.shell.hold_cpu(True)
    try:
        with pytest.raises(DeviceTimeoutError, match=r"heartbeat stopped.*reset"):
            dev.wait(dev.submit(jb), timeout=1.0)
    finally:
        for b in (src, dst, jb):
            dev.free(b)
    data, out, _ = _copy(dev, 4096, seed=9)
    np.testing.assert_array_equal(out, data)


def test_hung_bus_times_out_and_the_device_recovers(dev) -> None:
    src, dst = dev.alloc(4096), dev.alloc(4096)
    jb = _copy_job(dev, src, dst, 4096)
    shell = dev.pynq_device.shell
    shell.hang_ddr(True)
    try:
        with pytest.raises(DeviceError, match=r"DMA_TIMEOUT|did not finish"):
            dev.wait(dev.submit(jb), timeout=5.0)
    finally:
        shell.hang_ddr(False)
        for b in (src, dst, jb):
            dev.free(b)
    data, out, _ = _copy(dev, 4096, seed=10)
    np.testing.assert_array_equal(out, data)


def test_wait_checks_its_arguments(dev) -> None:
    with pytest.raises(DeviceError, match="no job"):
        dev.wait(12345, timeout=1)
    with pytest.raises(DeviceError, match="timeout must be a positive, finite number"):
        dev.wait(1, timeout=0)


def test_reload_firmware_and_bitstream(dev) -> None:
    downloads = dev.pynq_device.downloads
    dev.load_overlay(bitstream=True)
    assert dev.pynq_device.downloads == downloads + 1
    data, out, _ = _copy(dev, 256, seed=11)
    np.testing.assert_array_equal(out, data)
    with pytest.raises(DeviceError, match="another"):
        dev.load_overlay(bitstream="other.bit")


def test_board_branch_with_an_explicit_pynq_device(tmp_path_factory) -> None:
    """The non-emulated path (overlay/fiberflow.bit + .hwh, the caller's pynq device), here
    with a simulated board passed in as the board's own device would be."""
    import shutil

    from fiberflow.host.devices.rtl import RtlShell

    folder = Path(_build(tmp_path_factory, BOARD))
    for ext in (".bit", ".hwh"):
        shutil.copy(folder / hwh.EMULATION_DIR / f"fiberflow{ext}", folder / "overlay")
    m = json.loads((folder / "manifest.json").read_text())
    pynq_sim.prepare_clocks()
    sim = pynq_sim.SimulatedPynqDevice(
        RtlShell(),
        arch=ARCH,
        control_base=m["board"]["control_base"],
        control_range=m["overlay"]["control_range"],
    )
    with ff.open("pynq", overlay=folder, pynq_device=sim) as d:
        assert d.pynq_device is sim and sim.downloads == 1
        data, out, _ = _copy(d, 1024, seed=12)
        np.testing.assert_array_equal(out, data)
    with ff.open("pynq", overlay=folder, pynq_device=sim, download=False) as d:
        assert sim.downloads == 1  # attached to the loaded overlay
        data, out, _ = _copy(d, 1024, seed=13)
        np.testing.assert_array_equal(out, data)
    sim.shell.close()


# -- opening errors ----------------------------------------------------------------------------


def test_open_errors(tmp_path, board_folder: str) -> None:
    with pytest.raises(DeviceError, match="needs overlay=DIR"):
        ff.open("pynq")
    with pytest.raises(DeviceError, match="not a fiberflow build folder"):
        ff.open("pynq", overlay=tmp_path, emulate=True)
    with pytest.raises(DeviceError, match="run Vivado"):
        ff.open("pynq", overlay=board_folder)  # no bitstream: Vivado has not run
    with pytest.raises(DeviceError, match="options"):
        ff.open("pynq", overlay=board_folder, emulate=True, lanes=8)
    with pytest.raises(FiberflowError, match="ddr= only applies"):
        ff.open("pynq", overlay=board_folder, ddr=object())


# -- SpMV and SpMM, as on the rtl device --------------------------------------------------------


@pytest.fixture(scope="module")
def kernel_dev(tmp_path_factory: pytest.TempPathFactory):
    # Small buffers, so the test matrices span several tiles in both directions.
    folder = _build(tmp_path_factory, BOARD, **SMALL_LANES)
    d = ff.open("pynq", overlay=folder, emulate=True)
    yield d
    d.close()


def _walker_or_skip(fn):
    try:
        return fn()
    except DeviceError as exc:
        if "BAD_MAGIC" in str(exc):
            pytest.skip("the shell's firmware does not run SpMV/SpMM descriptors (FFJB) yet")
        raise


def test_spmv_bit_exact_with_the_emulator(kernel_dev) -> None:
    import scipy.sparse as sp

    rng = np.random.default_rng(1)
    A = sp.random(300, 257, density=0.03, format="csr", random_state=rng, dtype=np.float32)
    x = (rng.standard_normal(257) * 4).astype(np.float32)
    tile = kernel_dev.fitting_tile(A)
    rmax, cmax = kernel_dev.tile_limits()
    assert tile[0] <= rmax and tile[1] == cmax
    h = kernel_dev.put(A)  # packed once, to fit the lanes' buffers
    assert h.tile == tile
    y = _walker_or_skip(lambda: ff.spmv(h, x, device=kernel_dev))
    with ff.open("emu", lanes=kernel_dev.lanes) as emu:
        want = ff.spmv(A, x, device=emu, tile=tile)
    np.testing.assert_array_equal(y.view(np.uint32), want.view(np.uint32))
    stats = kernel_dev.last_stats
    assert not stats.estimated and stats.nnz == A.nnz and stats.kernel == "spmv"
    assert stats.cycles > stats.nnz / kernel_dev.lanes
    # energy from the figures the build folder's manifest records for its board
    assert stats.energy.board == kernel_dev.manifest["board"]["name"]
    assert stats.energy_breakdown["board"] == pytest.approx(
        stats.energy.board_power_w * stats.seconds_est
    )
    assert stats.energy_j > stats.energy_breakdown["board"] > 0
    # the same again, packed per call (to fit, as no tile= is given)
    y2 = ff.spmv(A, x, device=kernel_dev)
    np.testing.assert_array_equal(y2.view(np.uint32), want.view(np.uint32))
    h.free()


def test_a_value_type_the_overlay_lacks_is_refused(kernel_dev) -> None:
    import scipy.sparse as sp

    A = sp.random(20, 20, density=0.2, format="csr", dtype=np.float32).astype(np.int32)
    assert kernel_dev.dtypes == (np.dtype(np.float32),)
    with pytest.raises(DeviceError, match="computes in float32"):
        kernel_dev.put(A)


def test_spmm_bit_exact_with_the_emulator(kernel_dev) -> None:
    import scipy.sparse as sp

    rng = np.random.default_rng(2)
    A = sp.random(200, 150, density=0.05, format="csr", random_state=rng, dtype=np.float32)
    B = rng.standard_normal((150, 4)).astype(np.float32)
    tile = kernel_dev.fitting_tile(A)
    # the tiles are sized for SpMV: B's rows do not fit the x buffer, so the SpMM runs as jobs
    # over column blocks of B
    assert 4 * B.shape[1] * min(tile[1], 150) > kernel_dev.info.x_bytes
    C = _walker_or_skip(lambda: ff.spmm(A, B, device=kernel_dev))
    with ff.open("emu", lanes=kernel_dev.lanes) as emu:
        want = ff.spmm(A, B, device=emu, tile=tile)
    np.testing.assert_array_equal(C.view(np.uint32), want.view(np.uint32))
    assert kernel_dev.last_stats.work == A.nnz * 4


def test_overlay_without_lanes_says_so(dev) -> None:
    import scipy.sparse as sp

    with pytest.raises(DeviceError, match="no SpMV/SpMM lanes"):
        dev.put(sp.random(10, 10, density=0.2, format="csr", dtype=np.float32))


def test_int32_spmv_and_spmm_on_an_fp32_int32_overlay(tmp_path_factory) -> None:
    import scipy.sparse as sp

    folder = _build(tmp_path_factory, BOARD, **SMALL_LANES, value_type="fp32+int32")
    rng = np.random.default_rng(3)
    A = sp.random(300, 257, density=0.03, format="csr", random_state=rng)
    A.data = rng.integers(-50, 50, A.nnz).astype(np.float64)
    A = A.astype(np.int32)
    x = rng.integers(-9, 9, 257).astype(np.int32)
    B = rng.integers(-9, 9, (257, 3)).astype(np.int32)
    with ff.open("pynq", overlay=folder, emulate=True) as d:
        assert d.dtypes == (np.dtype(np.float32), np.dtype(np.int32))
        y = _walker_or_skip(lambda: ff.spmv(A, x, device=d))
        C = ff.spmm(A, B, device=d)
        tile = d.fitting_tile(A)
    with ff.open("emu", lanes=4) as emu:
        np.testing.assert_array_equal(y, ff.spmv(A, x, device=emu, tile=tile))
        np.testing.assert_array_equal(C, ff.spmm(A, B, device=emu, tile=tile))
    np.testing.assert_array_equal(y, A @ x)


@pytest.mark.filterwarnings(  # distributed's sockets, closed by its garbage collection
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)
def test_simulated_boards_as_dask_workers_shard_a_matrix(tmp_path_factory) -> None:
    """Two simulated boards, each in a Dask worker process of its own, advertising FPGA as a
    board's worker would (docs/distributed.md): bit-identical to one emulator."""
    import scipy.sparse as sp

    distributed = pytest.importorskip("distributed")
    folder = _build(tmp_path_factory, BOARD, **SMALL_LANES)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", resources={"FPGA": 1})  # fmt: skip
    client = distributed.Client(cluster)
    try:
        rng = np.random.default_rng(5)
        A = sp.random(300, 200, density=0.05, format="csr", random_state=rng, dtype=np.float32)
        x = rng.standard_normal(200).astype(np.float32)
        with ff.open("dask", client=client, device="pynq", overlay=folder, emulate=True,
                     timeout=600) as dev, ff.open("emu", lanes=4) as emu:  # fmt: skip
            y = _walker_or_skip(lambda: ff.spmv(A, x, device=dev))
            want = ff.spmv(A, x, device=emu)
            np.testing.assert_array_equal(y.view(np.uint32), want.view(np.uint32))
            assert len(dev.last_stats.per_worker) == 2
            assert all(not s.estimated for _, s in dev.last_stats.blocks)
    finally:
        client.close()
        cluster.close()
