"""Tensor formats: format strings, fibertrees, :class:`~fiberflow.host.formats.tensor.Tensor`
and the value types. Nothing here knows about tiles, images or devices."""
