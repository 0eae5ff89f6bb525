"""Benchmarks behind ``fiberflow bench TARGET``.

Each target is a module ``fiberflow.bench.<target>`` that provides:

* ``DESCRIPTION``: one line for ``--help``;
* ``add_arguments(parser)``: its own options;
* ``run(args) -> Report``: measure, and return what to record.

Targets write their plots into ``args.out``, and nowhere else. The command writes the report's
data to ``<out>/<target>.json`` beside them (``--out`` defaults to a new folder named for the
run), and, only with ``--doc FILE``, the report's table into its own section of that file
(other sections are left alone). The project records with
``--doc docs/benchmarks.md --out docs/bench``, so results are kept with the document.
"""

from __future__ import annotations

import json
import os
import platform
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fiberflow.progress import progress

TARGETS = [
    "pack",
    "spmv",
    "spmm",
    "kernels",
    "energy",
    "primitives",
    "resources",
    "shell",
    "lane",
    "timing",
]


@dataclass
class Report:
    target: str
    title: str
    command: str  # the command line that reproduces the numbers
    columns: list[str]
    rows: list[list[Any]]
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)

    def markdown(self, doc_dir: Path | None = None) -> str:
        """The report as a Markdown section; plot links are relative to ``doc_dir``."""
        lines = [f"## {self.title}", "", f"Reproduce with `{self.command}`.", ""]
        lines.append(
            f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, "
            f"Python {platform.python_version()}, numpy {np.__version__}."
        )
        lines += ["", "| " + " | ".join(self.columns) + " |"]
        lines.append("|" + "---|" * len(self.columns))
        for row in self.rows:
            lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
        if self.notes:
            lines.append("")
            lines += [f"- {n}" for n in self.notes]
        for plot in self.plots:
            link = os.path.relpath(plot, doc_dir) if doc_dir else str(plot)
            lines += ["", f"![{self.title}]({Path(link).as_posix()})"]
        return "\n".join(lines) + "\n"


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def median_seconds(fn: Any, repeat: int = 5, desc: str = "timing") -> float:
    """Median wall time of ``repeat`` calls of ``fn`` (after one warm-up call)."""
    fn()
    times = []
    for _ in progress(range(repeat), desc=desc):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def uncached_build_seconds(config: Any) -> float:
    """Seconds of a Verilator build of the rtl shell ``config`` in a throw-away cache folder
    (``FIBERFLOW_CACHE`` is restored afterwards)."""
    from fiberflow.host.devices.rtl import build_shell

    old = os.environ.get("FIBERFLOW_CACHE")
    with tempfile.TemporaryDirectory(prefix="ff-bench-") as tmp:
        os.environ["FIBERFLOW_CACHE"] = tmp
        try:
            start = time.perf_counter()
            build_shell(config)
            return time.perf_counter() - start
        finally:
            if old is None:
                del os.environ["FIBERFLOW_CACHE"]
            else:
                os.environ["FIBERFLOW_CACHE"] = old


def write_section(doc: Path, report: Report) -> None:
    """Replace (or append) the report's section of ``doc``, keeping every other section."""
    begin, end = f"<!-- bench:{report.target} -->", f"<!-- /bench:{report.target} -->"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n\nWritten by `fiberflow bench`.\n"
    block = f"{begin}\n{report.markdown(doc.parent)}{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text) if pattern.search(text) else text + "\n" + block + "\n"
    )
    doc.write_text(text)


def write_json(path: Path, report: Report) -> None:
    path.write_text(
        json.dumps(
            {
                "target": report.target,
                "command": report.command,
                "columns": report.columns,
                "rows": report.rows,
                "data": report.data,
            },
            indent=2,
            default=float,
        )
    )
