"""Generating a design without Migen keeping it alive.

Migen names signals by walking the Python stack (``migen.fhdl.tracer.trace_back``) and keeps,
in module-level tables, every object it met there (``classname_to_objs``) and a counter per
name (``name_to_idx``). Nothing ever removes them: each design generated in a process, and
every object on the stack while it was generated (a device being opened, its buffers), stays
reachable for the life of the process. A program that opens and closes rtl devices grew by
about 5.5 MB per open.

:func:`scope` puts the tables back as they were once the design is generated, so those
objects can be collected, and every generation in a process starts from the same naming
state (the Verilog is the same whatever was generated before it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def scope() -> Iterator[None]:
    from migen.fhdl import tracer

    objs = {name: list(seen) for name, seen in tracer.classname_to_objs.items()}
    counts = dict(tracer.name_to_idx)
    try:
        yield
    finally:
        tracer.classname_to_objs.clear()
        tracer.classname_to_objs.update(objs)
        tracer.name_to_idx.clear()
        tracer.name_to_idx.update(counts)
