"""Paths of a placed ECP5 netlist, estimated from the placement (boards/placed_paths.py), on
small hand-made netlists in nextpnr's ``--write`` JSON form."""

from __future__ import annotations

import pytest

from fiberflow.boards.placed_paths import (
    BRAM_CLK_TO_OUT,
    FF_CLK_TO_OUT,
    LUT,
    NET_UNIT,
    SETUP,
    slowest_paths,
)


def cell(kind: str, x: int, y: int, conns: dict[str, list[int]], outs: set[str], **params: str):
    return {
        "type": kind,
        "attributes": {"NEXTPNR_BEL": f"X{x}/Y{y}/SLICEA"},
        "parameters": params,
        "connections": conns,
        "port_directions": {p: "output" if p in outs else "input" for p in conns},
    }


def netlist(cells: dict) -> dict:
    return {"modules": {"top": {"cells": cells, "netnames": {}}}}


def test_a_far_net_costs_more_and_the_slowest_path_comes_first() -> None:
    # q0 -> LUT next to it -> d1 (near); q0 -> LUT 40 tiles away -> d2 there
    cells = {
        "q0": cell("TRELLIS_FF", 0, 0, {"Q": [1], "DI": [9]}, {"Q"}),
        "near": cell("TRELLIS_COMB", 1, 0, {"A": [1], "F": [2]}, {"F"}, MODE="LOGIC"),
        "d1": cell("TRELLIS_FF", 1, 0, {"DI": [2], "Q": [10]}, {"Q"}),
        "far": cell("TRELLIS_COMB", 40, 0, {"A": [1], "F": [3]}, {"F"}, MODE="LOGIC"),
        "d2": cell("TRELLIS_FF", 40, 0, {"DI": [3], "Q": [11]}, {"Q"}),
    }
    first, second = slowest_paths(netlist(cells), top=2)[:2]
    # the far net spans 40 tiles: 6 + 35 + 2 * 5 units; the nets beside a cell, 6 units
    assert first.end == "d2.DI" and first.ns == pytest.approx(
        FF_CLK_TO_OUT + NET_UNIT * 51 + LUT + NET_UNIT * 6 + SETUP
    )
    assert second.end == "d1.DI" and second.ns < first.ns
    assert first.steps[0].endswith("q0.Q") and first.steps[-2].endswith("far.F")
    assert first.steps[-1].endswith("d2.DI")


def test_block_ram_output_and_carry_chains_and_constants() -> None:
    # a block RAM's word through a two-cell carry chain into a flip-flop; a constant driver
    # starts no path
    cells = {
        "$PACKER_VCC": cell("TRELLIS_COMB", 9, 9, {"F": [5]}, {"F"}, MODE="LOGIC"),
        "ram": cell("DP16KD", 0, 0, {"DOA0": [1], "ADA0": [5]}, {"DOA0"}),
        "c0": cell("TRELLIS_COMB", 0, 1, {"A": [1], "FCO": [2]}, {"FCO"}, MODE="CCU2"),
        "c1": cell("TRELLIS_COMB", 0, 1, {"FCI": [2], "F": [3]}, {"F"}, MODE="CCU2"),
        "d": cell("TRELLIS_FF", 0, 1, {"DI": [3], "Q": [4]}, {"Q"}),
    }
    (path,) = slowest_paths(netlist(cells), top=5)
    assert path.end == "d.DI"
    assert path.ns > BRAM_CLK_TO_OUT + 2 * LUT  # the RAM's slow output starts it
    assert "DP16KD" in path.steps[0]
