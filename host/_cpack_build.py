"""cffi build script (API mode) for the C fast path, run by setuptools at install time."""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent

ffibuilder = FFI()
ffibuilder.cdef(
    "\n".join(
        line for line in (HERE / "cpack.h").read_text().splitlines() if not line.startswith("#")
    )
)
ffibuilder.set_source(
    "fiberflow.host._cpack",
    '#include <stdint.h>\n#include "cpack.h"\n',
    sources=["host/cpack.c"],
    include_dirs=["host"],
    extra_compile_args=["-O3", "-std=gnu99", "-pthread"],
    extra_link_args=["-pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
