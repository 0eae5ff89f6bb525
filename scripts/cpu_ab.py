"""The control CPU as VexRiscv instead of picorv32: the same firmware and jobs on the rtl
device with each, and VexRiscv's LUT levels on xc7 (docs/benchmarks.md, "A pipelined control
CPU"). Measured, not shipped: the shell keeps picorv32 (the record says why).

    pip install pythondata-cpu-vexriscv==1.0.1.post407
    python scripts/cpu_ab.py            # cycles of each job, doorbell to status, both CPUs
    python scripts/cpu_ab.py --depth    # the CPU and its glue mapped alone (yosys, xc7)

VexRiscv is the "lite" build the package ships (VexRiscv_Lite.v: RV32IM, 2 KiB
instruction cache, no data cache, iterative multiplier and divider), behind the glue below in
place of ``ControlCPU`` (same ports). The firmware is built from a copy of firmware/ whose
start.S first points the trap vector outside the RAM (``csrw mtvec``, which picorv32 would
trap on). Every result must be bit-identical to picorv32's. Needs a source checkout and the
hw extra; the VexRiscv model is built without a training profile (FIBERFLOW_PGO=0).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from migen import Cat, ClockSignal, If, Instance, Mux, Signal

from fiberflow.overlay import regmap
from fiberflow.overlay.shell.cpu import ControlCPU

TRAP_VECTOR = 0xF000_0000  # outside the RAM: a fetch there is never answered
CPU_FILE = "VexRiscv_Lite.v"

# the job floor (firmware_phases.py's small job), a mid-sized job, and the rtl bench's seven
# matrices (fiberflow bench spmv --device rtl: the same generators and seeds)
SMALL = {
    "random 2k x 2k, 1/row": (2000, 2000, 1, 1),
    "random 20k x 20k, 5/row": (20000, 20000, 5, 1),
}


def cpu_verilog() -> Path:
    import pythondata_cpu_vexriscv

    return Path(pythondata_cpu_vexriscv.data_location) / CPU_FILE


class VexCPU(ControlCPU):
    """VexRiscv_Lite and its RAM, with the ports of ``overlay.shell.cpu.ControlCPU`` (see
    there). Both Wishbone buses share the RAM's port, data first, answered a cycle after the
    port takes them (an instruction-cache refill streams a word a cycle); peripheral requests
    leave from registers; a fetch outside the RAM (the trap vector, a wild jump) sets ``trap``
    and is never answered."""

    def __init__(self, ram_bytes: int = 8192) -> None:
        cpu_port = self._ports_and_ram(ram_bytes)

        # # #

        # The CPU's reset from a flip-flop (high while sys_rst is), off the CPU's paths.
        rst = Signal(reset=1)
        self.sync += rst.eq(self.reset)
        # The two Wishbone buses (word addresses). Signals the shell has no use for are named
        # *_unused, so that Verilator's -Wall sees them as deliberately unused: the instruction
        # bus never writes, and neither bus wraps its bursts.
        i_stb, i_cyc, i_ack = Signal(), Signal(), Signal()
        i_adr, i_cti, i_dat_r = Signal(30), Signal(3), Signal(32)
        d_stb, d_cyc, d_we, d_ack = Signal(), Signal(), Signal(), Signal()
        d_adr, d_sel, d_dat_w, d_dat_r = Signal(30), Signal(4), Signal(32), Signal(32)
        unused = {
            name: Signal(width, name=f"cpu_{name}_unused")
            for name, width in (("iBusWishbone_WE", 1), ("iBusWishbone_DAT_MOSI", 32),
                                ("iBusWishbone_SEL", 4), ("iBusWishbone_BTE", 2),
                                ("dBusWishbone_CTI", 3), ("dBusWishbone_BTE", 2))
        }  # fmt: skip
        self.specials += Instance(
            "VexRiscv",
            i_clk=ClockSignal(),
            i_reset=rst,
            i_externalResetVector=regmap.CPU_RAM_BASE,
            i_timerInterrupt=0,
            i_softwareInterrupt=0,
            i_externalInterruptArray=0,
            o_iBusWishbone_CYC=i_cyc,
            o_iBusWishbone_STB=i_stb,
            o_iBusWishbone_ADR=i_adr,
            o_iBusWishbone_CTI=i_cti,
            i_iBusWishbone_DAT_MISO=i_dat_r,
            i_iBusWishbone_ACK=i_ack,
            i_iBusWishbone_ERR=0,
            o_dBusWishbone_CYC=d_cyc,
            o_dBusWishbone_STB=d_stb,
            o_dBusWishbone_WE=d_we,
            o_dBusWishbone_ADR=d_adr,
            o_dBusWishbone_SEL=d_sel,
            o_dBusWishbone_DAT_MOSI=d_dat_w,
            i_dBusWishbone_DAT_MISO=d_dat_r,
            i_dBusWishbone_ACK=d_ack,
            i_dBusWishbone_ERR=0,
            **{f"o_{name}": sig for name, sig in unused.items()},
        )

        # Both buses share the RAM's port, data first; an access is answered in the cycle
        # after the port takes it (the RAM's read latency), so each bus sees registered
        # answers. An instruction-cache refill is a burst (CTI 010 until its last beat): while
        # its beat is answered the port already reads the next word, so a line of 8 words
        # takes 9 cycles instead of 16.
        aw = len(cpu_port.adr)
        ram_ack, p_ack = Signal(), Signal()  # the answers, registered
        p_q = Signal(32)
        i_go, i_in_ram, d_go, d_ram, i_read, d_read = (Signal() for _ in range(6))
        run = ~rst & ~self.hold
        burst = i_cti == 0b010
        self.comb += [
            i_in_ram.eq(i_adr[aw:] == regmap.CPU_RAM_BASE >> (2 + aw)),
            d_ram.eq(d_adr[aw:] == regmap.CPU_RAM_BASE >> (2 + aw)),
            # (In the cycle an access is answered the bus still shows it: not a new one.)
            i_go.eq(i_cyc & i_stb & (~i_ack | burst) & ~self.trap & run),
            d_go.eq(d_cyc & d_stb & ~d_ack & run),
            d_read.eq(d_go & d_ram),
            i_read.eq(i_go & i_in_ram & ~d_read),
            cpu_port.adr.eq(Mux(d_read, d_adr[:aw], Mux(i_ack, i_adr[:aw] + 1, i_adr[:aw]))),
            cpu_port.dat_w.eq(d_dat_w),
            cpu_port.we.eq(Mux(d_read & d_we, d_sel, 0)),
            i_dat_r.eq(cpu_port.dat_r),
            d_dat_r.eq(Mux(p_ack, p_q, cpu_port.dat_r)),
            d_ack.eq(ram_ack | p_ack),
        ]
        self.sync += [
            i_ack.eq(i_read),
            ram_ack.eq(d_read),
            # A peripheral access goes out from registers: the data bus's address comes out of
            # the CPU through logic of its own, and the shell decodes it further.
            If(rst, self.p_valid.eq(0))
            .Elif(~self.p_valid, self.p_valid.eq(d_go & ~d_ram))
            .Elif(self.p_ready, self.p_valid.eq(0)),
            If(
                ~self.p_valid,
                self.p_addr.eq(Cat(0, 0, d_adr)),
                self.p_wdata.eq(d_dat_w),
                self.p_wstrb.eq(Mux(d_we, d_sel, 0)),
            ),
            p_ack.eq(self.p_valid & self.p_ready & ~rst),
            If(self.p_valid & self.p_ready, p_q.eq(self.p_rdata)),
            If(rst, self.trap.eq(0)).Elif(i_go & ~i_in_ram, self.trap.eq(1)),
        ]


def vexriscv_firmware() -> bytes:
    """The firmware with the trap vector set first thing in start.S."""
    from fiberflow.overlay import firmware

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "firmware"
        shutil.copytree(firmware.source_dir(), src)
        start = src / "start.S"
        text = start.read_text()
        at = text.index("_start:\n") + len("_start:\n")
        start.write_text(
            text[:at] + f"    li      t0, 0x{TRAP_VECTOR:08x}\n    csrw    mtvec, t0\n" + text[at:]
        )
        return firmware.build(src=src)


def use_vexriscv() -> None:
    """Every shell generated from now on, in this process, has VexRiscv."""
    from fiberflow.overlay.shell import top

    os.environ["FIBERFLOW_PGO"] = "0"  # the training child would generate picorv32's shell
    top.ControlCPU = VexCPU  # type: ignore[misc]
    top.picorv32_verilog = cpu_verilog  # (the file keeps picorv32's name in the build)


def jobs() -> None:
    import fiberflow as ff
    from fiberflow.bench import counted
    from fiberflow.overlay import firmware

    results: dict[str, list[tuple[int, np.ndarray]]] = {}
    for cpu in ("picorv32", "vexriscv"):
        if cpu == "vexriscv":
            use_vexriscv()
        image = vexriscv_firmware() if cpu == "vexriscv" else firmware.image()
        with ff.open("rtl") as dev:
            dev.driver.load_firmware(image)
            jobs = [(k, counted.random_rows(*v)) for k, v in SMALL.items()] + counted.cases(1)
            for label, a in jobs:
                x = np.random.default_rng(1).standard_normal(a.shape[1]).astype(np.float32)
                y = ff.spmv(a, x, device=dev)
                results.setdefault(label, []).append((dev.last_stats.cycles, y.view(np.uint32)))
    print("| job | picorv32 cycles | VexRiscv cycles | speed-up |")
    print("|---|---|---|---|")
    for label, ((c0, y0), (c1, y1)) in results.items():
        assert np.array_equal(y0, y1), f"{label}: the two CPUs' results differ"
        print(f"| {label} | {c0:,} | {c1:,} | {c0 / c1:.3f}x |")


def depth() -> None:
    from migen.fhdl.verilog import convert

    from fiberflow.boards import timing, timing_paths

    c = VexCPU(16384)
    ios = {c.reset, c.trap, c.hold, c.host_adr, c.host_we, c.host_dat_w, c.host_dat_r,
           c.p_valid, c.p_addr, c.p_wdata, c.p_wstrb, c.p_ready, c.p_rdata}  # fmt: skip
    files = {"cpu.v": str(convert(c, ios=ios, name="cpu")), CPU_FILE: cpu_verilog().read_text()}
    for e in timing_paths.endpoints(timing.xc7_netlist(files, "cpu", timeout_s=1200), "cpu")[:10]:
        print(e.summary())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depth", action="store_true", help="map the CPU and its glue alone (xc7)")
    args = p.parse_args()
    depth() if args.depth else jobs()


if __name__ == "__main__":
    main()
