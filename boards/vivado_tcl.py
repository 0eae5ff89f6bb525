"""The Vivado side of a build: a Verilog wrapper that makes the overlay a block-design module
reference, and the batch TCL script that builds the block design, runs synthesis and
implementation, and exports the ``.bit`` / ``.hwh`` pair PYNQ loads, but only when the
routed design meets timing (setup and hold) at the fabric clock: otherwise it stops with the
worst path named and copies nothing.

The script targets Vivado 2022.2 to 2024.1 (docs/deploy.md): it names no IP version (it asks
``get_ipdefs`` for the newest installed one), falls back to the newest installed revision of
the board part, and finds the generated wrapper and hardware handoff through Vivado rather
than through version-specific project paths. tests/test_build.py runs every generated script
in ``tclsh`` against stub Vivado commands that check each call's options and argument count.

Block design (one clock domain, the PS's first fabric clock)::

    PS (ps7 / zynq_ultra_ps_e) --M_AXI_GP0 / M_AXI_HPM0_FPD--> SmartConnect --> overlay S_AXI_CTRL
    overlay M_AXI<e> --> SmartConnect --> PS S_AXI_HP<e>[_FPD]        (one per DMA engine)
    FCLK_CLK0 / pl_clk0 --> every aclk;  proc_sys_reset --> every aresetn
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fiberflow.boards import Board
from fiberflow.errors import BuildError

__all__ = [
    "BD_NAME",
    "OVERLAY_NAME",
    "VIVADO_VERSIONS",
    "WRAPPER",
    "Port",
    "parse_ports",
    "tcl_script",
    "wrapper_verilog",
]

VIVADO_VERSIONS = ("2022.2", "2024.1")  # first and last release the script is written for
WRAPPER = "fiberflow_overlay"  # the module-reference wrapper around the overlay's top
BD_NAME = "fiberflow_bd"
OVERLAY_NAME = "fiberflow"  # PYNQ loads overlay/fiberflow.bit with overlay/fiberflow.hwh

# AXI signals the wrapper exposes, in the order Vivado lists them. Sideband signals the overlay
# may also have (user, region) are tied off inside the wrapper: the PS ports do not use them.
_AXI_FULL = {
    "aw": ("id", "addr", "len", "size", "burst", "lock", "cache", "prot", "qos", "valid",
           "ready"),
    "w": ("data", "strb", "last", "valid", "ready"),
    "b": ("id", "resp", "valid", "ready"),
    "ar": ("id", "addr", "len", "size", "burst", "lock", "cache", "prot", "qos", "valid",
           "ready"),
    "r": ("id", "data", "resp", "last", "valid", "ready"),
}  # fmt: skip
_AXI_LITE = {
    "aw": ("addr", "prot", "valid", "ready"),
    "w": ("data", "strb", "valid", "ready"),
    "b": ("resp", "valid", "ready"),
    "ar": ("addr", "prot", "valid", "ready"),
    "r": ("data", "resp", "valid", "ready"),
}


@dataclass(frozen=True)
class Port:
    name: str
    direction: str  # "input" or "output"
    width: int


_PORT = re.compile(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):(\d+)\]\s+)?(\w+)\s*,?\s*$")


def parse_ports(verilog: str, top: str) -> list[Port]:
    """The ports of module ``top`` in ``verilog`` (ANSI-style header, one port per line, as
    Migen writes it)."""
    m = re.search(rf"^module\s+{re.escape(top)}\s*\((.*?)\);", verilog, re.M | re.S)
    if not m:
        raise BuildError(f"the overlay's Verilog has no module {top!r}")
    ports = []
    for line in m.group(1).splitlines():
        if not line.strip():
            continue
        p = _PORT.match(line)
        if not p:
            raise BuildError(f"cannot read port declaration {line.strip()!r} of module {top}")
        direction, msb, lsb, name = p.groups()
        width = abs(int(msb) - int(lsb)) + 1 if msb is not None else 1
        ports.append(Port(name, direction, width))
    return ports


@dataclass(frozen=True)
class _Bus:
    prefix: str  # Verilog prefix in the overlay, e.g. "s_axil" or "m_axi0"
    intf: str  # interface name in the block design, e.g. "S_AXI_CTRL" or "M_AXI0"
    lite: bool
    master: bool
    signals: dict[str, Port]  # "awaddr" -> port


def _buses(ports: list[Port]) -> tuple[_Bus, list[_Bus], dict[str, Port]]:
    """Group the overlay's ports: (control slave, DMA masters, other ports by name)."""
    by_prefix: dict[str, dict[str, Port]] = {}
    other: dict[str, Port] = {}
    for p in ports:
        m = re.fullmatch(r"(s_axil|m_axi\d+)_(\w+)", p.name)
        if m:
            by_prefix.setdefault(m.group(1), {})[m.group(2)] = p
        else:
            other[p.name] = p
    if "s_axil" not in by_prefix:
        raise BuildError("the overlay has no AXI4-Lite control slave (ports s_axil_*)")
    control = _Bus("s_axil", "S_AXI_CTRL", True, False, by_prefix.pop("s_axil"))
    masters = [
        _Bus(prefix, f"M_AXI{prefix[5:]}", False, True, sigs)
        for prefix, sigs in sorted(by_prefix.items(), key=lambda kv: int(kv[0][5:]))
    ]
    if not masters:
        raise BuildError("the overlay has no AXI4 master (ports m_axi<e>_*)")
    for bus in [control, *masters]:
        spec = _AXI_LITE if bus.lite else _AXI_FULL
        missing = [
            ch + s
            for ch, sigs in spec.items()
            for s in sigs
            if ch + s not in bus.signals
            if not (s == "id" and not bus.lite)  # AXI IDs are optional
        ]
        if missing:
            raise BuildError(f"overlay bus {bus.prefix} lacks {', '.join(missing)}")
    for name in ("sys_clk", "sys_rst"):
        if name not in other:
            raise BuildError(f"the overlay has no {name} port")
    return control, masters, other


