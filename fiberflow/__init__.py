"""fiberflow: sparse tensor algebra on FPGA fabric, with bit-exact emulation.

The public API is re-exported here; import it as ``import fiberflow as ff``.
"""

from fiberflow._version import __version__
from fiberflow.errors import (
    CoordinateError,
    DeviceError,
    DeviceTimeoutError,
    DTypeError,
    FiberflowError,
    FormatError,
    ImageError,
    ShapeError,
    TileShapeError,
    ToolchainError,
)
from fiberflow.host.compiler.kernel import Kernel, compile, run
from fiberflow.host.compiler.named import add, multiply, sddmm, spgemm, spmspv
from fiberflow.host.devices.device import Buffer, Device
from fiberflow.host.devices.devices import open
from fiberflow.host.devices.resident import ResidentMatrix
from fiberflow.host.formats.formats import Format
from fiberflow.host.formats.tensor import Tensor
from fiberflow.host.images.dma_image import DmaImage
from fiberflow.host.images.pack import pack, unpack
from fiberflow.host.kernels import spmm, spmv
from fiberflow.host.linop import aslinearoperator
from fiberflow.host.stats import RunStats

__all__ = [
    "Buffer",
    "CoordinateError",
    "DTypeError",
    "Device",
    "DeviceError",
    "DeviceTimeoutError",
    "DmaImage",
    "FiberflowError",
    "Format",
    "FormatError",
    "ImageError",
    "Kernel",
    "ResidentMatrix",
    "RunStats",
    "ShapeError",
    "Tensor",
    "TileShapeError",
    "ToolchainError",
    "__version__",
    "add",
    "aslinearoperator",
    "compile",
    "multiply",
    "open",
    "pack",
    "run",
    "sddmm",
    "spgemm",
    "spmm",
    "spmspv",
    "spmv",
    "unpack",
]
