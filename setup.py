# The package layout and the cffi extensions (the C fast path of the DMA-image packer, the
# emulator's kernels) are declared here; everything else is in pyproject.toml.
#
# host/, overlay/, boards/ and notebooks/ are top-level folders installed as subpackages of
# fiberflow.
# setuptools' own discovery (``packages.find``) names packages after their folders ("host",
# not "fiberflow.host"), so the packages are found here, folder by folder, under the names
# they are installed as: a new subpackage (a folder with an __init__.py) is never left out.
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE_DIR = {
    "fiberflow": "fiberflow",
    "fiberflow.host": "host",
    "fiberflow.overlay": "overlay",
    "fiberflow.boards": "boards",
    # the notebooks, as a package so that PYNQ's ``pynq get-notebooks`` finds them through
    # the ``pynq.notebooks`` entry point (pyproject.toml)
    "fiberflow.notebooks": "notebooks",
}


def packages() -> list[str]:
    root = Path(__file__).resolve().parent
    found = []
    for name, folder in PACKAGE_DIR.items():
        found += [name] + [f"{name}.{sub}" for sub in find_packages(str(root / folder))]
    return sorted(found)


setup(
    package_dir=PACKAGE_DIR,
    packages=packages(),
    cffi_modules=["host/_cffi_build.py:cpack", "host/_cffi_build.py:cemu"],
)