def wrapper_verilog(top_verilog: str, top: str) -> str:
    """A Verilog wrapper ``fiberflow_overlay`` around the overlay's top ``top``.

    Its ports carry ``X_INTERFACE_INFO`` attributes so that Vivado infers the AXI interfaces,
    the clock and the active-low reset of a block-design module reference without guessing.
    The clock carries no ``FREQ_HZ``: Vivado propagates the PS clock's real frequency.
    """
    control, masters, other = _buses(parse_ports(top_verilog, top))
    busif = ":".join(b.intf for b in [control, *masters])
    decl = [
        '  (* X_INTERFACE_INFO = "xilinx.com:signal:clock:1.0 aclk CLK" *)',
        f'  (* X_INTERFACE_PARAMETER = "ASSOCIATED_BUSIF {busif}, ASSOCIATED_RESET aresetn" *)',
        "  input wire aclk,",
        '  (* X_INTERFACE_INFO = "xilinx.com:signal:reset:1.0 aresetn RST" *)',
        '  (* X_INTERFACE_PARAMETER = "POLARITY ACTIVE_LOW" *)',
        "  input wire aresetn,",
    ]
    conns = ["    .sys_clk(aclk),", "    .sys_rst(~aresetn),"]
    for bus in [control, *masters]:
        spec = _AXI_LITE if bus.lite else _AXI_FULL
        first = True
        for ch, sigs in spec.items():
            for s in sigs:
                p = bus.signals.get(ch + s)
                if p is None:
                    continue
                if first:
                    proto = "AXI4LITE" if bus.lite else "AXI4"
                    decl.append(f'  (* X_INTERFACE_PARAMETER = "PROTOCOL {proto}" *)')
                    first = False
                decl.append(
                    f'  (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 {bus.intf} '
                    f'{(ch + s).upper()}" *)'
                )
                rng = f"[{p.width - 1}:0] " if p.width > 1 else ""
                decl.append(f"  {p.direction} wire {rng}{bus.intf.lower()}_{ch}{s},")
                conns.append(f"    .{p.name}({bus.intf.lower()}_{ch}{s}),")
        for name, p in sorted(bus.signals.items()):  # sidebands: tie inputs low, leave outputs
            exposed = any(name == ch + s for ch, sigs in spec.items() for s in sigs)
            if not exposed:
                conns.append(f"    .{p.name}({p.width}'d0)," if p.direction == "input"
                             else f"    .{p.name}(),")  # fmt: skip
    for name, p in sorted(other.items()):
        if name in ("sys_clk", "sys_rst"):
            continue
        if p.direction != "input":
            raise BuildError(f"the overlay has an unexpected output port {name}")
        conns.append(f"    .{name}({p.width}'d0),")  # debug inputs (stall_cpu) tied off
    decl[-1] = decl[-1].rstrip(",")
    conns[-1] = conns[-1].rstrip(",")
    return "\n".join(
        [
            "// Generated by fiberflow build; do not edit. The overlay's top level as a Vivado",
            "// block-design module reference: named AXI interfaces, clock and reset.",
            "`timescale 1ns / 1ps",
            f"module {WRAPPER} (",
            *decl,
            ");",
            "  /* verilator lint_off PINCONNECTEMPTY */",
            f"  {top} core (",
            *conns,
            "  );",
            "  /* verilator lint_on PINCONNECTEMPTY */",
            "endmodule",
            "",
        ]
    )


