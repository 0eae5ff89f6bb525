"""cffi build scripts (API mode) for the host's C code, run by setuptools at install time.

Each extension is one C file with a header of plain declarations; the header doubles as the
cffi cdef (its ``#`` lines are dropped, since cdef has no preprocessor).
"""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent


def extension(
    name: str, extra_compile_args: list[str], parts: tuple[str, ...] = (), **kwargs: object
) -> FFI:
    """The builder of ``fiberflow.host._<name>`` from ``host/<name>.c`` and ``host/<name>.h``,
    plus ``host/<part>.c`` / ``.h`` for each of ``parts``."""
    files = (name, *parts)
    header = "\n".join((HERE / f"{f}.h").read_text() for f in files)
    builder = FFI()
    builder.cdef("\n".join(line for line in header.splitlines() if not line.startswith("#")))
    includes = "".join(f'#include "{f}.h"\n' for f in files)
    builder.set_source(
        f"fiberflow.host._{name}",
        "#include <stdint.h>\n" + includes,
        sources=[f"host/{f}.c" for f in files],  # relative: setuptools runs this from the root
        include_dirs=["host"],
        extra_compile_args=extra_compile_args,
        **kwargs,
    )
    return builder


# The DMA-image packer: threads split the tile grid (see cpack.c); it checksums what it writes,
# into memory that large images reuse (imagemem.c).
cpack = extension(
    "cpack", ["-O3", "-std=gnu99", "-pthread"], ("crc32", "imagemem"), extra_link_args=["-pthread"]
)

# The emulator's kernels (threads take row tiles: see cemu.c), its cycle model's per-tile
# lane cost (cmodel.c) and the compiler's fast paths (cgraph.c). -ffp-contract=off: a product
# is rounded before it is added, as in the hardware ALU.
cemu = extension(
    "cemu",
    ["-O3", "-std=c99", "-pthread", "-ffp-contract=off", "-fno-fast-math"],
    ("cmodel", "cgraph"),
    extra_link_args=["-pthread"],
)

if __name__ == "__main__":
    cpack.compile(verbose=True)
    cemu.compile(verbose=True)
