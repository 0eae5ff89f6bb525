"""The code stays lint-clean and type-checked: ruff on everything, mypy on host/."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is part of the dev extra")
def test_ruff_check():
    result = run("ruff", "check", ".", "--output-format", "concise")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is part of the dev extra")
def test_ruff_format():
    result = run("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_host():
    pytest.importorskip("mypy")
    result = run(sys.executable, "-m", "mypy", "host")
    assert result.returncode == 0, result.stdout + result.stderr
