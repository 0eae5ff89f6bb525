"""The code stays lint-clean and type-checked: ruff on everything, mypy on host/."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


# ruff and mypy run with this interpreter (python -m), not whatever PATH finds: a virtualenv
# need not be activated.
def test_ruff_check():
    pytest.importorskip("ruff")
    result = run(sys.executable, "-m", "ruff", "check", ".", "--output-format", "concise")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format():
    pytest.importorskip("ruff")
    result = run(sys.executable, "-m", "ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_host():
    pytest.importorskip("mypy")
    result = run(sys.executable, "-m", "mypy", "host")
    assert result.returncode == 0, result.stdout + result.stderr
