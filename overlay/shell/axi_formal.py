"""The DMA engine's AXI master rules, checked formally with yosys.

The engine (``overlay/shell/dma.py``) is generated with Migen as the shell generates it, and the
property checker ``axi_props.sv`` is put inside its module, on its master port, ``halt``,
``drained`` and reset. Everything else the engine takes (commands, ``go``, ``abort``, the
buffer's read data, every ready and response of the slave) is a free input of the top
module, constrained only by the checker's assumptions (a legal AXI slave; the shell's halt
and reset contract). yosys' own SAT solver (``sat``, no external solver) then either

- proves every rule by temporal induction (:func:`prove`), or
- looks for a trace from reset that breaks one rule, up to a depth (:func:`find_violation`),
  which is how the broken copies in :data:`MUTANTS` are shown to fail.

Induction needs the rules to be inductive, and the rules alone are not: an unreachable state
(the engine's queue of write burst lengths disagreeing with what was sent on AW, a FIFO whose
level disagrees with its pointers) can keep every rule for any number of cycles and then
break one. So :func:`prove` also asserts the invariants in :data:`INVARIANTS`, which tie the
checker's bookkeeping to the engine's registers; they are proved along with the rules, not
assumed.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from fiberflow.boards.estimate import yowasp_cmd
from fiberflow.errors import ToolchainError

__all__ = [
    "INVARIANTS",
    "MUTANTS",
    "RULES",
    "Config",
    "Outcome",
    "broken",
    "engine_verilog",
    "find_violation",
    "prove",
]

# The rules of the checker, in the order of its CHECK bits (axi_props.sv).
RULES = ("len", "incr", "full", "4k", "wlast", "w_after_aw", "hold", "outstanding")
_ALL = (1 << len(RULES)) - 1
_Q = 8  # the checker's queue depth, above any max_outstanding checked


@dataclass(frozen=True)
class Config:
    """An engine configuration to check; the defaults are the shell's (``overlay/shell/top.py``:
    a 16-command queue, 24-bit local space, 4 bursts in flight, buffer reads of two cycles,
    commands that may wait for one of 4 lanes, whose idle flags are free inputs here).
    ``max_outstanding`` from 2 to 7 (the checker's queues hold 8 bursts; at 1 the engine's
    queue of lengths is a register, not the memory the invariants name)."""

    bus_bits: int = 64
    max_outstanding: int = 4
    queue_depth: int = 16
    local_bits: int = 24
    read_latency: int = 2
    lanes: int = 4

    def __post_init__(self) -> None:
        if not 2 <= self.max_outstanding < _Q:
            raise ValueError(f"max_outstanding must be 2 to {_Q - 1}, not {self.max_outstanding}")


@dataclass(frozen=True)
class Outcome:
    """What a yosys run said: ``ok`` is True when the proof succeeded (or no violation was
    found), ``steps`` the induction length or the failing step, ``log`` yosys' output."""

    ok: bool
    steps: int | None
    log: str


# Broken copies: mutant name -> (the rule it must break, text substitutions on the engine's
# generated Verilog), one per rule. Every old text must occur in the Verilog.
MUTANTS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    # bursts of up to 17 beats
    "len": ("len", (
        ("? to_4k[4:0] : 5'd16)", "? to_4k[4:0] : 5'd17)"),
        ("(to_4k < 5'd16)", "(to_4k < 5'd17)"),
    )),
    # FIXED read bursts
    "incr": ("incr", (("assign ar_payload_burst = 1'd1;", "assign ar_payload_burst = 1'd0;"),)),
    # half-width write beats
    "full": ("full", (
        ("assign aw_payload_size = {size};", "assign aw_payload_size = {size_half};"),
    )),
    # the 4 KiB cap forgotten
    "4k": ("4k", (("(to_4k < 5'd16)", "(1'd0)"),)),
    # WLAST one beat early
    "wlast": ("wlast", (
        ("(w_beat == lens_source_payload_len)", "((w_beat + 1'd1) == lens_source_payload_len)"),
    )),
    # W beats whether or not their AW was taken
    "w_after_aw": ("w_after_aw", (
        ("assign w_valid = (lens_source_valid & ", "assign w_valid = ("),
    )),
    # an address offered when halt rises is withdrawn
    "hold": ("hold", (("((~halt) | a_offered)", "(~halt)"),)),
    # one burst more in flight than allowed
    "outstanding": ("outstanding", (("(outstanding < {maxout})", "(outstanding <= {maxout})"),)),
}  # fmt: skip

