"""The shell: control CPU, AXI4-Lite registers, DMA engines with tile buffers, lanes, counters.

Every address here comes from :mod:`fiberflow.overlay.regmap`. Generate Verilog with
:func:`verilog`; ``ShellConfig`` holds the parameters.

Top-level ports (Verilog names):

* ``sys_clk``, ``sys_rst``: the fabric clock and a synchronous reset;
* ``s_axil_*``: the AXI4-Lite slave (16 address bits) for the host;
* ``m_axi<e>_*``: one AXI4 master per DMA engine, to DDR;
* ``stall_cpu``: debug halt of the control CPU (tie to 0 on boards; the rtl device's fault
  injection uses it).
* ``stall_lanes``: debug hold of the lanes' tile ports (tie to 0 on boards): a running lane
  never finishes (the rtl device's fault injection for the firmware's lane watchdog).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import reduce
from operator import and_, or_
from typing import Any

from migen import Array, C, Case, Cat, If, Memory, Module, Mux, Replicate, ResetInserter, Signal
from migen.fhdl.specials import READ_FIRST
from migen.fhdl.verilog import convert

from fiberflow.overlay import regmap
from fiberflow.overlay.lanes.lane_placeholder import PlaceholderLane
from fiberflow.overlay.lanes.lane_start import LaneStart
from fiberflow.overlay.shell.axi_ports import axi_pads, pad_signals
from fiberflow.overlay.shell.axilite import AXILiteSlave
from fiberflow.overlay.shell.cpu import ControlCPU, picorv32_verilog
from fiberflow.overlay.shell.dma import DMAEngine

__all__ = ["TOP", "VALUE_TYPES", "Shell", "ShellConfig", "buffer", "buffer_ports", "verilog"]

TOP = "fiberflow_shell"
# The DMA image's and job descriptor's dtype codes; CONFIG0.VTYPE is the mask of the codes the
# lanes compute ("fp32+int32": lanes with both, the mode word picks per tile).
VALUE_TYPES = {"fp32": 1, "int32": 2, "fp32+int32": 3}


def _pow2(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0


@dataclass(frozen=True)
class ShellConfig:
    """Overlay parameters. The defaults are a 4-lane fp32 overlay with one DMA engine; a board's
    default overlay (``fiberflow build``, the rtl device) takes its bus width and number of
    engines from :func:`fiberflow.boards.build.default_params` (two on a PYNQ-Z2)."""

    lanes: int = 4
    value_type: str = "fp32"
    # Buffer sizes: 32 KiB tiles, x slices of 8192 values and y blocks of 4096 rows keep the
    # 4-lane default at about 64% of a PYNQ-Z2's block RAM (docs/benchmarks.md); 64 KiB tiles
    # would need 93%.
    tile_bytes: int = regmap.TILE_BYTES  # each tile buffer: each lane's, and the firmware's scratch
    bus_bits: int = 64
    dma_engines: int = 1
    ram_bytes: int = 16384  # the firmware (firmware/link.ld) needs 16 KiB
    # The kernel set of the lanes (overlay/lanes/lane.py); empty: placeholder lanes with the same
    # control ports, for bring-up of the CPU, DMA and firmware without the datapath.
    kernels: tuple[str, ...] = ("spmv", "spmm")
    x_bytes: int = regmap.X_BYTES  # each lane's x / B-slice buffer
    y_bytes: int = regmap.Y_BYTES  # each lane's y / C buffer
    max_k: int = 8  # largest SpMM k the lanes accumulate

    def __post_init__(self) -> None:
        if not 1 <= self.lanes <= regmap.MAX_LANES:
            raise ValueError(f"lanes must be 1..{regmap.MAX_LANES}, not {self.lanes!r}")
        if self.value_type not in VALUE_TYPES:
            raise ValueError(f"value_type must be one of {sorted(VALUE_TYPES)}")
        if self.bus_bits not in (64, 128):
            raise ValueError(f"bus_bits must be 64 or 128, not {self.bus_bits!r}")
        if not 1 <= self.dma_engines <= regmap.MAX_DMA:
            raise ValueError(f"dma_engines must be 1..{regmap.MAX_DMA}")
        if not _pow2(self.tile_bytes) or not 256 <= self.tile_bytes <= 1 << 24:
            raise ValueError("tile_bytes must be a power of two from 256 to 16 MiB")
        if not _pow2(self.ram_bytes):
            raise ValueError("ram_bytes must be a power of two")
        for name in ("x_bytes", "y_bytes"):
            v = getattr(self, name)
            if not _pow2(v) or not 256 <= v <= 1 << regmap.LOCAL_REGION_SHIFT:
                raise ValueError(f"{name} must be a power of two from 256 to 1 MiB")
        if self.kernels:
            if self.tile_bytes > 1 << regmap.LOCAL_REGION_SHIFT:
                raise ValueError("with lanes, tile_bytes must be at most 1 MiB (one region)")
            if self.dma_engines > self.lanes:
                raise ValueError(
                    f"dma_engines must be at most the number of lanes ({self.lanes}): an "
                    "engine serves the lanes n with n % dma_engines equal to its number"
                )
            per_engine = -(-self.lanes // self.dma_engines)
            if 1 + 3 * per_engine > regmap.LOCAL_REGIONS:
                raise ValueError(
                    f"{self.lanes} lanes on {self.dma_engines} DMA engine(s) need "
                    f"{1 + 3 * per_engine} local regions per engine, more than "
                    f"{regmap.LOCAL_REGIONS}; use more DMA engines"
                )

    def lane_regions(self, lane: int) -> tuple[int, int, int, int]:
        """``(engine, tile region, x region, y region)`` of lane ``lane``'s buffers: lane n is
        served by engine ``n % dma_engines``; after region 0 (engine 0's: the firmware's
        scratch) come its lanes' tile, x and y buffers, in lane order."""
        e = lane % self.dma_engines
        r = 1 + 3 * (lane // self.dma_engines)
        return e, r, r + 1, r + 2

    @property
    def bus_bytes(self) -> int:
        return self.bus_bits // 8

    def config0(self) -> int:
        return (
            self.lanes
            | self.dma_engines << 8
            | self.bus_bytes << 16
            | VALUE_TYPES[self.value_type] << 24
        )

    def config3(self) -> int:
        """CONFIG3: the lanes' x / y buffer sizes (log2), max_k and kernel set; 0 without
        SpMV/SpMM lanes."""
        if not self.kernels:
            return 0
        mask = sum(1 << ("spmv", "spmm").index(k) for k in self.kernels)
        return (
            (self.x_bytes.bit_length() - 1)
            | (self.y_bytes.bit_length() - 1) << 8
            | self.max_k << 16
            | mask << 24
        )

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class Shell(Module):
    def __init__(self, config: ShellConfig | None = None) -> None:
        self.config = cfg = config or ShellConfig()
        host_map, cpu_map = regmap.HOST, regmap.CPU
        bus_bytes = cfg.bus_bytes
        tile_words = cfg.tile_bytes // bus_bytes
        shift = bus_bytes.bit_length() - 1
        rshift = regmap.LOCAL_REGION_SHIFT
        local_bits = (regmap.CPU_LOCAL_STRIDE - 1).bit_length()

        self.submodules.cpu = cpu = ControlCPU(cfg.ram_bytes)
        self.submodules.axil = axil = AXILiteSlave(16)
        dmas = [
            ResetInserter()(
                DMAEngine(
                    cfg.bus_bits,
                    local_bits,
                    queue_depth=regmap.DMA_QUEUE_DEPTH,
                    read_latency=2,
                    lanes=cfg.lanes,
                )
            )
            for _ in range(cfg.dma_engines)
        ]
        lanes = [ResetInserter()(_lane(cfg)) for _ in range(cfg.lanes)]
        self.submodules += dmas + lanes

        # Ports.
        self.stall_cpu = Signal(name="stall_cpu")
        self.stall_lanes = Signal(name="stall_lanes")
        self.s_axil = axi_pads(axil.bus, "s_axil", full=False)
        self.comb += axil.bus.connect_to_pads(self.s_axil, mode="slave")
        self.m_axi = [axi_pads(d.axi, f"m_axi{e}", full=True) for e, d in enumerate(dmas)]
        for d, pads in zip(dmas, self.m_axi, strict=True):
            self.comb += d.axi.connect_to_pads(pads, mode="master")
        self.ios = {self.stall_cpu, self.stall_lanes, *pad_signals(self.s_axil)}
        for pads in self.m_axi:
            self.ios |= set(pad_signals(pads))

        # # #

        # -- host-side state (reset only by sys_rst) --
        cpu_reset = Signal(reset=1)
        clear = Signal()
        bell_seq, bell_pending = Signal(16), Signal()
        job_addr, status, error_info, heartbeat = (Signal(32) for _ in range(4))
        mailbox = [Signal(32) for _ in range(host_map.reg("MAILBOX").count)]
        cycles = Signal(64)
        host_hi, cpu_hi = Signal(32), Signal(32)
        tiles_done = Signal(32)
        dma_busy = [Signal(32) for _ in dmas]
        dma_stall = [Signal(32) for _ in dmas]
        dma_rd = [Signal(32) for _ in dmas]
        dma_wr = [Signal(32) for _ in dmas]
        lane_busy = [Signal(32) for _ in lanes]
        lane_stall = [Signal(32) for _ in lanes]

        self.comb += [cpu.reset.eq(cpu_reset), cpu.hold.eq(self.stall_cpu)]
        for m in lanes:
            self.comb += m.reset.eq(cpu_reset)
        # CPU_RESET resets the CPU and lanes at once, but a DMA engine only once it has
        # drained (overlay/shell/dma.py): it could otherwise leave a burst half done on the bus.
        # Each engine is held in reset from the cycle after it says drained until CPU_RESET is
        # released; CTRL.DRAINED tells the host that all of them are.
        held = [Signal(reset=1, name=f"dma_held{e}") for e in range(len(dmas))]
        drained = Signal()
        for d, h in zip(dmas, held, strict=True):
            self.comb += [d.halt.eq(cpu_reset), d.reset.eq(h)]
            self.sync += h.eq(cpu_reset & d.drained)
        self.sync += drained.eq(cpu_reset & reduce(and_, [d.drained for d in dmas]))

        # -- local spaces: region r of engine e is one buffer; port A for the engine, port B
        # for the CPU window, shared with the lane that owns the buffer (the lane has it from
        # the cycle after its start to its done; the CPU must leave a running lane's buffers
        # alone) --
        # Region 0 of engine 0 is the firmware's scratch; region 0 of another engine only
        # exists without lanes (bring-up copies go through it; with lanes they use the
        # engine's first lane's tile buffer), which saves a tile buffer's block RAM per
        # engine. A region with no buffer reads as 0 and drops writes.
        self.regions: list[dict[int, Memory]] = [
            {0: buffer(cfg.bus_bits, tile_words)} if e == 0 or not cfg.kernels else {}
            for e in range(len(dmas))
        ]
        owners: dict[tuple[int, int], tuple[Module, str]] = {}
        if cfg.kernels:
            for n, ln in enumerate(lanes):
                e, rt, rx, ry = cfg.lane_regions(n)
                depths = (tile_words, cfg.x_bytes // bus_bytes, cfg.y_bytes // bus_bytes)
                for r, kind, depth in zip((rt, rx, ry), ("tile", "x", "y"), depths, strict=True):
                    self.regions[e][r] = buffer(cfg.bus_bits, depth)
                    owners[(e, r)] = (ln, kind)
        cpu_ports: list[dict[int, Any]] = []
        for e, d in enumerate(dmas):
            regions = self.regions[e]
            region = Signal(regmap.LOCAL_REGIONS.bit_length() - 1)
            # The engine's reads take two cycles (read_latency=2): each buffer's word goes
            # into a register of its own first, so that block RAM clock-to-output and the
            # routing from buffers spread over the die to the engine's region multiplexer do
            # not share a cycle (with four lanes, the engines' slowest paths on the placed
            # ECP5 proxy). The multiplexer follows the region two cycles on.
            region_q, region_qq = Signal.like(region), Signal.like(region)
            self.comb += region.eq(d.buf_adr[rshift - shift :])
            self.sync += [region_q.eq(region), region_qq.eq(region_q)]
            read_cases: dict[object, object] = {"default": d.buf_dat_r.eq(0)}
            ports = {}
            for r, mem in regions.items():
                pa, pb = buffer_ports(mem)
                self.specials += mem, pa, pb
                self.comb += [
                    # (Each buffer decodes the word bits it has; the region bits select it.)
                    pa.adr.eq(d.buf_adr[: len(pa.adr)]),
                    pa.we.eq(d.buf_we & (region == r)),
                    pa.dat_w.eq(d.buf_dat_w),
                ]
                word = Signal(cfg.bus_bits, reset_less=True, name=f"dma_word_{e}_{r}")
                self.sync += word.eq(pa.dat_r)
                read_cases[r] = d.buf_dat_r.eq(word)
                ports[r] = pb
            self.comb += Case(region_qq, read_cases)
            cpu_ports.append(ports)
            # A buffer smaller than its region repeats through it (the firmware addresses
            # within the buffer): the word bits above the largest buffer are not decoded.
            used = max(len(pb.adr) for pb in ports.values())  # (every engine has a region)
            if used < rshift - shift:
                self.comb += Signal(rshift - shift - used, name="buf_alias_unused").eq(
                    d.buf_adr[used : rshift - shift]
                )

        # -- counters --
        # Each counts a condition registered the cycle before: the conditions come from the
        # engines' AXI handshakes and the lanes' state, and a 32-bit increment behind them was
        # one of the slowest paths of the placed ECP5 proxy (an engine's stall counter). A
        # counter thus runs one cycle behind its condition, which no reading can tell apart
        # (the host reads them after the job, with the engines and lanes idle).
        def late(cond: object) -> Signal:
            q = Signal()
            self.sync += q.eq(cond)
            return q

        self.sync += [
            cycles.eq(cycles + 1),
            *[c.eq(c + late(d.active)) for c, d in zip(dma_busy, dmas, strict=True)],
            *[
                c.eq(c + late(d.active & ~d.rd_beat & ~d.wr_beat & ~d.fill_beat))
                for c, d in zip(dma_stall, dmas, strict=True)
            ],
            *[
                c.eq(c + Mux(late(d.rd_beat), bus_bytes, 0))
                for c, d in zip(dma_rd, dmas, strict=True)
            ],
            *[
                c.eq(c + Mux(late(d.wr_beat), bus_bytes, 0))
                for c, d in zip(dma_wr, dmas, strict=True)
            ],
            *[c.eq(c + late(ln.busy)) for c, ln in zip(lane_busy, lanes, strict=True)],
            *[c.eq(c + late(ln.busy & ln.stall)) for c, ln in zip(lane_stall, lanes, strict=True)],
        ]
        counters = [cycles, tiles_done, *dma_busy, *dma_stall, *dma_rd, *dma_wr]
        counters += lane_busy + lane_stall
        # (Listed after the increments: in Migen the last assignment in a cycle wins.)
        self.sync += If(clear, *[c.eq(0) for c in counters])

        # -- host registers (AXI4-Lite) --
        def hoff(name: str, i: int = 0) -> int:
            return host_map.offset(name, i) >> 2

        in_ram = Signal()
        reg_q = Signal(32)
        was_ram = Signal()
        self.comb += [
            in_ram.eq(axil.adr >= regmap.HOST_RAM_WINDOW),
            cpu.host_adr.eq(axil.adr[2 : 2 + len(cpu.host_adr)]),
            cpu.host_dat_w.eq(axil.dat_w),
            cpu.host_we.eq(Mux(axil.we & in_ram, axil.strb, 0)),
            axil.dat_r.eq(Mux(was_ram, cpu.host_dat_r, reg_q)),
        ]
        # Registers both blocks read alike (by name; the offsets differ).
        shared_read: dict[str, object] = {
            "ID": regmap.ID_MAGIC,
            "VERSION": regmap.VERSION,
            "CONFIG0": cfg.config0(),
            "CONFIG1": cfg.ram_bytes,
            "CONFIG2": cfg.tile_bytes,
            "CONFIG3": cfg.config3(),
            "DOORBELL": _pack(host_map.reg("DOORBELL"), SEQ=bell_seq, PENDING=bell_pending),
            "JOB_ADDR": job_addr,
            "STATUS": status,
            "ERROR_INFO": error_info,
            "HEARTBEAT": heartbeat,
            "CYCLES_LO": cycles[:32],
        }
        host_read = {hoff(name): v for name, v in shared_read.items()}
        host_read[hoff("CTRL")] = _pack(
            host_map.reg("CTRL"), CPU_RESET=cpu_reset, CPU_TRAP=cpu.trap, DRAINED=drained
        )
        host_read[hoff("CYCLES_HI")] = host_hi
        host_read[hoff("TILES_DONE")] = tiles_done
        for i, m in enumerate(mailbox):
            host_read[hoff("MAILBOX", i)] = m
        for e in range(len(dmas)):
            host_read[hoff("DMA_BUSY", e)] = dma_busy[e]
            host_read[hoff("DMA_STALL", e)] = dma_stall[e]
            host_read[hoff("DMA_RD_BYTES", e)] = dma_rd[e]
            host_read[hoff("DMA_WR_BYTES", e)] = dma_wr[e]
        for n in range(len(lanes)):
            host_read[hoff("LANE_BUSY", n)] = lane_busy[n]
            host_read[hoff("LANE_STALL", n)] = lane_stall[n]
        # The register an access names, decoded into one flip-flop per register in the cycle
        # before the access (the front end gives the address a cycle early), so a read is an
        # AND-OR of the registers and a write a single enable. Other registers are
        # read-only: a write to them is ignored; other offsets read 0.
        hsel = _decoder(self, [*host_read, hoff("CTRL"), hoff("DOORBELL")], axil.adr[2:], "hsel")
        host_we = Signal()
        self.comb += host_we.eq(axil.we & ~in_ram)
        self.sync += [
            clear.eq(0),
            If(axil.re, was_ram.eq(in_ram), reg_q.eq(_select(hsel, host_read))),
            If(axil.re & hsel[hoff("CYCLES_LO")], host_hi.eq(cycles[32:])),
            If(
                host_we & hsel[hoff("CTRL")],
                cpu_reset.eq(_bits(host_map.reg("CTRL"), "CPU_RESET", axil.dat_w)),
                clear.eq(_bits(host_map.reg("CTRL"), "CLEAR", axil.dat_w)),
            ),
            If(host_we & hsel[hoff("JOB_ADDR")], job_addr.eq(axil.dat_w)),
        ]

        # -- CPU peripheral bus --
        def coff(name: str, i: int = 0) -> int:
            return cpu_map.offset(name, i) >> 2

        # A register access takes two cycles: in the first, what its address names is decoded
        # into flip-flops (one per register, one per buffer: a read is then an AND-OR of the
        # registers, a write a single enable); in the second it is done and answered. A
        # buffer access takes four: its read is started by the address in the first, its
        # data is there in the second and goes into a register of its buffer's own (0 unless
        # the access selects that buffer), the buffers' registers are ORed into one in the
        # third (a write lands then), and it is answered from that in the fourth. The
        # buffers are block RAM all over the die: their slow clock-to-output, the routing
        # from every buffer to one place, the OR over them and the CPU's own decoding of the
        # word would otherwise share cycles (with four lanes, the OR straight from the buffers
        # was the slowest path of the placed ECP5 proxy, by the delays its placement implies).
        is_reg = Signal()
        is_tile = Signal()
        decoded = Signal()  # second cycle of an access: the flip-flops below are its decode
        third = Signal()  # third cycle of a buffer access
        fourth = Signal()  # its fourth
        cpu_we = Signal()
        cpu_re = Signal()
        win_access = Signal()
        reg_rdata = Signal(32)
        tile_q = Signal(32, reset_less=True)
        self.sync += [
            is_reg.eq(cpu.p_addr[28:] == (regmap.CPU_REG_BASE >> 28)),
            is_tile.eq(cpu.p_addr[28:] == (regmap.CPU_LOCAL_BASE >> 28)),
            decoded.eq(cpu.p_valid & ~cpu.p_ready & ~decoded & ~third & ~fourth),
            third.eq(cpu.p_valid & decoded & is_tile),
            fourth.eq(cpu.p_valid & third),
        ]
        self.comb += [
            cpu.p_ready.eq((decoded & ~is_tile) | fourth),
            cpu_we.eq(cpu.p_valid & decoded & is_reg & (cpu.p_wstrb != 0)),
            cpu_re.eq(cpu.p_valid & decoded & is_reg & (cpu.p_wstrb == 0)),
            win_access.eq(cpu.p_valid & decoded & is_tile),
            cpu.p_rdata.eq(Mux(is_tile, tile_q, reg_rdata)),
        ]
        # The register word and the region select; the word bits between them select nothing
        # (the register block repeats through its region).
        self.comb += Signal(rshift - 12, name="p_region_unused").eq(cpu.p_addr[12:rshift])
        # Registers and buffer words are 32-bit and the CPU traps misaligned accesses, so
        # the byte offset within a word is not decoded; p_wstrb picks the bytes.
        self.comb += Signal(2, name="p_byte_unused").eq(cpu.p_addr[:2])

        # Local space window: 32-bit accesses into bus-wide words.
        lane32 = Signal(max(shift - 2, 1))
        self.comb += lane32.eq(cpu.p_addr[2:shift])
        # As on the engines' side, a buffer smaller than its region repeats through it.
        used = max(len(pb.adr) for ports in cpu_ports for pb in ports.values())
        if used < rshift - shift:
            self.comb += Signal(rshift - shift - used, name="win_alias_unused").eq(
                cpu.p_addr[shift + used : rshift]
            )
        windows = [(e, r) for e, ports in enumerate(cpu_ports) for r in ports]
        win_sel = _decoder(
            self,
            windows,
            Cat(cpu.p_addr[rshift:local_bits], cpu.p_addr[local_bits:28]),
            "win_sel",
            key=lambda w: w[0] << (local_bits - rshift) | w[1],
        )
        win_data = []
        for e, ports in enumerate(cpu_ports):
            for r, pb in ports.items():
                # The write enables come from a register, a cycle after the access's decode:
                # the write lands in its third cycle, the address and data still held, and no
                # decoding shares a cycle with the routing to the block RAMs.
                win_we, win_we_d = Signal(bus_bytes), Signal(bus_bytes)
                self.sync += win_we.eq(win_we_d)
                words_we = [win_we_d[4 * i : 4 * i + 4] for i in range(bus_bytes // 4)]
                words_r = [pb.dat_r[32 * i : 32 * i + 32] for i in range(bus_bytes // 4)]
                cpu_side = [
                    pb.adr.eq(cpu.p_addr[shift : shift + len(pb.adr)]),
                    pb.dat_w.eq(Cat(*[cpu.p_wdata] * (bus_bytes // 4))),
                    pb.we.eq(win_we),
                ]
                # (Array selection, not shifts: Verilog sizes a shift amount like
                # lane32 * 32 by its operands, which would drop the top bit.)
                self.comb += If(
                    win_access & win_sel[(e, r)], Array(words_we)[lane32].eq(cpu.p_wstrb)
                )
                word_q = Signal(32, reset_less=True, name=f"win_word_{e}_{r}")
                self.sync += word_q.eq(Mux(win_sel[(e, r)], Array(words_r)[lane32], 0))
                win_data.append(word_q)
                if (e, r) not in owners:
                    self.comb += cpu_side
                    continue
                ln, kind = owners[(e, r)]
                adr, dat_r = getattr(ln, f"{kind}_adr"), getattr(ln, f"{kind}_dat_r")
                lane_side = [pb.adr.eq(adr)]
                if kind == "y":
                    lane_side += [pb.dat_w.eq(ln.y_dat_w), pb.we.eq(ln.y_we)]
                # The lane owns the port while busy (a register's decode), not from its start
                # pulse: that pulse comes from the CPU's write through the register decode, and
                # selecting the port with it put the CPU's bus, the decode and the buffer's
                # address routing in one cycle (the ECP5 proxy's critical path, 18 ns). In its
                # start cycle a lane reads and writes nothing.
                self.comb += [
                    dat_r.eq(pb.dat_r),
                    If(ln.busy, *lane_side).Else(*cpu_side),
                ]
                if kind == "tile":
                    self.comb += ln.tile_en.eq(~self.stall_lanes)
        self.sync += tile_q.eq(reduce(or_, win_data))

        dma_ddr = [Signal(32) for _ in dmas]
        dma_local = [Signal(32) for _ in dmas]
        dma_len = [Signal(32) for _ in dmas]
        nw = regmap.LANE_CFG_WORDS
        lane_cfg = [[Signal(32) for _ in range(nw)] for _ in lanes]
        lane_ctrl, dma_ctrl = cpu_map.reg("LANE_CTRL"), cpu_map.reg("DMA_CTRL")
        # Each lane's start, from the CPU or armed, and its latched configuration
        # (overlay/lanes/lane_start.py); wired below, read by the status registers and the engines.
        starts = [LaneStart(nw) for _ in lanes]
        for n, st in enumerate(starts):
            setattr(self.submodules, f"lane_start{n}", st)

        cpu_read = {coff(name): v for name, v in shared_read.items()}
        cpu_read[coff("CYCLES_HI")] = cpu_hi
        cpu_read[coff("LANE_DONE")] = Cat(
            *[ln.done & ~st.pending for ln, st in zip(lanes, starts, strict=True)]
        )
        cpu_read[coff("LANE_ERROR")] = Cat(*[ln.error for ln in lanes])
        cpu_read[coff("LANE_ARMED")] = Cat(*[st.pending for st in starts])
        cpu_read[coff("LANE_FAILED")] = Cat(*[st.failed for st in starts])
        for i, m in enumerate(mailbox):
            cpu_read[coff("MAILBOX", i)] = m
        for e, d in enumerate(dmas):
            cpu_read[coff("DMA_DDR", e)] = dma_ddr[e]
            cpu_read[coff("DMA_LOCAL", e)] = dma_local[e]
            cpu_read[coff("DMA_LENGTH", e)] = dma_len[e]
            cpu_read[coff("DMA_STATUS", e)] = _pack(
                cpu_map.reg("DMA_STATUS"),
                BUSY=d.busy,
                FULL=d.full,
                ERROR=d.error,
                TO_DDR=d.err_to_ddr,
                RESP=d.resp,
                OVERFLOW=d.overflow,
                WAITING=d.waiting,
                DONE_SEQ=d.completed,
            )
        for n, ln in enumerate(lanes):
            for w in range(nw):
                cpu_read[coff(f"LANE_CFG{w}", n)] = lane_cfg[n][w]
            cpu_read[coff("LANE_STATUS", n)] = _pack(
                cpu_map.reg("LANE_STATUS"),
                BUSY=ln.busy,
                DONE=ln.done,
                ERROR=ln.error,
                ARMED=starts[n].pending,
                FAILED=starts[n].failed,
            )

        w = cpu.p_wdata
        cpu_writes: dict[int, object] = {
            coff("STATUS"): status.eq(w),
            coff("ERROR_INFO"): error_info.eq(w),
            coff("HEARTBEAT"): heartbeat.eq(w),
            coff("TILE_DONE"): tiles_done.eq(tiles_done + 1),
        }
        for i, m in enumerate(mailbox):
            cpu_writes[coff("MAILBOX", i)] = m.eq(w)
        # CPU-side configuration registers: cleared with the CPU.
        ctl_writes: dict[int, object] = {}
        for e in range(len(dmas)):
            ctl_writes[coff("DMA_DDR", e)] = dma_ddr[e].eq(w)
            ctl_writes[coff("DMA_LOCAL", e)] = dma_local[e].eq(w)
            ctl_writes[coff("DMA_LENGTH", e)] = dma_len[e].eq(w)
        for n in range(len(lanes)):
            for k in range(nw):
                ctl_writes[coff(f"LANE_CFG{k}", n)] = lane_cfg[n][k].eq(w)
        ctl_regs = dma_ddr + dma_local + dma_len + [c for words in lane_cfg for c in words]
        strobes = [coff("DOORBELL_ACK")]
        strobes += [coff("DMA_CTRL", e) for e in range(len(dmas))]
        strobes += [coff("LANE_CTRL", n) for n in range(len(lanes))]
        csel = _decoder(
            self, [*cpu_read, *cpu_writes, *ctl_writes, *strobes], cpu.p_addr[2:12], "csel"
        )
        self.comb += reg_rdata.eq(_select(csel, cpu_read))
        # Other registers are read-only: a write to them is ignored; other offsets read 0.

        for n, (ln, st) in enumerate(zip(lanes, starts, strict=True)):
            self.comb += [
                st.reset.eq(cpu_reset),
                st.wr.eq(cpu_we & csel[coff("LANE_CTRL", n)]),
                st.w_start.eq(_bits(lane_ctrl, "START", cpu.p_wdata)),
                st.w_arm.eq(_bits(lane_ctrl, "ARM", cpu.p_wdata)),
                st.w_clear.eq(_bits(lane_ctrl, "CLEAR", cpu.p_wdata)),
                st.w_seq.eq(_bits(lane_ctrl, "SEQ", cpu.p_wdata)),
                st.completed.eq(dmas[n % len(dmas)].completed),
                *[c.eq(w) for c, w in zip(st.cfg_in, lane_cfg[n], strict=True)],
                st.done.eq(ln.done),
                st.error.eq(ln.error),
                ln.start.eq(st.start),
                *[ln.cfg[w].eq(st.cfg[w]) for w in range(nw)],
            ]
        for e, d in enumerate(dmas):
            ctrl_we = cpu_we & csel[coff("DMA_CTRL", e)]
            self.comb += [
                d.ddr_addr.eq(dma_ddr[e]),
                d.local_addr.eq(dma_local[e]),
                d.length.eq(dma_len[e]),
                d.go.eq(ctrl_we & _bits(dma_ctrl, "GO", cpu.p_wdata)),
                d.abort.eq(ctrl_we & _bits(dma_ctrl, "ABORT", cpu.p_wdata)),
                d.to_ddr.eq(_bits(dma_ctrl, "TO_DDR", cpu.p_wdata)),
                d.zero.eq(_bits(dma_ctrl, "ZERO", cpu.p_wdata)),
                d.after_lane.eq(_bits(dma_ctrl, "AFTER_LANE", cpu.p_wdata)),
                d.lane.eq(_bits(dma_ctrl, "LANE", cpu.p_wdata)[: len(d.lane)]),
                d.lane_idle.eq(Cat(*[st.idle for st in starts])),
            ]

        self.sync += [
            *[If(cpu_we & csel[k], s) for k, s in cpu_writes.items()],
            If(cpu_re & csel[coff("CYCLES_LO")], cpu_hi.eq(cycles[32:])),
            # Doorbell: the host's write wins over the CPU's acknowledgement in the same cycle.
            If(cpu_we & csel[coff("DOORBELL_ACK")], bell_pending.eq(0)),
            If(
                host_we & hsel[hoff("DOORBELL")],
                bell_seq.eq(_bits(host_map.reg("DOORBELL"), "SEQ", axil.dat_w)),
                bell_pending.eq(1),
            ),
            If(cpu_reset, *[r.eq(0) for r in ctl_regs]).Else(
                *[If(cpu_we & csel[k], s) for k, s in ctl_writes.items()]
            ),
        ]


def buffer_ports(mem: Memory) -> tuple[object, object]:
    """Ports A (the DMA engine: whole words) and B (the CPU window or the lane: byte enables)
    of a local-space buffer made by :func:`buffer`.

    Both are read-first. Port A must be: a write-out that clears behind it (DMA_CTRL.ZERO with
    TO_DDR) reads and zeroes the same word in one cycle. Port B's users never read a word in
    the cycle they write it (the lanes write y only in cycles without a y read), and a
    registered read of the old word is what block RAM does natively.
    """
    pa = mem.get_port(write_capable=True, mode=READ_FIRST)
    pb = mem.get_port(write_capable=True, we_granularity=8, mode=READ_FIRST)
    return pa, pb


def buffer(width: int, depth: int) -> Memory:
    """A local-space buffer, written so that synthesis maps it to block RAM (Vivado, yosys
    ``synth_xilinx`` and ``synth_ecp5``): two ports, each with one write port and a
    synchronous, registered read-first read, byte enables on port B only.

    ``no_rw_check`` tells yosys that what one port reads while the other writes the same word
    does not matter, which is true here: a buffer belongs either to its DMA engine or to its
    lane or the CPU window at any one time, and the engine's port reads every cycle but its
    data is used only for its own region. Without it yosys must keep the Verilog's collision
    result, which no ECP5 block RAM gives, and maps every buffer to flip-flops.
    """
    mem = Memory(width, depth)
    mem.attr = {"no_rw_check"}  # printed by Migen as (* no_rw_check = "true" *)
    return mem


def _decoder(
    m: Module, keys: Iterable[Hashable], value: object, name: str,
    key: Callable[[Any], int] = lambda k: k,
) -> dict[Any, Signal]:  # fmt: skip
    """One flip-flop per key of ``keys``, set in ``m`` when ``value`` equals ``key(k)``: loaded
    in the cycle before the one that uses it."""
    sel = {k: Signal(name=f"{name}_{i}") for i, k in enumerate(dict.fromkeys(keys))}
    m.sync += [s.eq(value == key(k)) for k, s in sel.items()]
    return sel


def _select(sel: Mapping[Any, Signal], values: Mapping[Any, object]) -> object:
    """The value whose one-hot ``sel`` flip-flop is set (0 if none is): an AND-OR, which maps
    to fewer LUT levels than a case statement on the address."""
    terms = [Replicate(sel[k], len(v := _value(x))) & v for k, x in values.items()]
    return reduce(or_, terms, C(0, 32))


def _value(x: object) -> object:
    return C(x, 32) if isinstance(x, int) else x


def _pack(reg: regmap.Register, **values: Signal) -> Cat:
    """Register ``reg``'s read value: the given fields at their map positions, every other bit
    0 (fields left out read 0)."""
    parts: list[object] = []
    pos = 0
    for f in sorted(reg.fields, key=lambda f: f.lsb):
        if f.name not in values:
            continue
        v = values.pop(f.name)
        if len(v) != f.width:
            raise ValueError(f"{reg.name}.{f.name} is {f.width} bits, not {len(v)}")
        if f.lsb > pos:
            parts.append(C(0, f.lsb - pos))
        parts.append(v)
        pos = f.lsb + f.width
    if values:
        raise KeyError(f"{reg.name} has no fields {sorted(values)}")
    return Cat(*parts)


def _bits(reg: regmap.Register, name: str, word: Signal) -> object:
    """Field ``name`` of register ``reg`` in a written ``word``."""
    f = reg.field(name)
    return word[f.lsb : f.lsb + f.width]


def _lane(cfg: ShellConfig) -> Module:
    if not cfg.kernels:
        return PlaceholderLane()
    from fiberflow.overlay.lanes.lane import Lane

    bb = cfg.bus_bytes
    return Lane(
        value_types=tuple(cfg.value_type.split("+")),
        bus_bits=cfg.bus_bits,
        tile_depth=cfg.tile_bytes // bb,
        x_depth=cfg.x_bytes // bb,
        y_depth=cfg.y_bytes // bb,
        max_k=cfg.max_k,
        kernels=cfg.kernels,
    )


def verilog(config: ShellConfig | None = None) -> dict[str, str]:
    """The shell's Verilog: ``{file name: text}``, the top module named :data:`TOP`."""
    shell = Shell(config)
    out = convert(shell, ios=shell.ios, name=TOP)
    # picorv32.v sets a timescale; the shell states the same one, so that no module of the
    # design inherits it by file order (Verilator's TIMESCALEMOD).
    return {
        f"{TOP}.v": "`timescale 1ns / 1ps\n" + str(out),
        "picorv32.v": picorv32_verilog().read_text(),
    }
