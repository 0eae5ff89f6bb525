"""The control CPU: picorv32 (from ``pythondata-cpu-picorv32``) with its program/data RAM.

The RAM has a second port for the host, which loads the firmware while the CPU is held in
reset, so a firmware change needs no new bitstream. Accesses outside the RAM go out on a small
peripheral bus (the shell decodes it).

LiteX's own picorv32 wrapper puts the CPU behind Wishbone with its SoC's address decoding; the
shell needs only a RAM and two register windows, so the CPU's native memory interface is decoded
here directly, which also keeps every RAM access at two cycles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from migen import Cat, ClockSignal, If, Instance, Memory, Module, Mux, Signal

from fiberflow.overlay import regmap

__all__ = ["ControlCPU", "picorv32_verilog"]


def picorv32_verilog() -> Path:
    """Path of ``picorv32.v`` in the ``pythondata-cpu-picorv32`` package."""
    try:
        import pythondata_cpu_picorv32
    except ImportError as exc:
        from fiberflow.errors import ToolchainError

        raise ToolchainError(
            "the Python package 'pythondata-cpu-picorv32' is missing; "
            "install it with: pip install -e '.[hw]'"
        ) from exc
    return Path(pythondata_cpu_picorv32.data_location) / "picorv32.v"


class ControlCPU(Module):
    """picorv32 (RV32IM, no compressed instructions, no interrupts) and its RAM.

    Parameters
    ----------
    ram_bytes : int
        Size of the program/data RAM at CPU address 0 (a power of two).

    Attributes
    ----------
    reset : Signal(), in
        Holds the CPU in reset (the RAM keeps its contents).
    trap : Signal(), out
        The CPU stopped on an illegal instruction or misaligned access.
    hold : Signal(), in
        Freezes the CPU's memory bus from the next cycle on (a debug halt; tie to 0 on boards).
    host_adr : Signal, in
        Host port: word address into the RAM.
    host_we : Signal(4), in
        Host port: byte write enables.
    host_dat_w : Signal(32), in
    host_dat_r : Signal(32), out
        Host port read data, one cycle after the address.
    p_valid : Signal(), out
        Peripheral access (CPU address outside the RAM). Held until ``p_ready``.
    p_addr, p_wdata : Signal(32), out
    p_wstrb : Signal(4), out
        Byte enables; 0 for a read. A write takes effect in the cycle ``p_ready`` is high.
    p_ready : Signal(), in
    p_rdata : Signal(32), in
        Sampled with ``p_ready``.
    """

    def __init__(self, ram_bytes: int = 8192) -> None:
        cpu_port = self._ports_and_ram(ram_bytes)

        # # #

        # The CPU's reset from a flip-flop (low while sys_rst is high), off picorv32's paths.
        resetn = Signal()
        self.sync += resetn.eq(~self.reset)
        mem_valid, mem_ready = Signal(), Signal()
        mem_addr, mem_wdata, mem_rdata = Signal(32), Signal(32), Signal(32)
        mem_wstrb = Signal(4)
        la_read, la_write, la_addr = Signal(), Signal(), Signal(32)
        # Outputs of picorv32 the shell has no use for, named so that Verilator's -Wall sees
        # them as deliberately unused (its default --unused-regexp is *unused*): the
        # instruction-fetch flag, the look-ahead interface's data (its strobes and address
        # are used), PCPI (disabled), end of interrupt (no IRQs) and the trace port
        # (disabled).
        unused = {
            name: Signal(width, name=f"cpu_{name}_unused")
            for name, width in (("mem_instr", 1), ("mem_la_wdata", 32), ("mem_la_wstrb", 4),
                                ("pcpi_valid", 1), ("pcpi_insn", 32), ("pcpi_rs1", 32),
                                ("pcpi_rs2", 32), ("eoi", 32), ("trace_valid", 1),
                                ("trace_data", 36))
        }  # fmt: skip
        self.specials += Instance(
            "picorv32",
            p_ENABLE_COUNTERS=0,
            p_ENABLE_COUNTERS64=0,
            p_BARREL_SHIFTER=1,
            # The ALU result and the branch compare each get a register of their own (one
            # cycle more per ALU instruction and per branch): without them picorv32's paths
            # from its decoded instruction into its state machine map to 9-10 LUT levels on
            # xc7, over the budget of 8 at 100 MHz; with them, 8. The firmware's control
            # overhead per tile has room for the cycles (docs/benchmarks.md, rtl shell).
            p_TWO_CYCLE_ALU=1,
            p_TWO_CYCLE_COMPARE=1,
            p_COMPRESSED_ISA=0,
            # The single-cycle multiplier (DSP blocks) rather than the 32-cycle shift-add one:
            # the job walker multiplies on every tile (addresses of y blocks, x slices).
            p_ENABLE_MUL=0,
            p_ENABLE_FAST_MUL=1,
            p_ENABLE_DIV=1,
            p_ENABLE_IRQ=0,
            p_ENABLE_PCPI=0,
            # No trap on a misaligned load or store: the firmware reaches memory only through
            # u32 pointers (word-indexed windows and registers), so its data addresses are
            # aligned whatever a job holds, and the check's logic put picorv32's
            # mem_ready -> mem_wordsize path at 9 LUT levels on xc7 (8 without it). A wild
            # jump still ends in an illegal-instruction trap.
            p_CATCH_MISALIGN=0,
            p_CATCH_ILLINSN=1,
            p_PROGADDR_RESET=regmap.CPU_RAM_BASE,
            p_STACKADDR=regmap.CPU_RAM_BASE + ram_bytes,
            i_clk=ClockSignal(),
            i_resetn=resetn,
            o_trap=self.trap,
            o_mem_valid=mem_valid,
            i_mem_ready=mem_ready,
            o_mem_addr=mem_addr,
            o_mem_wdata=mem_wdata,
            o_mem_wstrb=mem_wstrb,
            i_mem_rdata=mem_rdata,
            o_mem_la_read=la_read,
            o_mem_la_write=la_write,
            o_mem_la_addr=la_addr,
            i_pcpi_wr=0,
            i_pcpi_rd=0,
            i_pcpi_wait=0,
            i_pcpi_ready=0,
            i_irq=0,
            **{f"o_{name}": sig for name, sig in unused.items()},
        )

        # RAM accesses take one cycle: picorv32's look-ahead interface gives a read's address
        # in the cycle before mem_valid, so the RAM's registered read data is there when
        # mem_valid rises; writes happen at the end of their mem_valid cycle.
        #
        # Without compressed instructions picorv32 raises mem_valid only in the cycle after
        # mem_la_read / mem_la_write (with mem_valid low, and not once trapped), loading
        # mem_addr from mem_la_addr, and holds mem_addr while mem_valid is high. So the word
        # read in the cycle before is always the access's own (mem_ready needs no address
        # compare), and whether the next cycle has a RAM access, and so mem_ready, is known a
        # cycle ahead: mem_ready comes straight from a flip-flop, as picorv32's long paths
        # (mem_ready -> mem_xfer -> its state machine) need for the LUT-level budget.
        ram_adr = Signal(len(cpu_port.adr))
        la_start = Signal()  # an access starts in the next cycle
        ram_access = Signal()  # registered: mem_valid with mem_addr in the RAM
        hold = Signal()  # registered self.hold
        ram_ready = Signal()
        p_start = Signal()  # first cycle of a peripheral access
        p_done = Signal()  # registered answer of a peripheral access
        p_answer = Signal()
        ready = Signal()  # registered mem_ready
        rdata = Signal(32)
        ram_word = slice(2, 2 + len(ram_adr))
        self.comb += [
            la_start.eq((la_read | la_write) & ~self.trap),
            # (The RAM decodes the word bits it has; ram_access checks the region.)
            ram_adr.eq(Mux(mem_valid, mem_addr[ram_word], la_addr[ram_word])),
            cpu_port.adr.eq(ram_adr),
            cpu_port.dat_w.eq(mem_wdata),
            ram_ready.eq(ram_access & ~hold),
            cpu_port.we.eq(Mux(ram_ready, mem_wstrb, 0)),
            p_start.eq(mem_valid & ~ram_access & ~p_done & ~hold),
            self.p_valid.eq(p_start),
            self.p_addr.eq(mem_addr),
            self.p_wdata.eq(mem_wdata),
            self.p_wstrb.eq(mem_wstrb),
            p_answer.eq(resetn & self.p_valid & self.p_ready),
            mem_ready.eq(ready),
            mem_rdata.eq(Mux(ram_access, cpu_port.dat_r, rdata)),
        ]
        # The look-ahead address starts RAM reads (a word address: its low two bits are 0;
        # the bits above the RAM are not decoded) and tells the RAM from the peripherals.
        la_ignored = Cat(la_addr[:2], la_addr[2 + len(ram_adr) : 28])
        self.comb += Signal(len(la_ignored), name="cpu_la_unused").eq(la_ignored)
        next_ram_access = Mux(
            la_start,
            la_addr[28:] == (regmap.CPU_RAM_BASE >> 28),
            # (An access goes on until it is answered, or the CPU is reset.)
            ram_access & ~ready & resetn,
        )
        self.sync += [
            hold.eq(self.hold),
            ram_access.eq(next_ram_access),
            ready.eq((next_ram_access & ~self.hold) | p_answer),
            p_done.eq(p_answer),
            If(p_answer, rdata.eq(self.p_rdata)),
        ]

    def _ports_and_ram(self, ram_bytes: int) -> Any:
        """Check ``ram_bytes``, declare the ports above, make the RAM with the host's port
        wired; the CPU's port of the RAM (read-write, byte enables, one cycle read latency).
        (Also used by the CPU that ``scripts/cpu_ab.py`` puts in picorv32's place.)"""
        if ram_bytes & (ram_bytes - 1) or not 1024 <= ram_bytes <= regmap.HOST_RAM_WINDOW_BYTES:
            raise ValueError(
                f"ram_bytes must be a power of two from 1024 to {regmap.HOST_RAM_WINDOW_BYTES}"
            )
        words = ram_bytes // 4
        self.reset = Signal()
        self.trap = Signal()
        self.hold = Signal()
        self.host_adr = Signal(max=words)
        self.host_we = Signal(4)
        self.host_dat_w = Signal(32)
        self.host_dat_r = Signal(32)
        self.p_valid = Signal()
        self.p_addr = Signal(32)
        self.p_wdata = Signal(32)
        self.p_wstrb = Signal(4)
        self.p_ready = Signal()
        self.p_rdata = Signal(32)
        ram = Memory(32, words)
        cpu_port = ram.get_port(write_capable=True, we_granularity=8)
        host_port = ram.get_port(write_capable=True, we_granularity=8)
        self.specials += ram, cpu_port, host_port
        self.comb += [
            host_port.adr.eq(self.host_adr),
            host_port.we.eq(self.host_we),
            host_port.dat_w.eq(self.host_dat_w),
            self.host_dat_r.eq(host_port.dat_r),
        ]
        return cpu_port