# Invariants for the induction, over the engine's registers (as Migen names them) and the
# checker's bookkeeping (props_*). The FIFOs are LiteX SyncFIFOs: level, produce, consume.
INVARIANTS = (
    # bursts in flight: the engine's count is the bus's
    "props_arn <= {maxout} && props_awn <= {maxout} && props_bpend <= {maxout}",
    "outstanding == props_arn + props_awn + props_bpend",
    "outstanding <= {maxout}",
    "active || outstanding == 0",
    "mode || (props_awn == 0 && props_bpend == 0)",
    "!mode || props_arn == 0",
    # the W side: the engine's queue of burst lengths is the bursts whose W beats are owed
    "lens_level == props_awn",
    "lens_level <= {maxout}",
    "lens_consume < {depth} && lens_produce == (lens_consume + lens_level) % {depth}",
    "w_beat == props_wbeat",
    "lens_level == 0 ? w_beat == 0 : w_beat <= lens_source_payload_len",
    "props_awn == 0 || props_wbeat <= 15",
    # the W data FIFO never overflows, and holds what its pointers say
    "data_level + issued + {landing}inflight + arrived <= 8",
    "data_produce == (data_consume + data_level) % 8",
    # an address offered and not taken last cycle: the engine knows
    "a_offered == (props_ar_stuck || props_aw_stuck)",
    # the burst register belongs to the current address and count
    "!burst_ok || (burst == next_burst && (burst_len + 1) % 256 == next_burst)",
    "a_addr % {bytes} == 0",
    # drained: nothing in flight
    "!drained || (outstanding == 0 && !a_offered)",
)


def _render(text: str, cfg: Config) -> str:
    shift = cfg.bus_bits.bit_length() - 4

    def const(v: int) -> str:  # as Migen writes a constant: in its own width
        return f"{v.bit_length()}'d{v}"

    return text.format(
        size=const(shift),
        size_half=const(shift - 1),
        maxout=const(cfg.max_outstanding),
        depth=cfg.max_outstanding,
        bytes=cfg.bus_bits // 8,
        landing="".join(f"landing{i} + " for i in range(cfg.read_latency - 1)),
    )


def engine_verilog(cfg: Config) -> str:
    """The engine's Verilog, module ``dma``, its master port named ``m_axi_*``."""
    from migen import Module
    from migen.fhdl.verilog import convert

    from fiberflow.overlay.shell.axi_ports import axi_pads, pad_signals
    from fiberflow.overlay.shell.dma import DMAEngine
    from fiberflow.overlay.sim.tracer_scope import scope

    with scope():
        top = Module()
        d = DMAEngine(
            cfg.bus_bits,
            cfg.local_bits,
            cfg.max_outstanding,
            cfg.queue_depth,
            cfg.read_latency,
            lanes=cfg.lanes,
        )
        top.submodules.dma = d
        pads = axi_pads(d.axi, "m_axi", full=True)
        top.comb += d.axi.connect_to_pads(pads, mode="master")
        ios = set(pad_signals(pads))
        ios |= {d.ddr_addr, d.local_addr, d.length, d.to_ddr, d.zero, d.go, d.abort, d.halt}
        ios |= {d.drained, d.busy, d.buf_adr, d.buf_dat_w, d.buf_we, d.buf_dat_r}
        ios |= {d.after_lane, d.lane, d.lane_idle}
        return str(convert(top, ios=ios, name="dma"))


def _lens_storage(verilog: str) -> str:
    m = re.search(r"(\w+)\[lens_wrport_adr\] <= lens_wrport_dat_w;", verilog)
    if m is None:
        raise ToolchainError("the engine's Verilog has no lens FIFO memory; update axi_formal")
    return m.group(1)