# -- the PS, per processing-system type ---------------------------------------------------------


@dataclass(frozen=True)
class _PsFacts:
    ip: str  # the IP's name in xilinx.com:ip:<name>:<version>
    rule: str  # block automation rule that applies the board preset
    rule_config: str
    clock_freq_prop: str
    clock_pin: str
    reset_pin: str
    extra: tuple[tuple[str, str], ...]  # properties set on every build


PS_FACTS = {
    "ps7": _PsFacts(
        ip="processing_system7",
        rule="xilinx.com:bd_rule:processing_system7",
        rule_config='make_external "FIXED_IO, DDR" apply_board_preset "1" '
        'Master "Disable" Slave "Disable"',
        clock_freq_prop="CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ",
        clock_pin="FCLK_CLK0",
        reset_pin="FCLK_RESET0_N",
        extra=(("CONFIG.PCW_EN_CLK0_PORT", "1"), ("CONFIG.PCW_EN_RST0_PORT", "1")),
    ),
    "zynq_ultra_ps_e": _PsFacts(
        ip="zynq_ultra_ps_e",
        rule="xilinx.com:bd_rule:zynq_ultra_ps_e",
        rule_config='apply_board_preset "1"',
        clock_freq_prop="CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ",
        clock_pin="pl_clk0",
        reset_pin="pl_resetn0",
        # Board presets may enable HPM1_FPD / HPM0_LPD; unconnected, their clocks fail
        # validation, so only HPM0_FPD stays on.
        extra=(
            ("CONFIG.PSU__FPGA_PL0_ENABLE", "1"),
            ("CONFIG.PSU__USE__M_AXI_GP1", "0"),
            ("CONFIG.PSU__USE__M_AXI_GP2", "0"),
        ),
    ),
}


def _control_props(board: Board) -> tuple[list[tuple[str, str]], str]:
    """PS properties enabling the control master, and its clock pin."""
    port = board.control.port
    if board.ps == "ps7":
        m = re.fullmatch(r"M_AXI_GP([01])", port)
        if not m:
            raise BuildError(f"{board.name}: control port {port} is not M_AXI_GP0/1")
        return [(f"CONFIG.PCW_USE_M_AXI_GP{m[1]}", "1")], f"M_AXI_GP{m[1]}_ACLK"
    m = re.fullmatch(r"M_AXI_HPM([01])_FPD", port)
    if not m:
        raise BuildError(f"{board.name}: control port {port} is not M_AXI_HPM0/1_FPD")
    gp = int(m[1])
    return [
        (f"CONFIG.PSU__USE__M_AXI_GP{gp}", "1"),
        (f"CONFIG.PSU__MAXIGP{gp}__DATA_WIDTH", str(board.control.width)),
    ], f"maxihpm{gp}_fpd_aclk"


def _hp_props(board: Board, index: int) -> tuple[list[tuple[str, str]], str, int]:
    """PS properties enabling HP port ``index``, its clock pin and its HP number."""
    hp = board.hp[index]
    if board.ps == "ps7":
        m = re.fullmatch(r"S_AXI_HP([0-3])", hp.port)
        if not m:
            raise BuildError(f"{board.name}: HP port {hp.port} is not S_AXI_HP0..3")
        n = int(m[1])
        return (
            [
                (f"CONFIG.PCW_USE_S_AXI_HP{n}", "1"),
                (f"CONFIG.PCW_S_AXI_HP{n}_DATA_WIDTH", str(hp.width)),
            ],
            f"S_AXI_HP{n}_ACLK",
            n,
        )
    m = re.fullmatch(r"S_AXI_HP([0-3])_FPD", hp.port)
    if not m:
        raise BuildError(f"{board.name}: HP port {hp.port} is not S_AXI_HP0..3_FPD")
    n = int(m[1])
    gp = n + 2  # S_AXI_HP<n>_FPD is SAXIGP<n+2> (UG1085, PS-PL AXI interfaces)
    return (
        [
            (f"CONFIG.PSU__USE__S_AXI_GP{gp}", "1"),
            (f"CONFIG.PSU__SAXIGP{gp}__DATA_WIDTH", str(hp.width)),
        ],
        f"saxihp{n}_fpd_aclk",
        n,
    )


