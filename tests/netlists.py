"""Hand-made yosys JSON netlists for the timing tests: one cell of a given type and ports."""

from __future__ import annotations


def cell(kind: str, ins: dict[str, list], outs: dict[str, list]) -> dict:
    """A yosys JSON cell of type ``kind``: input and output ports mapped to their net bits."""
    return {
        "type": kind,
        "port_directions": {**{p: "input" for p in ins}, **{p: "output" for p in outs}},
        "connections": {**ins, **outs},
    }