def _instrument(verilog: str, cfg: Config, check: int, invariants: bool) -> str:
    """The engine's module with the checker inside it (and the invariants, if asked)."""
    bb = cfg.bus_bits // 8
    pins = {
        "clk": "sys_clk", "rst": "sys_rst", "halt": "halt", "drained": "drained",
        **{f"{c}_{s}": f"m_axi_{c}{s}" for c in ("aw", "ar")
           for s in ("valid", "ready", "addr", "len", "size", "burst")},
        **{f"w_{s}": f"m_axi_w{s}" for s in ("valid", "ready", "last", "data", "strb")},
        **{f"r_{s}": f"m_axi_r{s}" for s in ("valid", "ready", "last", "data", "resp")},
        **{f"b_{s}": f"m_axi_b{s}" for s in ("valid", "ready", "resp")},
    }  # fmt: skip
    outs = ("awn", "wbeat", "bpend", "arn", "rbeat", "ar_stuck", "aw_stuck")
    wires = [f"wire [7:0] props_{o};" for o in outs[:5]]
    wires += ["wire props_ar_stuck, props_aw_stuck;", f"wire [{8 * _Q - 1}:0] props_awq;"]
    conns = [f".{k}({v})" for k, v in pins.items()]
    conns += [f".{o}(props_{o})" for o in outs[:5]]
    conns += [".p_ar_stuck(props_ar_stuck)", ".p_aw_stuck(props_aw_stuck)"]
    conns.append(".awq_flat(props_awq)")
    params = f"#(.BYTES({bb}), .SIZE({bb.bit_length() - 1}), .MAXOUT({cfg.max_outstanding}), "
    params += f".Q({_Q}), .CHECK({check}))"
    body = [*wires, f"axi_master_props {params} props (", ",\n".join(conns), ");"]
    if invariants:
        mem = _lens_storage(verilog)
        n = cfg.max_outstanding  # the lens FIFO's depth
        body += [f"wire inv_{i} = {_render(inv, cfg)};" for i, inv in enumerate(INVARIANTS)]
        body.append("always @* begin")
        body += [f"    assert (inv_{i});" for i in range(len(INVARIANTS))]
        # Each length still owed in the engine's queue is the one the checker saw on AW.
        body.append("end")
        for k in range(n):
            slot = f"{mem}[(lens_consume + {k}) % {n}][7:0]"
            awq = f"props_awq[{8 * k + 7}:{8 * k}]"
            ok = f"{slot} == {awq} && {awq} <= 15"
            body.append(f"wire inv_slot{k} = lens_level <= {k} || ({ok});")
            body.append(f"always @* assert (inv_slot{k});")
    head, sep, tail = verilog.rpartition("endmodule")
    if not sep:
        raise ToolchainError("the engine's Verilog has no endmodule")
    return head + "\n".join(body) + "\nendmodule" + tail


def _mutate(verilog: str, cfg: Config, mutant: str) -> str:
    for old, new in MUTANTS[mutant][1]:
        old, new = _render(old, cfg), _render(new, cfg)
        if old not in verilog:
            raise ToolchainError(f"mutant {mutant!r}: {old!r} is not in the engine's Verilog")
        verilog = verilog.replace(old, new)
    return verilog


