"""The rtl device's DDR model checks the shell's AXI masters against the rules of the board's
memory ports (burst length, 4 KB boundary, alignment, beat size, WLAST, valid and payload held
until the handshake, write data after its address), and a job during which any rule broke
raises. The shipped engines keep every rule, under random backpressure too; two rules are
shown to bite by tightening the model's limits below what the engines do (16-beat bursts of
8 bytes, which a 64-byte boundary cuts)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import fiberflow as ff
from fiberflow import boards
from fiberflow.errors import DeviceError

pytestmark = pytest.mark.rtl
rtl = pytest.importorskip("fiberflow.host.devices.rtl")


def run_spmv(ddr) -> tuple[dict[str, int], np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    a = sp.random(300, 500, density=0.05, format="csr", dtype=np.float32, random_state=3)
    x = np.random.default_rng(3).standard_normal(500).astype(np.float32)
    with ff.open("rtl", ddr=ddr) as dev, ff.open("emu") as emu:
        y = ff.spmv(a, x, device=dev, timeout=120)
        return dev.shell.rule_breaches, y, ff.spmv(a, x, device=emu)


def test_the_engines_keep_every_rule_under_backpressure() -> None:
    breaches, y, ref = run_spmv(rtl.DdrModel(backpressure=0.3, seed=5))
    assert breaches == dict.fromkeys(rtl.RULES, 0)
    assert np.array_equal(y.view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize(
    ("ddr", "rule"),
    [
        (rtl.DdrModel(max_burst_beats=8), "burst longer than the port allows"),
        (rtl.DdrModel(boundary_bytes=64), "burst crossing an address boundary (4 KB in AXI)"),
    ],
)
def test_a_broken_rule_fails_the_job(ddr, rule) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DeviceError, match="broke the AXI rules") as err:
        run_spmv(ddr)
    assert rule in str(err.value)


def test_the_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_burst_beats"):
        rtl.DdrModel(max_burst_beats=0)
    with pytest.raises(ValueError, match="boundary_bytes"):
        rtl.DdrModel(boundary_bytes=4000)


def test_zynq7000_ports_take_16_beats_and_ultrascale_256() -> None:
    assert boards.load("pynq-z2").ddr_model()["max_burst_beats"] == 16
    assert boards.load("zcu104").ddr_model()["max_burst_beats"] == 256
