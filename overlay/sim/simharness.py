"""Run any :class:`~fiberflow.overlay.primitives.primitive.Primitive` in Verilator, driven from
Python.

:class:`StreamSim` generates a C++ harness for the block's ports (N input streams, M output
streams, config inputs, memory ports), builds it once with
:func:`fiberflow.overlay.sim.verilator_build.build`, and runs whole token streams per call with the
cycle loop in C:

* input streams offer their next token with probability ``p_valid`` per cycle (random bubbles);
  once offered, a token is held until taken (the transfer rules of ``docs/streams.md``);
* output streams are ready with probability ``p_ready`` per cycle (random backpressure), and the
  harness checks that a stalled output keeps its token unchanged;
* read ports return ``mem[adr]`` one cycle after the address; write ports write at the edge;
* the run ends when every output has carried as many done tokens as the first input has
  (or, for blocks without outputs, when every input is consumed and the block has idled for
  16 cycles), or fails at ``max_cycles`` (the timeout).

The PRNG is seeded, so a failing run can be replayed exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fiberflow.errors import DeviceError, DeviceTimeoutError
from fiberflow.overlay.primitives.primitive import Primitive
from fiberflow.overlay.primitives.stream import Token, decode_many, encode_many
from fiberflow.overlay.sim.verilator_build import build, ffi_of

__all__ = ["SimResult", "StreamSim"]

_CDEF = """
int run(const uint64_t **in, const int64_t *in_len, uint64_t **out, const int64_t *out_cap,
        int64_t *out_len, uint32_t **rmem, const int64_t *rmem_len, uint32_t **wmem,
        const int64_t *wmem_len, const uint32_t *cfg, uint32_t p_valid, uint32_t p_ready,
        uint64_t seed, int64_t max_cycles, int64_t *info);
