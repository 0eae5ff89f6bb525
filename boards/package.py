"""The fiberflow package a board installs: a source distribution (``.tar.gz``) of exactly the
fiberflow that wrote the build folder, put in ``<build folder>/dist/``.

Why a source distribution and not a wheel: the boards are ARM (Zynq-7000: 32-bit ARMv7,
UltraScale+: 64-bit ARMv8) and fiberflow has two cffi C extensions (the DMA-image packer and
the emulator's kernels), so a wheel built on an x86 host cannot run there. The sdist is
compiled on the board by its own gcc when pip installs it (``docs/deploy.md``). The x86 vector
paths of the packer are behind ``#ifdef``s; the C sources compile for both ARM targets.

It is built from the source tree fiberflow runs from (a checkout, installed with
``pip install -e``), with setuptools' PEP 517 backend in this interpreter. A fiberflow installed
from a wheel has no source tree: :func:`source_checkout` is None and the caller says what to do.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fiberflow._version import __version__
from fiberflow.errors import BuildError

__all__ = ["FOLDER", "package_name", "source_checkout", "source_package"]

FOLDER = "dist"  # inside the build folder

# Files only a source checkout has (an installed wheel has none of them).
_CHECKOUT_FILES = ("pyproject.toml", "setup.py", "host/_cffi_build.py", "host/cpack.c")


def package_name(version: str = __version__) -> str:
    return f"fiberflow-{version}.tar.gz"


def source_checkout() -> Path | None:
    """The root of the source tree this fiberflow runs from, or None (an installed wheel)."""
    root = Path(__file__).resolve().parent.parent
    return root if all((root / f).is_file() for f in _CHECKOUT_FILES) else None


def source_package(dest: Path, root: Path | None = None, timeout_s: float = 300) -> Path:
    """Build the sdist of the checkout ``root`` (default: :func:`source_checkout`) into the
    folder ``dest``, replacing any fiberflow sdist there; return its path."""
    root = root or source_checkout()
    if root is None:
        raise BuildError(
            f"fiberflow {__version__} is installed without its source tree, so it cannot "
            "make the package a board installs; run 'fiberflow build' from a source checkout "
            "(pip install -e .), or copy a checkout of this version to the board and "
            "pip install it there"
        )
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("fiberflow-*.tar.gz"):
        old.unlink()
    code = (
        "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-W", "ignore", "-c", code, str(dest.resolve())],
            cwd=root, capture_output=True, text=True, timeout=timeout_s,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise BuildError(f"building the source package took over {timeout_s:.0f} s") from None
    built = dest / (proc.stdout.strip().splitlines() or [""])[-1]
    if proc.returncode != 0 or not built.is_file():
        raise BuildError(
            f"could not build the source package of {root} (exit {proc.returncode}); it needs "
            "setuptools>=68 and cffi in this environment (pip install setuptools cffi):\n"
            + (proc.stdout + proc.stderr)[-2000:]
        )
    if built.name != package_name():
        raise BuildError(
            f"the source tree {root} builds {built.name}, but this fiberflow is "
            f"{__version__}: reinstall it (pip install -e .) so the two agree"
        )
    return built