def _tcl_dict(props: list[tuple[str, str]]) -> str:
    return " \\\n    ".join(f"{k} {{{v}}}" for k, v in props)


def _range(addr_bits: int) -> str:
    if addr_bits < 12:
        raise BuildError(f"a {addr_bits}-bit control address space is below Vivado's 4 KiB minimum")
    return f"{1 << addr_bits:#010x}"


_PRELUDE = r"""
# ---- helpers -------------------------------------------------------------------------------
proc ff_stage {n total what} {
    puts "fiberflow: stage $n/$total: $what"
    flush stdout
}

# The newest installed version of a Xilinx IP, so the script does not pin IP versions.
proc ff_vlnv {name} {
    set defs [get_ipdefs -filter "VLNV =~ xilinx.com:ip:${name}:*"]
    if {[llength $defs] == 0} {
        error "fiberflow: Vivado has no IP xilinx.com:ip:${name}; is this a full Vivado install?"
    }
    return [lindex [lsort -dictionary $defs] end]
}

# The requested board part, or the newest installed revision of the same board.
proc ff_board_part {wanted} {
    if {[llength [get_board_parts -quiet $wanted]] > 0} {
        return $wanted
    }
    set board [lindex [split $wanted :] 1]
    set found [lsort -dictionary [get_board_parts -quiet "*:${board}:*"]]
    if {[llength $found] == 0} {
        error "fiberflow: Vivado does not know board part $wanted. Install the board files\
(see docs/deploy.md), or check with: get_board_parts *${board}*"
    }
    set use [lindex $found end]
    puts "fiberflow: board part $wanted is not installed; using $use"
    return $use
}

# The slave segment through which HP port <n> reaches the low DDR: HP<n>_DDR_LOWOCM on ps7,
# HP<n>_DDR_LOW on zynq_ultra_ps_e.
proc ff_ddr_segment {ps n} {
    set segs [lsort [get_bd_addr_segs -quiet "$ps/*/HP${n}_DDR_LOW*"]]
    if {[llength $segs] == 0} {
        error "fiberflow: no HP${n}_DDR_LOW* address segment on $ps"
    }
    return [lindex $segs 0]
}

# A bitstream that misses timing computes wrong answers: after routing, the worst setup and
# hold paths must have non-negative slack, or the script stops with the path named and copies
# nothing into overlay/. Each worst path is written out in full as reports/worst_<kind>.txt.
proc ff_check_timing {mhz reports} {
    foreach {kind type} {setup max hold min} {
        set path [get_timing_paths -delay_type $type -max_paths 1 -nworst 1]
        set report [file join $reports worst_${kind}.txt]
        report_timing -delay_type $type -max_paths 1 -file $report
        if {[llength $path] == 0} {
            error "fiberflow: Vivado found no $kind path to time: is the fabric clock\
constrained? Nothing was copied into overlay/."
        }
        set slack [get_property SLACK $path]
        if {$slack eq ""} {
            error "fiberflow: the worst $kind path has no slack (unconstrained): is the\
fabric clock constrained? Nothing was copied into overlay/."
        }
        if {$slack < 0} {
            set from [get_property STARTPOINT_PIN $path]
            set to [get_property ENDPOINT_PIN $path]
            set hint "the design does not run at $mhz MHz"
            if {$kind eq "setup"} {
                set fmax [expr {1000.0 / (1000.0 / $mhz - $slack)}]
                set hint "this path closes at about [format %.1f $fmax] MHz: build with a\
lower --clock"
            }
            error "fiberflow: timing not met at $mhz MHz: worst $kind slack $slack ns on the\
path from $from to $to (details: $report). Nothing was copied into overlay/; $hint."
        }
        puts "fiberflow: worst $kind slack $slack ns at $mhz MHz"
    }
}

proc ff_check_run {run} {
    set progress [get_property PROGRESS [get_runs $run]]
    if {$progress ne "100%"} {
        error "fiberflow: run $run stopped at $progress; see [get_property DIRECTORY\
[get_runs $run]]/runme.log"
    }
}
"""


