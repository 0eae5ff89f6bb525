"""cffi build script (API mode) for the functional emulator's kernels, run at install time."""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent

ffibuilder = FFI()
ffibuilder.cdef(
    "\n".join(
        line for line in (HERE / "cemu.h").read_text().splitlines() if not line.startswith("#")
    )
)
ffibuilder.set_source(
    "fiberflow.host._cemu",
    '#include <stdint.h>\n#include "cemu.h"\n',
    sources=["host/cemu.c"],
    include_dirs=["host"],
    # -ffp-contract=off: a product is rounded before it is added, as in the hardware ALU.
    extra_compile_args=["-O3", "-std=c99", "-ffp-contract=off", "-fno-fast-math"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
