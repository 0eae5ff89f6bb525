"""Load a built cffi extension from a copy under a name of its own, so that two builds of the
same module can run side by side in one process (scripts/emu_kernel_ab.py, pack_ab.py)."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path
from typing import Any


def load(path: str, module: str, tag: str) -> Any:
    """The extension ``module`` (e.g. ``fiberflow.host._cemu``) at ``path``, loaded from a copy
    named for ``tag``: the dynamic loader handed a second file named like one already loaded
    (``_cemu.abi3.so``) the first one's functions, so both "builds" measured the same code."""
    copy = Path(tempfile.mkdtemp(prefix="ff-ab-")) / f"{module.rsplit('.', 1)[-1]}_{tag}.so"
    shutil.copyfile(path, copy)
    spec = importlib.util.spec_from_file_location(module, copy)
    assert spec is not None and spec.loader is not None
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    return ext
