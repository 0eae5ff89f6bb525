"""Two builds of one of the C extensions, side by side in one process (scripts/emu_kernel_ab.py,
pack_ab.py): each loaded from a copy under a name of its own, and timed in paired rounds."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


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


def paired(run: Callable[[Any], Any], builds: list[Any], rounds: int) -> tuple[str, Any]:
    """``run(build)`` for the old and the new build in every round, in alternating order, so
    that the machine's drift cancels out: ``("old ms | new ms | new / old", first results)``,
    the last the median of the per-round ratios, with each build's result of round one."""
    times: list[list[float]] = [[], []]
    first: list[Any] = [None, None]
    for rnd in range(rounds):
        for k in (0, 1) if rnd % 2 else (1, 0):
            start = time.perf_counter()
            out = run(builds[k])
            times[k].append(time.perf_counter() - start)
            if rnd == 0:
                first[k] = out
            del out
    old, new = (np.array(t) for t in times)
    cells = f"{np.median(old) * 1e3:.2f} | {np.median(new) * 1e3:.2f} | {np.median(new / old):.3f}"
    return cells, first
