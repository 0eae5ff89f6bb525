"""ff.open("pynq") where pynq is not installed (the main environment): clear errors, no import
of pynq at fiberflow import time. The device itself is tested in tests/test_pynq_board.py."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time

import pytest

import fiberflow as ff
from fiberflow.errors import DeviceError, ToolchainError


def test_open_needs_an_overlay_folder() -> None:
    with pytest.raises(DeviceError, match="needs overlay=DIR"):
        ff.open("pynq")
    with pytest.raises(DeviceError, match=r"unexpected keyword.*lanes"):
        ff.open("pynq", overlay="build/pynq-z2", lanes=4)


def test_fiberflow_does_not_import_pynq() -> None:
    import fiberflow.host.devices.pynq_device  # noqa: F401

    if importlib.util.find_spec("pynq") is None:
        assert "pynq" not in sys.modules


@pytest.mark.skipif(importlib.util.find_spec("pynq") is not None, reason="pynq is installed")
def test_without_pynq_the_error_says_how_to_get_it(tmp_path) -> None:
    with pytest.raises(ToolchainError, match=r"own virtualenv.*pynq==3\.1"):
        ff.open("pynq", overlay=tmp_path, emulate=True)


def test_a_closed_pynq_device_refuses_every_call() -> None:
    from fiberflow.host.devices.pynq_device import PynqDevice

    dev = object.__new__(PynqDevice)  # no board here: the guard on each method is under test
    dev._lock = threading.RLock()
    dev._closed = True
    calls: list[tuple[str, tuple[object, ...]]] = [
        ("alloc", (16,)),
        ("free", (None,)),
        ("put", (None,)),
        ("check_tile", ((8, 8),)),
        ("tile_limits", ()),
        ("pack_to_fit", (None,)),
        ("fitting_tile", (None,)),
        ("read_reg", (0,)),
        ("write_reg", (0, 0)),
        ("submit", (None,)),
        ("wait", (1,)),
        ("find", (0,)),
        ("reset", ()),
        ("load_overlay", ()),
    ]
    for name, args in calls:
        with pytest.raises(DeviceError, match=r"pynq device is closed; .*ff\.open\('pynq'"):
            getattr(dev, name)(*args)
    assert dev.closed
    dev.close()  # closing a closed device is fine


def test_guarded_methods_run_one_at_a_time() -> None:
    from fiberflow.host.devices.shell_jobs import guarded

    class Shared:
        name = "test"

        def __init__(self) -> None:
            self._lock = threading.RLock()
            self._closed = False
            self.inside = 0
            self.most = 0

        @guarded
        def work(self) -> None:
            self.inside += 1
            self.most = max(self.most, self.inside)
            time.sleep(0.001)  # let the other threads try to enter
            self.nested()
            self.inside -= 1

        @guarded
        def nested(self) -> None:  # the lock is re-entrant
            pass

    s = Shared()
    threads = [threading.Thread(target=lambda: [s.work() for _ in range(20)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert s.most == 1 and s.inside == 0


@pytest.mark.parametrize("bad", ["5", -1, 0, float("nan"), float("inf"), None, True])
def test_bad_timeouts(bad: object) -> None:
    from fiberflow.host.devices.shell_jobs import check_timeout

    with pytest.raises(DeviceError, match="timeout must be"):
        check_timeout(bad)
    assert check_timeout(2) == 2.0
    with pytest.raises(DeviceError, match="longer than fiberflow waits"):
        check_timeout(1e10)  # clocks and lock waits would overflow
