"""``ff.open``: the one way to get a device. Nothing here is global: each call makes a new one."""

from __future__ import annotations

import inspect
from typing import Any

from fiberflow.errors import DeviceError
from fiberflow.host.devices.device import Device

NAMES = ("emu", "rtl", "pynq", "dask")


def open(name: str = "emu", **options: Any) -> Device:
    """Open a device.

    Parameters
    ----------
    name : {"emu", "rtl", "pynq", "dask"}
        ``"emu"``: the functional emulator (always available). ``"rtl"`` and ``"pynq"`` run the
        same jobs cycle-accurately in Verilator or on a board. ``"dask"``: a matrix in row
        blocks over the workers of a Dask cluster, one device of another kind each
        (``client=``, ``device=``; docs/distributed.md).
    **options
        Device options; for "emu": ``board`` ("pynq-z2": the overlay it models is that
        board's default build, at its clock), the overlay's parameters as for "rtl"
        (``lanes``, ``dma_engines``, ``bus_bits``, ``tile_bytes``, ``x_bytes``, ``y_bytes``,
        ``max_k``), ``clock_mhz``, ``bus_bytes_per_cycle`` (instead of ``bus_bits``: the whole
        bus), ``memory_bytes``; see ``fiberflow.host.devices.emu.EmuDevice``. For "rtl" (the
        generated overlay in Verilator): ``lanes`` (4),
        ``dtype`` ("float32"), ``dma_engines``, ``tile_bytes``, ``x_bytes``, ``y_bytes``,
        ``max_k``, ``board`` ("pynq-z2": DDR timing and clock), ``ddr``; see
        ``fiberflow.host.devices.rtl_device.RtlDevice``.
        For "pynq": ``overlay`` (a ``fiberflow build``
        folder, required),
        ``emulate`` (run on a simulated board), ``download``, ``firmware``, ``pynq_device``,
        ``ddr`` (emulation). Every device also takes ``board_power_w``: the board's measured
        power in watts, in place of the board file's figure in each run's ``energy_j``
        (docs/energy.md).
    """
    if name == "emu":
        from fiberflow.host.devices.emu import EmuDevice

        return EmuDevice(**_checked(name, EmuDevice, options))
    if name == "pynq":
        from fiberflow.host.devices.pynq_device import PynqDevice

        if "overlay" not in options:
            raise DeviceError(
                "ff.open('pynq') needs overlay=DIR, the folder `fiberflow build` wrote "
                "(add emulate=True to run it on a simulated board)"
            )
        return PynqDevice(**_checked(name, PynqDevice, options))
    if name == "rtl":
        from fiberflow.host.devices.rtl_device import RtlDevice

        return RtlDevice(**_checked(name, RtlDevice, options))
    if name == "dask":
        from fiberflow.host.devices.dask_device import DaskDevice

        return DaskDevice(**_checked(name, DaskDevice, options))
    raise DeviceError(f"no device named {name!r}; choose one of {', '.join(NAMES)}")


def _checked(name: str, cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` if ``cls`` takes them; otherwise a DeviceError naming the bad option. (The
    signature is checked, not the call, so a TypeError from inside a device is not mistaken for
    a bad option.)"""
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as exc:
        raise DeviceError(f"ff.open({name!r}): {exc}; see help(ff.open) for the options") from None
    return options
