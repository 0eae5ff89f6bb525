"""Top-level AXI ports with the standard signal names (``<prefix>_awvalid``, ``_wdata``, ...).

LiteX's ``get_ios()`` describes the same ports, but as platform I/O that needs a LiteX
platform to request; the shell is converted to Verilog on its own (for Verilator and for a
Vivado block design), so the ports are plain named signals made here, with the set of signals
chosen exactly as ``get_ios()`` chooses them, and wired with LiteX's ``connect_to_pads()``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from migen import Signal

__all__ = ["axi_pads", "pad_signals"]

_CHANNELS = ("aw", "w", "b", "ar", "r")


def axi_pads(bus: Any, prefix: str, full: bool) -> SimpleNamespace:
    """Named signals for ``bus`` (a LiteX ``AXIInterface`` if ``full``, else
    ``AXILiteInterface``), as attributes ``awvalid``, ``wdata``, ... of the result."""
    pads = SimpleNamespace()
    for channel in _CHANNELS:
        ch = getattr(bus, channel)
        names = [("valid", 1), ("ready", 1)]
        if full and channel in ("w", "r"):
            names.append(("last", 1))
        for name, width in ch.description.payload_layout + ch.description.param_layout:
            if name == "dest" or (full and channel == "w" and name == "id"):
                continue
            names.append((name, width))
        for name, width in names:
            setattr(pads, channel + name, Signal(width, name=f"{prefix}_{channel}{name}"))
    return pads


def pad_signals(pads: SimpleNamespace) -> list[Signal]:
    return list(vars(pads).values())