def tcl_script(
    board: Board,
    top_verilog: str,
    top: str,
    verilog_files: list[str],
    jobs: int = 4,
) -> str:
    """The Vivado batch script for ``board``; run it from the build folder with
    ``vivado -mode batch -source vivado/build.tcl``. ``verilog_files`` are paths relative to
    the build folder (the overlay's files and the wrapper)."""
    control, masters, _ = _buses(parse_ports(top_verilog, top))
    if len(masters) > len(board.hp):
        raise BuildError(
            f"the overlay has {len(masters)} DMA masters but {board.name} offers "
            f"{len(board.hp)} HP port(s): build it with --dma-engines {len(board.hp)} or fewer"
        )
    ps = PS_FACTS[board.ps]
    props: list[tuple[str, str]] = [(ps.clock_freq_prop, f"{board.fabric_clock_mhz:g}")]
    props += list(ps.extra)
    ctrl_props, ctrl_clk = _control_props(board)
    props += ctrl_props
    hp = [_hp_props(board, e) for e in range(len(masters))]
    for p, _, _ in hp:
        props += p
    ctrl_range = _range(control.signals["awaddr"].width)

    files = " ".join(f"[file join $root {f}]" for f in verilog_files)
    total = 7
    out = [
        "# Generated by fiberflow build; do not edit. Vivado batch script for the fiberflow",
        f"# overlay on {board.name} ({board.part}). Written for Vivado {VIVADO_VERSIONS[0]} to",
        f"# {VIVADO_VERSIONS[1]}. Run from anywhere:",
        "#   vivado -mode batch -notrace -source vivado/build.tcl",
        "# Outputs: overlay/fiberflow.bit and overlay/fiberflow.hwh (the pair PYNQ loads), plus",
        f"# reports in vivado/reports/. Fabric clock {board.fabric_clock_mhz:g} MHz; the script "
        "stops, copying",
        "# nothing, when routing misses timing at it.",
        _PRELUDE,
        "# ---- project -----------------------------------------------------------------",
        "set root [file normalize [file join [file dirname [info script]] ..]]",
        "# An earlier run's outputs go first: a failed run must not leave a bitstream behind",
        "# that does not match this folder.",
        f"file delete -force [file join $root overlay {OVERLAY_NAME}.bit] "
        f"[file join $root overlay {OVERLAY_NAME}.hwh]",
        "set jobs [expr {[info exists ::env(FIBERFLOW_JOBS)] ? $::env(FIBERFLOW_JOBS) : "
        f"{jobs}}}]",
        'puts "fiberflow: Vivado [version -short]"',
        f'ff_stage 1 {total} "create project"',
        f"create_project -force fiberflow [file join $root vivado project] -part {board.part}",
        f"set_property board_part [ff_board_part {board.board_part}] [current_project]",
        "set_property target_language Verilog [current_project]",
        f"add_files -norecurse [list {files}]",
        "update_compile_order -fileset sources_1",
        "",
        "# ---- block design ------------------------------------------------------------",
        f'ff_stage 2 {total} "block design"',
        f"create_bd_design {BD_NAME}",
        f"set ps [create_bd_cell -type ip -vlnv [ff_vlnv {ps.ip}] ps]",
        f"apply_bd_automation -rule {ps.rule} -config {{{ps.rule_config}}} $ps",
        f"set_property -dict [list \\\n    {_tcl_dict(props)} \\\n] $ps",
        f"set overlay [create_bd_cell -type module -reference {WRAPPER} overlay]",
        "set rst [create_bd_cell -type ip -vlnv [ff_vlnv proc_sys_reset] rst]",
        "",
        "# Clock and reset: one domain, the PS's first fabric clock.",
        f"set clk [get_bd_pins ps/{ps.clock_pin}]",
        f"connect_bd_net [get_bd_pins ps/{ps.reset_pin}] [get_bd_pins rst/ext_reset_in]",
        "connect_bd_net $clk [get_bd_pins rst/slowest_sync_clk] [get_bd_pins overlay/aclk] "
        f"[get_bd_pins ps/{ctrl_clk}]",
        "connect_bd_net [get_bd_pins rst/peripheral_aresetn] [get_bd_pins overlay/aresetn]",
        "",
        f"# Control: PS {board.control.port} -> SmartConnect -> overlay S_AXI_CTRL (AXI4-Lite).",
        "set sc_ctrl [create_bd_cell -type ip -vlnv [ff_vlnv smartconnect] sc_ctrl]",
        "set_property -dict [list CONFIG.NUM_SI {1} CONFIG.NUM_MI {1}] $sc_ctrl",
        f"connect_bd_intf_net [get_bd_intf_pins ps/{board.control.port}] "
        "[get_bd_intf_pins sc_ctrl/S00_AXI]",
        "connect_bd_intf_net [get_bd_intf_pins sc_ctrl/M00_AXI] "
        f"[get_bd_intf_pins overlay/{control.intf}]",
        "connect_bd_net $clk [get_bd_pins sc_ctrl/aclk]",
        "connect_bd_net [get_bd_pins rst/peripheral_aresetn] [get_bd_pins sc_ctrl/aresetn]",
    ]
    for bus, (_, clk_pin, n), port in zip(masters, hp, board.hp, strict=False):
        sc = f"sc_hp{n}"
        out += [
            "",
            f"# DMA: overlay {bus.intf} -> SmartConnect -> PS {port.port} ({port.width} bit).",
            f"set {sc} [create_bd_cell -type ip -vlnv [ff_vlnv smartconnect] {sc}]",
            f"set_property -dict [list CONFIG.NUM_SI {{1}} CONFIG.NUM_MI {{1}}] ${sc}",
            f"connect_bd_intf_net [get_bd_intf_pins overlay/{bus.intf}] "
            f"[get_bd_intf_pins {sc}/S00_AXI]",
            f"connect_bd_intf_net [get_bd_intf_pins {sc}/M00_AXI] "
            f"[get_bd_intf_pins ps/{port.port}]",
            f"connect_bd_net $clk [get_bd_pins {sc}/aclk] [get_bd_pins ps/{clk_pin}]",
            f"connect_bd_net [get_bd_pins rst/peripheral_aresetn] [get_bd_pins {sc}/aresetn]",
        ]
    out += [
        "",
        "# ---- address map -------------------------------------------------------------",
        f'ff_stage 3 {total} "address map"',
        f"assign_bd_address -target_address_space [get_bd_addr_spaces ps/Data] "
        f"-offset {board.control.base:#010x} -range {ctrl_range} -force "
        f"[get_bd_addr_segs overlay/{control.intf}/*]",
    ]
    for bus, (_, _, n) in zip(masters, hp, strict=True):
        out.append(
            f"assign_bd_address -target_address_space [get_bd_addr_spaces overlay/{bus.intf}] "
            f"[ff_ddr_segment ps {n}]"
        )
    out += [
        "validate_bd_design",
        "save_bd_design",
        "",
        "# ---- synthesis and implementation --------------------------------------------",
        f'ff_stage 4 {total} "generate block design"',
        f"set bd_file [get_files {BD_NAME}.bd]",
        "generate_target all $bd_file",
        "add_files -norecurse [make_wrapper -files $bd_file -top]",
        f"set_property top {BD_NAME}_wrapper [current_fileset]",
        "update_compile_order -fileset sources_1",
        f'ff_stage 5 {total} "synthesis"',
        "launch_runs synth_1 -jobs $jobs",
        "wait_on_run synth_1",
        "ff_check_run synth_1",
        f'ff_stage 6 {total} "implementation and bitstream"',
        "launch_runs impl_1 -to_step write_bitstream -jobs $jobs",
        "wait_on_run impl_1",
        "ff_check_run impl_1",
        "",
        "# ---- outputs -----------------------------------------------------------------",
        f'ff_stage 7 {total} "export"',
        "set reports [file join $root vivado reports]",
        "file mkdir $reports",
        "open_run impl_1",
        "report_utilization -file [file join $reports utilization.txt]",
        "report_timing_summary -file [file join $reports timing.txt]",
        f"ff_check_timing {board.fabric_clock_mhz:g} $reports",
        "set outdir [file join $root overlay]",
        "file mkdir $outdir",
        f"set bit [file join [get_property DIRECTORY [get_runs impl_1]] {BD_NAME}_wrapper.bit]",
        f"set hwh [lindex [get_files -all -of_objects $bd_file {BD_NAME}.hwh] 0]",
        'if {$hwh eq ""} {',
        f"    set hwh [file join $root vivado project fiberflow.gen sources_1 bd {BD_NAME} "
        f"hw_handoff {BD_NAME}.hwh]",
        "}",
        "foreach f [list $bit $hwh] {",
        '    if {![file exists $f]} { error "fiberflow: Vivado did not produce $f" }',
        "}",
        f"file copy -force $bit [file join $outdir {OVERLAY_NAME}.bit]",
        f"file copy -force $hwh [file join $outdir {OVERLAY_NAME}.hwh]",
        f'puts "fiberflow: wrote [file join $outdir {OVERLAY_NAME}.bit] and '
        f'[file join $outdir {OVERLAY_NAME}.hwh]"',
        "close_project",
        "",
    ]
    return "\n".join(out)
