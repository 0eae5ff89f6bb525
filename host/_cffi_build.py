"""cffi build scripts (API mode) for the host's C code, run by setuptools at install time.

Each extension is one C file with a header of plain declarations; the header doubles as the
cffi cdef (its ``#`` lines are dropped, since cdef has no preprocessor).
"""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent


def extension(name: str, extra_compile_args: list[str], **kwargs: object) -> FFI:
    """The builder of ``fiberflow.host._<name>`` from ``host/<name>.c`` and ``host/<name>.h``."""
    header = (HERE / f"{name}.h").read_text()
    builder = FFI()
    builder.cdef("\n".join(line for line in header.splitlines() if not line.startswith("#")))
    builder.set_source(
        f"fiberflow.host._{name}",
        f'#include <stdint.h>\n#include "{name}.h"\n',
        sources=[f"host/{name}.c"],  # relative: setuptools runs this from the project root
        include_dirs=["host"],
        extra_compile_args=extra_compile_args,
        **kwargs,
    )
    return builder


# The DMA-image packer: threads split the tile grid (see cpack.c).
cpack = extension("cpack", ["-O3", "-std=gnu99", "-pthread"], extra_link_args=["-pthread"])

# The emulator's kernels. -ffp-contract=off: a product is rounded before it is added, as in
# the hardware ALU.
cemu = extension("cemu", ["-O3", "-std=c99", "-ffp-contract=off", "-fno-fast-math"])

if __name__ == "__main__":
    cpack.compile(verbose=True)
    cemu.compile(verbose=True)
