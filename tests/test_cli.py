import json
import subprocess
import sys

import pytest

from fiberflow import bench, cli


def fiberflow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fiberflow", *args], capture_output=True, text=True, timeout=600
    )


def test_every_subcommand_has_help():
    for name in cli.COMMANDS:
        result = fiberflow(name, "--help")
        assert result.returncode == 0, result.stderr
        assert f"usage: fiberflow {name}" in result.stdout


def test_every_bench_target_has_help():
    for name in bench.TARGETS:
        result = fiberflow("bench", name, "--help")
        assert result.returncode == 0, result.stderr


def test_no_command_prints_help_and_fails():
    result = fiberflow()
    assert result.returncode == 2
    assert "demo" in result.stdout


def test_demo_passes():
    result = fiberflow("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo passed" in result.stdout


def test_bench_pack_small(tmp_path):
    doc = tmp_path / "bench.md"
    result = fiberflow(
        "bench", "pack", "--nnz", "20000", "--n", "2000", "--tile", "256", "1024",
        "--repeat", "2", "--doc", str(doc), "--out", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = doc.read_text()
    assert "<!-- bench:pack -->" in text and "C fast path" in text
    data = json.loads((tmp_path / "pack.json").read_text())
    assert data["data"]["image_bytes"] > 0
    assert {"C fast path", "numpy reference", "memcpy (same bytes)"} <= set(
        data["data"]["gb_per_s"]
    )
    # Running again replaces the section instead of appending a second one.
    again = fiberflow("bench", "pack", "--nnz", "2000", "--n", "200", "--repeat", "1",
                      "--doc", str(doc), "--out", str(tmp_path))  # fmt: skip
    assert again.returncode == 0, again.stderr
    text = doc.read_text()
    assert text.count("<!-- bench:pack -->") == 1
    assert "--nnz 2000 --n 200 " in text and "--nnz 20000 " not in text


def test_errors_are_reported_without_traceback(capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench", "pack", "--nnz", "x"])
    assert "invalid int value" in capsys.readouterr().err


def test_a_closed_pipe_ends_the_command_quietly() -> None:
    """``fiberflow demo | head -1``: no traceback when the reader goes away."""
    with subprocess.Popen(
        [sys.executable, "-m", "fiberflow", "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.readline()
        proc.stdout.close()  # the reader leaves after one line
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err
