# The cffi extensions (the C fast path of the DMA-image packer, the emulator's kernels) are
# declared here because cffi's setuptools hook is configured through setup() keywords;
# everything else is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["host/_cffi_build.py:cpack", "host/_cffi_build.py:cemu"])
