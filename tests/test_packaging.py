"""A plain `pip install .` builds (in an isolated build environment, as pip does by default)
a wheel with every subpackage, the compiled C extensions and the package data."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Installed name -> source folder: host/, overlay/ and boards/ are subpackages of fiberflow.
FOLDERS = {"fiberflow": "fiberflow", "fiberflow.host": "host",
           "fiberflow.overlay": "overlay", "fiberflow.boards": "boards"}  # fmt: skip


# pip and setuptools run as tools, with their own warnings as they ship them (not as errors,
# which PYTHONWARNINGS=error would make of their deprecation notices).
TOOL_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}


def packages_on_disk() -> set[str]:
    """Every folder with an __init__.py under the four package roots, by its installed name."""
    found = set()
    for name, folder in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    return found


def test_setuptools_builds_every_subpackage():
    # setuptools' configuration stage only (no build): the package list and its folders.
    code = (
        "import json; from distutils.core import run_setup; "
        "d = run_setup('setup.py', stop_after='config'); "
        "print(json.dumps({'packages': d.packages, 'package_dir': d.package_dir}))"
    )
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout.strip().splitlines()[-1])
    on_disk = packages_on_disk()
    assert {"fiberflow.bench", "fiberflow.commands"} <= on_disk
    missing = on_disk - set(config["packages"])
    assert not missing, f"subpackages a wheel would leave out: {sorted(missing)}"
    for name, folder in FOLDERS.items():
        assert config["package_dir"][name] == folder


def test_wheel_contains_compiled_extension_and_data(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
         "-w", str(tmp_path), "-q"],
        capture_output=True, text=True, timeout=600, env=TOOL_ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("fiberflow-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for ext in ("_cpack", "_cemu"):  # the packer's C fast path and the emulator's kernels
        assert any(
            n.startswith(f"fiberflow/host/{ext}") and n.endswith((".so", ".pyd")) for n in names
        ), ext
    for package in packages_on_disk():
        assert f"{package.replace('.', '/')}/__init__.py" in names, package
    for required in [
        "fiberflow/host/formats/tensor.py",
        "fiberflow/host/rtl_harness.cpp",
        "fiberflow/boards/pynq-z2.toml",
        "fiberflow/overlay/firmware.bin",
        "fiberflow/data/poisson2d_32.mtx",
    ]:
        assert required in names
    assert not any(n.startswith(("host/", "overlay/", "boards/")) for n in names), (
        "top-level folders must be installed only as fiberflow subpackages"
    )
