"""The slowest register-to-register paths of a design placed (not routed) by nextpnr-ecp5.

nextpnr reports an Fmax after placement but names no path until it has routed, and routing
the whole default shell takes over an hour on a small machine. This module reads the placed
netlist (nextpnr ``--write``) and estimates every path's delay the way a placer sees it: a net
costs a fixed part plus a part that grows with the Manhattan distance between its driver's and
its sink's tiles, and each cell adds a fixed delay (a LUT, a carry step, block RAM
clock-to-output). It is an estimate for finding what to pipeline, not a timing sign-off.

The constants were fitted so that the worst path of two placements of the default PYNQ-Z2
shell matches nextpnr's own Fmax estimate after placement: one lane 64.2 MHz (nextpnr 64.6),
four lanes 51.4 MHz (nextpnr 50.6). The paths it named (the CPU's buffer-read multiplexer,
the lanes' buffer-port select) were the ones whose pipelining then raised nextpnr's figure.

Run ``python -m fiberflow.boards.placed_paths PLACED.json [--top N]``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["PlacedPath", "slowest_paths"]

NET_UNIT, DIRECT = 0.08, 0.05  # ns: a net costs NET_UNIT * _reach(dx, dy), or DIRECT (below)
LUT, LUT_TO_WIDE, WIDE_MUX, CARRY, CARRY_IN = 0.225, 0.375, 0.175, 0.275, 0.03  # ns in a slice
LUT_RAM_WRITE = 0.1  # ns from a LUT RAM's write port cell to its slices
BRAM_CLK_TO_OUT, FF_CLK_TO_OUT, SETUP = 4.5, 0.45, 0.2  # ns
DSP_COMB = 4.2  # ns through a MULT18X18D without its registers
# Connections inside a slice or along a carry chain: no general routing.
_DIRECT_SINKS = {"FCI", "FXA", "FXB"}
_LUT_RAM_OUTS = {f"WADO{i}" for i in range(4)} | {f"WDO{i}" for i in range(4)}


@dataclass(frozen=True)
class PlacedPath:
    ns: float  # estimated delay, clock-to-output to setup
    end: str  # "cell.port" the path ends at
    # "arrival ns, cell type (x, y) cell.port" from its start to its end (with the setup time)
    steps: tuple[str, ...]

    @property
    def mhz(self) -> float:
        return 1000.0 / self.ns

    def summary(self) -> str:
        return f"{self.ns:.2f} ns ({self.mhz:.1f} MHz) -> {self.end}"


def _reach(dx: int, dy: int) -> int:
    """Distance units of a net spanning dx by dy tiles: nearby tiles cost double (local
    routing), far ones are reached by longer wires."""
    return 6 + max(dx - 5, 0) + max(dy - 5, 0) + 2 * (min(dx, 5) + min(dy, 5))


def _loc(cell: dict) -> tuple[int, int]:
    m = re.match(r"X(\d+)/Y(\d+)/", cell.get("attributes", {}).get("NEXTPNR_BEL", ""))
    return (int(m[1]), int(m[2])) if m else (0, 0)


def _through(cell: dict, port: str) -> list[tuple[str, float]]:
    """The outputs a signal on input ``port`` reaches combinationally, with their delays."""
    kind = cell["type"]
    if kind == "TRELLIS_COMB":
        if port in ("A", "B", "C", "D"):
            out = [("F", LUT), ("OFX", LUT_TO_WIDE)]
            if cell["parameters"].get("MODE") == "CCU2":
                out.append(("FCO", CARRY))
            return out
        if port in ("FXA", "FXB", "M"):
            return [("OFX", WIDE_MUX)]
        if port == "FCI":
            return [("FCO", CARRY_IN), ("F", LUT)]
        return []
    if kind == "TRELLIS_RAMW":  # the write port of a LUT RAM: passes straight to its slices
        return [(p, LUT_RAM_WRITE) for p in _LUT_RAM_OUTS]
    if kind == "MULT18X18D" and not any(cell["connections"].get(f"CLK{i}") for i in range(4)):
        if re.fullmatch(r"[AB]\d+", port):
            return [(f"P{i}", DSP_COMB) for i in range(36)]
    return []


def _launch(cell: dict, port: str) -> float | None:
    """Clock-to-output of a path starting at ``port``, or None if paths do not start there."""
    if cell["type"] == "TRELLIS_FF" and port == "Q":
        return FF_CLK_TO_OUT
    if cell["type"] == "DP16KD" and port.startswith("DO"):
        return BRAM_CLK_TO_OUT
    return None


def _captures(cell: dict, port: str) -> bool:
    kind = cell["type"]
    if kind == "TRELLIS_FF":
        return port in ("DI", "M", "CE", "LSR")
    if kind == "DP16KD":
        return re.match(r"(AD|DI|WE|CE|CS)", port) is not None
    if kind == "TRELLIS_COMB":  # a LUT RAM's write address, data and enable
        return port in ("WAD0", "WAD1", "WAD2", "WAD3", "WD", "WRE", "DI0", "DI1")
    return False


def slowest_paths(placed: dict, top: int = 10) -> list[PlacedPath]:
    """The ``top`` slowest paths of a placed netlist (nextpnr's ``--write`` JSON), slowest
    first, one per endpoint register (bits of one register count once)."""
    (module,) = placed["modules"].values()
    cells = module["cells"]
    driver: dict[int, tuple[str, str]] = {}
    for name, cell in cells.items():
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) == "output":
                driver.update((b, (name, port)) for b in bits if isinstance(b, int))
    # net bit -> (arrival ns, (net bit it came from, or None)), filled depth first
    arrival: dict[int, tuple[float, int | None]] = {}
    visiting: set[int] = set()

    def at_sink(bit: int, sink: str, port: str) -> float:
        """When the net bit's value reaches ``sink.port``."""
        if bit not in driver:
            return 0.0
        source, out = driver[bit]
        if source.startswith("$PACKER_"):  # constant drivers start no path
            return float("-inf")
        t = arrive(bit)[0]
        if port in _DIRECT_SINKS or out in _LUT_RAM_OUTS:
            return t + DIRECT
        (x0, y0), (x1, y1) = _loc(cells[source]), _loc(cells[sink])
        return t + NET_UNIT * _reach(abs(x0 - x1), abs(y0 - y1))

    def arrive(bit: int) -> tuple[float, int | None]:
        if bit in arrival:
            return arrival[bit]
        if bit in visiting:  # a combinational loop: left out, as nextpnr's --ignore-loops does
            return (float("-inf"), None)
        visiting.add(bit)
        name, port = driver[bit]
        cell = cells[name]
        best: tuple[float, int | None] = (float("-inf"), None)
        launch = _launch(cell, port)
        if launch is not None:
            best = (launch, None)
        else:
            for inp, bits in cell["connections"].items():
                if cell["port_directions"].get(inp) == "output":
                    continue
                for out, delay in _through(cell, inp):
                    if out != port:
                        continue
                    for b in bits:
                        if isinstance(b, int):
                            t = at_sink(b, name, inp) + delay
                            if t > best[0]:
                                best = (t, b)
        visiting.discard(bit)
        arrival[bit] = best
        return best

    ends = []
    for name, cell in cells.items():
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) == "output" or not _captures(cell, port):
                continue
            for b in bits:
                if isinstance(b, int) and b in driver:
                    t = at_sink(b, name, port) + SETUP
                    if t > 0:
                        ends.append((t, b, name, port))
    ends.sort(key=lambda e: e[0], reverse=True)
    out: list[PlacedPath] = []
    seen: set[str] = set()
    for t, bit, name, port in ends:
        register = re.sub(r"_\d+$", "", re.sub(r"\.\d+(\.\d+)?", "", name))
        if register in seen:
            continue
        seen.add(register)
        steps = (*_steps(bit, cells, driver, arrive), _step(t, cells, name, port))
        out.append(PlacedPath(t, f"{name}.{port}", steps))
        if len(out) == top:
            break
    return out


def _steps(
    bit: int | None,
    cells: dict,
    driver: dict[int, tuple[str, str]],
    arrive: Callable[[int], tuple[float, int | None]],
) -> Iterator[str]:
    """The path into ``bit``, from its start."""
    chain = []
    while bit is not None:
        name, port = driver[bit]
        t, bit = arrive(bit)
        chain.append(_step(t, cells, name, port))
    yield from reversed(chain)


def _step(t: float, cells: dict, name: str, port: str) -> str:
    """One step of a path: "arrival ns, cell type (x, y) cell.port"."""
    return f"{t:6.2f} ns {cells[name]['type']} {_loc(cells[name])} {name}.{port}"


def main() -> None:
    import json

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("placed", help="nextpnr-ecp5 --write JSON of the placed design")
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--steps", type=int, default=1, help="print the steps of the first N")
    args = ap.parse_args()
    with open(args.placed) as f:
        paths = slowest_paths(json.load(f), args.top)
    for i, p in enumerate(paths):
        print(p.summary())
        if i < args.steps:
            print("\n".join("    " + s for s in p.steps))


if __name__ == "__main__":
    main()
