# The cffi extensions (the C fast path of the DMA-image packer, the emulator's kernels) are
# declared here because cffi's setuptools hook is configured through setup() keywords;
# everything else is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["host/_cpack_build.py:ffibuilder", "host/_cemu_build.py:ffibuilder"])
