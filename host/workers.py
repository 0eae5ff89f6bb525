"""How many threads the C loops (the packer, the emulator's kernels) run on for one call."""

from __future__ import annotations

import os

# Entries per thread below which a thread costs more than it saves: starting and joining one
# takes tens of microseconds, and far longer when the other cores are busy, while a thread
# packs, or multiplies, about 2^18 entries in about a millisecond or less.
ENTRIES_PER_THREAD = 1 << 18


def threads(entries: int | None = None) -> int:
    """``FIBERFLOW_THREADS`` if set, else the cores this process may use, at most 8, and at
    most one per ``ENTRIES_PER_THREAD`` of the ``entries`` the call handles."""
    if os.environ.get("FIBERFLOW_THREADS", "").isdigit():
        return max(1, int(os.environ["FIBERFLOW_THREADS"]))
    by_size = 8 if entries is None else 1 + entries // ENTRIES_PER_THREAD
    if by_size == 1:  # a small call (most of them): no need to ask the system for its cores
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores, by_size))
