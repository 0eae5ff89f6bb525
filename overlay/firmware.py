"""The control firmware: build it from ``firmware/`` with a RISC-V compiler, or use the shipped
image.

The compiler is clang as packaged in the ``ziglang`` wheel (``python -m ziglang cc``), so
``pip install -e '.[hw]'`` is the whole toolchain install; docs/firmware.md says why. The
package ships the built image as ``fiberflow/overlay/firmware.bin``, so users without the
compiler can still run the rtl device; a test rebuilds it and checks the bytes are identical.

Rebuild the shipped image with ``python -m fiberflow.overlay.firmware``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

from fiberflow.errors import ToolchainError

__all__ = ["ARCH_FLAGS", "build", "image", "source_dir"]

SOURCES = ("start.S", "main.c", "ffjb.c")
LINKER_SCRIPT = "link.ld"

# RV32IM without compressed instructions: the picorv32 in the shell is built with
# ENABLE_FAST_MUL/ENABLE_DIV and without COMPRESSED_ISA.
ARCH_FLAGS = ("-target", "riscv32-freestanding-none", "-mcpu=generic_rv32+m")
CFLAGS = (
    "-Os",
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-ffreestanding",
    "-fno-builtin",
    "-nostdlib",
    "-fno-asynchronous-unwind-tables",
    "-fno-unwind-tables",
    "-fno-pic",
    "-mno-relax",
)


def source_dir() -> Path:
    """``firmware/`` of a source checkout (not part of an installed wheel)."""
    return _sources(Path(__file__).resolve().parent.parent / "firmware")


def _sources(path: Path) -> Path:
    """``path`` if it holds the firmware's sources, else a ToolchainError saying what to do."""
    if not (path / "main.c").exists():
        raise ToolchainError(
            f"no firmware sources at {path}: building the firmware needs a source checkout; "
            "use image() for the shipped build"
        )
    return path


def _zig() -> list[str]:
    if importlib.util.find_spec("ziglang") is None:
        raise ToolchainError(
            "the RISC-V compiler is missing: the Python package 'ziglang' is not installed; "
            "install it with: pip install -e '.[hw]' (or pip install ziglang)"
        )
    return [sys.executable, "-m", "ziglang"]


def _run(cmd: list[str], cwd: Path) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as exc:
        raise ToolchainError(f"firmware build timed out: {' '.join(cmd)}") from exc
    if proc.returncode != 0:
        raise ToolchainError(
            f"firmware build failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            + (proc.stdout + proc.stderr)[-3000:]
        )


def build(src: Path | None = None, out: Path | None = None, defines: tuple[str, ...] = ()) -> bytes:
    """Compile and link the firmware; return the raw image (load it at CPU address 0).

    ``src`` defaults to :func:`source_dir`; with ``out`` the ELF and image are kept there.
    ``defines`` are preprocessor macros (``"FF_PHASES"``: the profiling build of
    ``scripts/firmware_phases.py``); the shipped image has none.
    """
    src = _sources(Path(src)) if src is not None else source_dir()
    zig = _zig()
    with tempfile.TemporaryDirectory(prefix="ff-fw-") as tmp:
        work = Path(out) if out is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        elf, binary = work / "firmware.elf", work / "firmware.bin"
        # Relative source names keep absolute paths out of the objects.
        _run(
            [
                *zig,
                "cc",
                *ARCH_FLAGS,
                *CFLAGS,
                *(f"-D{d}" for d in defines),
                "-T",
                LINKER_SCRIPT,
                "-Wl,--build-id=none",
                "-o",
                str(elf),
                *SOURCES,
            ],
            cwd=src,
        )
        _run([*zig, "objcopy", "-O", "binary", str(elf), str(binary)], cwd=src)
        return binary.read_bytes()


def image() -> bytes:
    """The shipped firmware image (``fiberflow/overlay/firmware.bin``)."""
    return resources.files("fiberflow.overlay").joinpath("firmware.bin").read_bytes()


def main() -> int:
    data = build()
    path = Path(__file__).resolve().parent / "firmware.bin"
    path.write_bytes(data)
    print(f"wrote {path} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
