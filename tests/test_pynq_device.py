"""ff.open("pynq") where pynq is not installed (the main environment): clear errors, no import
of pynq at fiberflow import time. The device itself is tested in tests/test_pynq_board.py."""

from __future__ import annotations

import importlib.util
import sys

import pytest

import fiberflow as ff
from fiberflow.errors import DeviceError, ToolchainError


def test_open_needs_an_overlay_folder() -> None:
    with pytest.raises(DeviceError, match="needs overlay=DIR"):
        ff.open("pynq")
    with pytest.raises(DeviceError, match=r"unexpected keyword.*lanes"):
        ff.open("pynq", overlay="build/pynq-z2", lanes=4)


def test_fiberflow_does_not_import_pynq() -> None:
    import fiberflow.host.pynq_device  # noqa: F401

    if importlib.util.find_spec("pynq") is None:
        assert "pynq" not in sys.modules


@pytest.mark.skipif(importlib.util.find_spec("pynq") is not None, reason="pynq is installed")
def test_without_pynq_the_error_says_how_to_get_it(tmp_path) -> None:
    with pytest.raises(ToolchainError, match=r"own virtualenv.*pynq==3\.1"):
        ff.open("pynq", overlay=tmp_path, emulate=True)
