"""Progress for long work, on a terminal, in Jupyter, and in logs.

Three shapes of long work, one helper each:

* :func:`progress` wraps a loop over known items (bench repeats, synthesis runs);
* :func:`bar` is a counter the caller advances (simulated cycles, bytes, tiles);
* :func:`stage` is one step with no count (a Verilator build, a yosys run): it shows the time
  spent so far, refreshed every second from a helper thread.

Bars come from ``tqdm.auto``, which draws a widget in a notebook and text on a terminal. When
neither is there (a pipe, a CI log), bars stay silent and :func:`stage` prints one line when the
step starts and one when it ends, so a log still says what the time went on.
``FIBERFLOW_PROGRESS=0`` silences everything; ``FIBERFLOW_PROGRESS=1`` forces bars on.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def _setting() -> str:
    return os.environ.get("FIBERFLOW_PROGRESS", "").strip().lower()


def in_notebook() -> bool:
    """True inside a Jupyter (IPython kernel) session, where stderr is not a terminal but
    widgets are shown."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    get = getattr(shell, "get_ipython", None)
    ip = get() if get else None
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


def quiet() -> bool:
    """True when the user turned progress off (``FIBERFLOW_PROGRESS=0``)."""
    return _setting() in ("0", "false", "no", "off")


def enabled() -> bool:
    """Bars are drawn on a terminal or in a notebook, unless ``FIBERFLOW_PROGRESS`` says
    otherwise."""
    if quiet():
        return False
    if _setting() in ("1", "true", "yes", "on"):
        return True
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        tty = False
    return tty or in_notebook()


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """Iterate over ``items`` with a progress bar."""
    yield from tqdm(items, desc=desc, total=total, disable=not enabled(), leave=False)


def bar(desc: str, total: float | None = None, unit: str = "it", **kwargs: Any) -> Any:
    """A bar to advance by hand with ``.update(n)``; use it as a context manager."""
    return tqdm(desc=desc, total=total, unit=unit, disable=not enabled(), leave=False, **kwargs)


@contextmanager
def stage(desc: str, note: str = "") -> Iterator[None]:
    """Report one long step with no count: a live elapsed-time display when bars are shown,
    otherwise a line at the start and a line at the end (on stderr). ``note`` says why it
    takes long (for example "first run only")."""
    if quiet():
        yield
        return
    start = time.perf_counter()
    if not enabled():
        print(f"fiberflow: {desc}{f' ({note})' if note else ''}...", file=sys.stderr, flush=True)
        yield
        print(
            f"fiberflow: {desc}: done in {time.perf_counter() - start:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        return
    shown = tqdm(
        desc=f"{desc}{f' ({note})' if note else ''}",
        total=None,
        bar_format="{desc}: {elapsed}",
        leave=False,
    )
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(1.0):
            shown.refresh()

    ticker = threading.Thread(target=tick, name="fiberflow-progress", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join(timeout=2.0)
        shown.close()
