"""A plain `pip install .` builds (in an isolated build environment, as pip does by default)
a wheel with the compiled C extensions and the package data."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_compiled_extension_and_data(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
         "-w", str(tmp_path), "-q"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("fiberflow-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for ext in ("_cpack", "_cemu"):  # the packer's C fast path and the emulator's kernels
        assert any(
            n.startswith(f"fiberflow/host/{ext}") and n.endswith((".so", ".pyd")) for n in names
        ), ext
    for required in [
        "fiberflow/host/tensor.py",
        "fiberflow/overlay/__init__.py",
        "fiberflow/boards/__init__.py",
        "fiberflow/data/poisson2d_32.mtx",
    ]:
        assert required in names
    assert not any(n.startswith(("host/", "overlay/", "boards/")) for n in names), (
        "top-level folders must be installed only as fiberflow subpackages"
    )
