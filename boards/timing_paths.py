"""The deepest register-to-register paths of a design, one per endpoint, for finding what to
pipeline: :func:`fiberflow.boards.timing.logic_depth` gives only the single longest path.

Same measure as :mod:`fiberflow.boards.timing` (yosys ``synth_xilinx -family xc7``, LUT/MUXF
levels with CARRY4 apart, cut at flip-flops, RAMs and DSPs). An endpoint is named by the
register its path ends in (the flip-flop's output net, bit index dropped, so the bits of one
register count once) or by the RAM/DSP cell and port.

Run ``python -m fiberflow.boards.timing_paths`` for the shell with placeholder lanes (the
default overlay's other settings); ``--kernels`` for the default overlay with its lanes,
``--exclude REGEX`` to leave endpoints out (e.g. ``lanes_``).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from fiberflow.boards.timing import depths, xc7_netlist

__all__ = ["Endpoint", "endpoints"]

_CLOCKS = {"C", "CLK", "CLKARDCLK", "CLKBWRCLK"}


@dataclass(frozen=True)
class Endpoint:
    name: str  # the register (or "RAM cell.port") the path ends in
    lut_levels: int
    carry: int
    start: str  # the register or RAM the path starts from
    path: tuple[str, ...]  # "type net" of its cells, from start to end

    def summary(self) -> str:
        return f"{self.lut_levels:3d} LUT + {self.carry:2d} CARRY4  {self.start} -> {self.name}"


def endpoints(netlist: dict, top: str, exclude: str | None = None) -> list[Endpoint]:
    """Every endpoint's deepest path, deepest first (LUT levels, then CARRY4); endpoints whose
    name matches the regular expression ``exclude`` are left out."""
    module = netlist["modules"][top]
    cells = module["cells"]
    names: dict[int, str] = {}  # a net bit's name, a user's name before yosys' own
    for net, info in module["netnames"].items():
        bits = info["bits"]
        for i, b in enumerate(bits):
            if isinstance(b, int) and (b not in names or names[b].startswith("$")):
                names[b] = f"{net}[{i}]" if len(bits) > 1 else net
    driver: dict[int, str] = {}
    for cname, c in cells.items():
        for port, bits in c["connections"].items():
            if c["port_directions"].get(port) == "output":
                driver.update((b, cname) for b in bits if isinstance(b, int))

    def out_name(cname: str) -> str:
        c = cells[cname]
        for port, bits in c["connections"].items():
            if c["port_directions"].get(port) == "output":
                for b in bits:
                    if isinstance(b, int) and b in names:
                        return names[b]
        return cname

    def inputs(cname: str) -> list[str]:
        c = cells[cname]
        return [
            driver[b]
            for port, bits in c["connections"].items()
            if c["port_directions"].get(port) == "input" and port not in _CLOCKS
            for b in bits
            if isinstance(b, int) and b in driver and driver[b] != cname
        ]

    # The deepest path into every combinational cell, as timing.longest_path measures it.
    comb, best = depths(cells)

    def start_of(cname: str) -> str:
        starts = sorted(p for p in inputs(cname) if p not in comb)
        return out_name(starts[0]) if starts else "(top-level input)"

    found: dict[str, Endpoint] = {}
    for cname, c in cells.items():
        if cname in comb:
            continue
        is_ff = c["type"].startswith(("FD", "LD"))
        for port, bits in c["connections"].items():
            if c["port_directions"].get(port) != "input" or port in _CLOCKS:
                continue
            for b in bits:
                last = driver.get(b) if isinstance(b, int) else None
                if last is None or last not in best:
                    continue
                levels, carry, _ = best[last]
                key = re.sub(r"\[\d+\]$", "", out_name(cname)) if is_ff else f"{cname}.{port}"
                if key in found and (found[key].lut_levels, found[key].carry) >= (levels, carry):
                    continue
                path: list[str] = []
                n: str | None = last
                first = last
                while n is not None:
                    path.append(f"{cells[n]['type']} {out_name(n)}")
                    first = n
                    n = best[n][2]
                found[key] = Endpoint(key, levels, carry, start_of(first), tuple(reversed(path)))
    ends = sorted(found.values(), key=lambda e: (e.lut_levels, e.carry), reverse=True)
    if exclude:
        ends = [e for e in ends if not re.search(exclude, e.name)]
    return ends


def main(argv: list[str] | None = None) -> int:
    from fiberflow.overlay.shell import top

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernels", action="store_true", help="the default overlay with its lanes")
    ap.add_argument("--exclude", help="leave out endpoints matching this regular expression")
    ap.add_argument("-n", type=int, default=20, help="endpoints to show")
    args = ap.parse_args(argv)
    cfg = top.ShellConfig() if args.kernels else top.ShellConfig(kernels=())
    for e in endpoints(xc7_netlist(top.verilog(cfg), top.TOP), top.TOP, args.exclude)[: args.n]:
        print(e.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
