"""The fiberflow error tree.

Every error a user can cause is a :class:`FiberflowError`. Each subclass also derives from the
built-in exception a Python user would expect (``ValueError``, ``TypeError``, ...), so code that
already catches those keeps working. Messages say what was wrong and what to do about it.
"""

from __future__ import annotations


class FiberflowError(Exception):
    """Base class of every error fiberflow raises on purpose."""


class FormatError(FiberflowError, ValueError):
    """A tensor format string (``"ds"``, ``"ds:1,0"``, ...) is malformed or does not fit."""


class ShapeError(FiberflowError, ValueError):
    """Shapes are inconsistent: a wrong rank, a mismatch between operands, a bad dimension."""


class CoordinateError(FiberflowError, IndexError):
    """A coordinate is negative or outside the tensor's shape."""


class DTypeError(FiberflowError, TypeError):
    """A value type fiberflow does not support, or a conversion that would lose data."""


class TileShapeError(FiberflowError, ValueError):
    """A tile shape that is invalid, or too large for the coordinate width or image limits."""


class ImageError(FiberflowError, ValueError):
    """A DMA image that is corrupted, truncated or not a fiberflow image at all."""


class ToolchainError(FiberflowError, RuntimeError):
    """A required external tool (Verilator, yosys, a RISC-V compiler, ...) is missing or failed."""


class BoardError(FiberflowError, ValueError):
    """A board name fiberflow does not know, or a board file with a missing or malformed field."""


class UnknownBoardError(BoardError):
    """A board name that matches no board file; the message lists the known boards."""


class BuildError(FiberflowError, RuntimeError):
    """A build that cannot proceed: an overlay that does not fit the board, a failed tool run."""


class DeviceError(FiberflowError, RuntimeError):
    """A device reported a failure, or was used in a way it does not support."""


class DeviceTimeoutError(DeviceError, TimeoutError):
    """A device did not finish within its timeout. The job was stopped (the shell reset, or
    the emulator's job dropped) and the device is usable; the output is incomplete."""


__all__ = [
    "BoardError",
    "BuildError",
    "CoordinateError",
    "DTypeError",
    "DeviceError",
    "DeviceTimeoutError",
    "FiberflowError",
    "FormatError",
    "ImageError",
    "ShapeError",
    "TileShapeError",
    "ToolchainError",
    "UnknownBoardError",
]