"""

_STATUS = {
    1: "timed out",
    2: "produced more tokens than the output buffer holds",
    3: "changed or dropped a token on a stalled output (transfer rule broken)",
    4: "addressed memory outside the array",
}


@dataclass
class SimResult:
    outputs: list[list[Token]]
    cycles: int  # cycles from the end of reset to the end of the run
    mems: dict[str, np.ndarray] = field(default_factory=dict)
    words: list[np.ndarray] = field(default_factory=list)  # raw output words


def _harness(prim: Primitive, has_clk: bool) -> str:
    n_in, n_out = len(prim.sinks), len(prim.sources)
    L: list[str] = [
        '#include "Vtop.h"',
        '#include "verilated.h"',
        "#include <stdint.h>",
        "static uint64_t s;",
        "static inline uint32_t rnd16() { s ^= s << 13; s ^= s >> 7; s ^= s << 17;"
        " return (uint32_t)(s >> 20) & 0xffff; }",
        'extern "C" int run(const uint64_t **in, const int64_t *in_len, uint64_t **out,',
        "    const int64_t *out_cap, int64_t *out_len, uint32_t **rmem, const int64_t *rmem_len,",
        "    uint32_t **wmem, const int64_t *wmem_len, const uint32_t *cfg, uint32_t p_valid,",
        "    uint32_t p_ready, uint64_t seed, int64_t max_cycles, int64_t *info) {",
        "  VerilatedContext ctx; Vtop t(&ctx);",
        "  s = seed * 2654435761ULL + 88172645463325252ULL;",
        f"  int64_t idx[{max(n_in, 1)}] = {{0}}; int vin[{max(n_in, 1)}] = {{0}};",
        f"  int got_done[{max(n_out, 1)}] = {{0}}; int stalled[{max(n_out, 1)}] = {{0}};",
        f"  uint64_t last[{max(n_out, 1)}] = {{0}};",
        f"  uint64_t radr[{max(len(prim.rd_ports), 1)}] = {{0}};",
        "  int status = 1; int64_t cyc = 0, idle = 0, want_done = info[0];",
    ]
    for k in range(n_out):
        L.append(f"  out_len[{k}] = 0;")
    for i, c in enumerate(prim.cfg):
        L.append(f"  t.{_name(c)} = cfg[{i}];")
    clk = "t.sys_clk" if has_clk else None
    if clk:
        L += [
            "  t.sys_rst = 1;",
            "  for (int i = 0; i < 3; i++) { t.sys_clk = 0; t.eval(); t.sys_clk = 1; t.eval(); }",
            "  t.sys_rst = 0; t.sys_clk = 0; t.eval();",
        ]
    L.append("  for (cyc = 0; cyc < max_cycles; cyc++) {")
    for k, ep in enumerate(prim.sinks):
        n = ep.name
        L += [
            f"    if (!vin[{k}] && idx[{k}] < in_len[{k}] && rnd16() < p_valid) vin[{k}] = 1;",
            f"    t.{n}_valid = vin[{k}];",
            f"    if (vin[{k}]) {{ t.{n}_payload_data = (uint32_t)in[{k}][idx[{k}]];"
            f" t.{n}_payload_kind = (uint32_t)(in[{k}][idx[{k}]] >> 32); }}",
        ]
    for ep in prim.sources:
        L.append(f"    t.{ep.name}_ready = rnd16() < p_ready;")
    L.append("    t.eval();")
    for k, ep in enumerate(prim.sources):
        n = ep.name
        L += [
            f"    if (t.{n}_valid) {{",
            f"      uint64_t w = ((uint64_t)t.{n}_payload_kind << 32) | t.{n}_payload_data;",
            f"      if (stalled[{k}] && w != last[{k}]) {{ status = 3; break; }}",
            f"      last[{k}] = w;",
            f"      if (t.{n}_ready) {{",
            f"        if (out_len[{k}] >= out_cap[{k}]) {{ status = 2; break; }}",
            f"        out[{k}][out_len[{k}]++] = w; stalled[{k}] = 0;",
            f"        if ((w >> 32) == 2) got_done[{k}]++;",
            f"      }} else stalled[{k}] = 1;",
            f"    }} else if (stalled[{k}]) {{ status = 3; break; }}",
        ]
    for k, ep in enumerate(prim.sinks):
        L.append(
            f"    if (vin[{k}] && t.{ep.name}_ready) {{ idx[{k}]++; vin[{k}] = 0; idle = 0; }}"
        )
    for k, p in enumerate(prim.rd_ports):
        L.append(f"    radr[{k}] = t.{p.name}_adr;")
    for k, p in enumerate(prim.wr_ports):
        L += [
            f"    if (t.{p.name}_we) {{",
            f"      if ((int64_t)t.{p.name}_adr >= wmem_len[{k}]) {{ status = 4; break; }}",
            f"      wmem[{k}][t.{p.name}_adr] = t.{p.name}_dat; idle = 0;",
            "    }",
        ]
    if clk:
        L.append("    t.sys_clk = 1; t.eval(); t.sys_clk = 0;")
    for k, p in enumerate(prim.rd_ports):
        L += [
            f"    if ((int64_t)radr[{k}] < rmem_len[{k}]) t.{p.name}_dat = rmem[{k}][radr[{k}]];",
            f"    else t.{p.name}_dat = 0xdeadbeef;",
        ]
    L.append("    t.eval();")
    if n_out:
        cond = " && ".join(f"got_done[{k}] >= want_done" for k in range(n_out))
        L.append(f"    if ({cond}) {{ status = 0; cyc++; break; }}")
    else:
        cond = " && ".join(f"idx[{k}] == in_len[{k}]" for k in range(n_in)) or "1"
        L.append(f"    if ({cond} && ++idle > 16) {{ status = 0; cyc++; break; }}")
    L += ["  }", "  info[0] = cyc;", "  t.final();", "  return status;", "}"]
    return "\n".join(L) + "\n"


def _name(sig: object) -> str:
    return sig.backtrace[-1][0]  # type: ignore[attr-defined]  # Signal(name=...) puts it here


class StreamSim:
    """A primitive built for Verilator, ready to run token streams.

    ``prim`` is used up by the build (Migen modules are single-use): pass a fresh instance.
    """

    def __init__(self, name: str, prim: Primitive, flags: Sequence[str] = ()) -> None:
        self.name = name
        self.in_names = [ep.name for ep in prim.sinks]
        self.out_names = [ep.name for ep in prim.sources]
        self.cfg_names = [_name(c) for c in prim.cfg]
        self.rd_names = [p.name for p in prim.rd_ports]
        self.wr_names = [p.name for p in prim.wr_ports]
        text = prim.to_verilog("top")
        harness = _harness(prim, has_clk="sys_clk" in text)
        self.lib = build(
            name=name,
            verilog={"top.v": text},
            top="top",
            harness=harness,
            cdef=_CDEF,
            flags=("-Wno-fatal", "-Wno-lint", "-Wno-style", *flags),
        )
        self.ffi = ffi_of(self.lib)

    def run(
        self,
        inputs: Sequence[Sequence[Token]] | Mapping[str, Sequence[Token]],
        cfg: Mapping[str, int] | None = None,
        rmem: Mapping[str, np.ndarray] | None = None,
        wmem: Mapping[str, int | np.ndarray] | None = None,
        p_valid: float = 1.0,
        p_ready: float = 1.0,
        seed: int = 0,
        max_cycles: int | None = None,
        out_cap: int | None = None,
        decode: bool = True,
    ) -> SimResult:
        """Stream ``inputs`` through the block; return every output token and the cycle count.

        An input may also be a uint64 array of encoded words; ``decode=False`` skips building
        token objects (use ``result.words``), for million-token runs. ``rmem`` gives the arrays
        behind the read ports (uint32), ``wmem`` the sizes (or initial
        arrays) behind the write ports. Raises :class:`DeviceTimeoutError` after ``max_cycles``
        (default: 50 per input token + 10,000), :class:`DeviceError` on a broken transfer rule.
        """
        if isinstance(inputs, Mapping):
            inputs = [inputs[n] for n in self.in_names]
        if len(inputs) != len(self.in_names):
            raise ValueError(f"{self.name} has inputs {self.in_names}, got {len(inputs)} streams")
        words = [
            np.ascontiguousarray(s if isinstance(s, np.ndarray) else encode_many(s), np.uint64)
            for s in inputs
        ]
        total = sum(len(w) for w in words)
        cap = out_cap or 4 * total + 65536
        outs = [np.zeros(cap, dtype=np.uint64) for _ in self.out_names]
        cfg = dict(cfg or {})
        unknown = set(cfg) - set(self.cfg_names)
        if unknown:
            raise ValueError(f"{self.name} has config inputs {self.cfg_names}, not {unknown}")
        cfg_arr = np.array([cfg.get(n, 0) for n in self.cfg_names] or [0], dtype=np.uint32)
        rarr = [
            np.ascontiguousarray((rmem or {}).get(n, np.zeros(1)), dtype=np.uint32)
            for n in self.rd_names
        ]
        warr = []
        for n in self.wr_names:
            spec = (wmem or {}).get(n, 0)
            a = np.zeros(spec, np.uint32) if np.isscalar(spec) else np.array(spec, np.uint32)
            warr.append(np.ascontiguousarray(a))
        ffi = self.ffi

        def ptrs(arrs: list[np.ndarray], ctype: str) -> object:
            return ffi.new(f"{ctype} *[]", [ffi.from_buffer(f"{ctype}[]", a) for a in arrs] or 1)

        def lens(arrs: list[np.ndarray]) -> object:
            return ffi.new("int64_t[]", [len(a) for a in arrs] or [0])

        out_len = ffi.new("int64_t[]", max(len(outs), 1))
        # Every output ends after as many done tokens as the first input carries.
        n_done = int(np.count_nonzero((words[0] >> np.uint64(32)) == 2)) if words else 0
        info = ffi.new("int64_t[]", [max(n_done, 1)])
        limit = max_cycles if max_cycles is not None else 50 * total + 10_000
        status = self.lib.run(
            ptrs(words, "uint64_t"),
            lens(words),
            ptrs(outs, "uint64_t"),
            lens(outs),
            out_len,
            ptrs(rarr, "uint32_t"),
            lens(rarr),
            ptrs(warr, "uint32_t"),
            lens(warr),
            ffi.from_buffer("uint32_t[]", cfg_arr),
            min(int(p_valid * 65536), 65536),
            min(int(p_ready * 65536), 65536),
            seed,
            limit,
            info,
        )
        got = [o[: out_len[k]] for k, o in enumerate(outs)]
        if status == 1:
            raise DeviceTimeoutError(
                f"{self.name}: no done token on every output after {limit} cycles; outputs so "
                f"far: {[decode_many(g[-8:]) for g in got]} (last 8 tokens each)"
            )
        if status:
            raise DeviceError(f"{self.name}: the block {_STATUS.get(status, status)}")
        return SimResult(
            outputs=[decode_many(g) for g in got] if decode else [],
            cycles=int(info[0]),
            mems=dict(zip(self.wr_names, warr, strict=True)),
            words=got,
        )
