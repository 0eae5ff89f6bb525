"""Progress bars for long work: shown on a terminal, silent otherwise (CI logs, pipes)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def enabled() -> bool:
    """Progress is drawn only when stderr is an interactive terminal."""
    return sys.stderr.isatty()


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """Iterate over ``items``, drawing a progress bar on a terminal."""
    yield from tqdm(items, desc=desc, total=total, disable=not enabled(), leave=False)