def _run(verilog: str, sat: str, sat_timeout_s: int) -> str:
    """Run ``sat`` (a yosys sat command, to which the per-solver-call timeout is added) on the
    instrumented engine and return yosys' log."""
    props = resources.files("fiberflow.overlay").joinpath("axi_props.sv").read_text()
    script = [
        "read_verilog -formal -sv dma.v axi_props.sv",
        "prep -top dma -flatten",
        "chformal -lower",
        "memory_map",
        "opt -fast",
        "dffunmap",
        f"{sat} -timeout {sat_timeout_s}",
    ]
    with tempfile.TemporaryDirectory(prefix="ff-formal-") as tmp:
        d = Path(tmp)
        (d / "dma.v").write_text(verilog)
        (d / "axi_props.sv").write_text(props)
        (d / "run.ys").write_text("\n".join(script) + "\n")
        cmd = [*yowasp_cmd("yosys"), "-q", "-l", "yosys.log", "run.ys"]
        try:
            # Each solver call has its own timeout; the whole run gets a multiple of it.
            proc = subprocess.run(
                cmd, cwd=d, capture_output=True, text=True, timeout=4 * sat_timeout_s + 60
            )
        except subprocess.TimeoutExpired:
            raise ToolchainError(
                f"yosys sat did not finish within {4 * sat_timeout_s + 60} s"
            ) from None
        log = (d / "yosys.log").read_text() if (d / "yosys.log").exists() else ""
        if proc.returncode != 0:
            out = (proc.stdout + proc.stderr)[-3000:]
            raise ToolchainError(f"yosys failed (exit {proc.returncode}):\n{out}")
        # A solver call that ran out of time proves nothing either way.
        if "Interrupted SAT solver: TIMEOUT!" in log:
            raise ToolchainError(f"yosys sat ran out of time (-timeout {sat_timeout_s} s)")
        return log


def _shown(cfg: Config, rules: tuple[str, ...], invariants: bool) -> str:
    names = [f"props.ok_{r}" for r in rules]
    if invariants:
        names += [f"inv_{i}" for i in range(len(INVARIANTS))]
        names += [f"inv_slot{k}" for k in range(cfg.max_outstanding)]
    return " ".join(f"-show {n}" for n in names)


def broken(log: str) -> list[str]:
    """The rules (``ok_<rule>``) and invariants (``inv_<n>``) that are 0 in the last step of
    the trace yosys printed for a failed proof."""
    rows = re.findall(r"^\s*(\d+)\s+\\(\S+)\s+(\d+)\s", log, re.M)
    if not rows:
        return []
    last = max(int(t) for t, _, _ in rows)
    return sorted({n.removeprefix("props.") for t, n, v in rows if int(t) == last and v == "0"})


def prove(
    cfg: Config, max_steps: int = 20, timeout_s: int = 600, mutant: str | None = None
) -> Outcome:
    """Prove every rule (and the invariants) by temporal induction, from the engine's reset
    state, with inductions up to ``max_steps`` long; ``timeout_s`` for each solver call. On
    the broken copy ``mutant`` if given (the proof must then fail)."""
    verilog = engine_verilog(cfg)
    if mutant is not None:
        verilog = _mutate(verilog, cfg, mutant)
    log = _run(
        _instrument(verilog, cfg, _ALL, invariants=True),
        f"sat -tempinduct -prove-asserts -set-assumes -maxsteps {max_steps} "
        + _shown(cfg, RULES, True),
        timeout_s,
    )
    steps = re.findall(r"\[induction step (\d+)\]", log)
    ok = "Induction step proven: SUCCESS" in log and "base case: FAIL" not in log
    return Outcome(ok=ok, steps=int(steps[-1]) if steps else None, log=log)


def find_violation(
    cfg: Config, rule: str, depth: int, mutant: str | None = None, timeout_s: int = 300
) -> Outcome:
    """Look for a trace from reset, at most ``depth`` cycles long, that breaks ``rule`` (the
    rules alone, no invariants), on the engine or on its broken copy ``mutant``. ``ok`` is
    True when there is none."""
    verilog = engine_verilog(cfg)
    if mutant is not None:
        verilog = _mutate(verilog, cfg, mutant)
    check = 1 << RULES.index(rule)
    log = _run(
        _instrument(verilog, cfg, check, invariants=False),
        f"sat -tempinduct -tempinduct-baseonly -prove-asserts -set-assumes -maxsteps {depth} "
        + _shown(cfg, (rule,), False),
        timeout_s,
    )
    steps = re.findall(r"\[base case (\d+)\]", log)
    failed = "base case: FAIL" in log
    return Outcome(ok=not failed, steps=int(steps[-1]) if failed and steps else None, log=log)
