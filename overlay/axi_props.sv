// The AXI master rules of the DMA engine (overlay/shell/dma.py) as safety properties, for yosys
// `read_verilog -formal` (driven by overlay/shell/axi_formal.py).
//
// The checker sees only the master port, the engine's halt / drained pins and its reset. It
// keeps the bus's own bookkeeping (lengths of the bursts whose W or R beats are still due,
// beats of the current burst, write bursts waiting for B) and
//   - asserts each rule the engine must keep (CHECK selects which, one bit per rule);
//   - assumes only what a legal AXI slave does (any ready / valid timing; R and B only for
//     outstanding bursts, RLAST on the last beat, valid and payload held until ready) and the
//     shell's contract for halt and reset (top.py: the engine is reset only in the cycle
//     after it said drained under halt, and halt falls only once it has been reset).
// Its bookkeeping is also an output, for the invariants that tie it to the engine's state.

module axi_master_props #(
    parameter BYTES = 8,      // bus bytes
    parameter SIZE = 3,       // log2(BYTES): AxSIZE of a full-width beat
    parameter MAXOUT = 4,     // bursts the engine may have in flight
    parameter Q = 8,          // depth of the checker's burst queues (> MAXOUT)
    parameter CHECK = 255     // the rules asserted, one bit each (see RULES in axi_formal.py)
) (
    input clk,
    input rst,
    input halt,
    input drained,
    input aw_valid, input aw_ready, input [31:0] aw_addr, input [7:0] aw_len,
    input [2:0] aw_size, input [1:0] aw_burst,
    input w_valid, input w_ready, input w_last, input [8*BYTES-1:0] w_data,
    input [BYTES-1:0] w_strb,
    input b_valid, input b_ready, input [1:0] b_resp,
    input ar_valid, input ar_ready, input [31:0] ar_addr, input [7:0] ar_len,
    input [2:0] ar_size, input [1:0] ar_burst,
    input r_valid, input r_ready, input r_last, input [8*BYTES-1:0] r_data,
    input [1:0] r_resp,
    output reg [7:0] awn = 0,     // AW taken, W burst not finished
    output reg [7:0] wbeat = 0,   // W beats taken of the oldest such burst
    output reg [7:0] bpend = 0,   // W burst finished, B not taken
    output reg [7:0] arn = 0,     // AR taken, RLAST not taken
    output reg [7:0] rbeat = 0,
    output [8*Q-1:0] awq_flat,    // AWLEN of those bursts, oldest in the low byte
    output reg p_ar_stuck = 0,    // AR / AW was offered and not taken last cycle
    output reg p_aw_stuck = 0
);
    reg [7:0] awq [0:Q-1];
    reg [7:0] arq [0:Q-1];
    integer i;
    initial for (i = 0; i < Q; i = i + 1) begin awq[i] = 0; arq[i] = 0; end
    genvar g;
    generate for (g = 0; g < Q; g = g + 1) begin : flat
        assign awq_flat[8*g +: 8] = awq[g];
    end endgenerate

    wire ar_fire = ar_valid & ar_ready;
    wire aw_fire = aw_valid & aw_ready;
    wire w_fire = w_valid & w_ready;
    wire wl_fire = w_fire & w_last & (awn != 0);
    wire r_fire = r_valid & r_ready;
    wire rl_fire = r_fire & r_last & (arn != 0);
    wire b_fire = b_valid & b_ready;

    // -- last cycle's view (for the hold rules)
    reg p_rst = 0, p_halt = 0, p_drained = 0;
    reg p_w_stuck = 0, p_r_stuck = 0, p_b_stuck = 0;
    reg [31:0] p_ar_addr = 0, p_aw_addr = 0;
    reg [7:0] p_ar_len = 0, p_aw_len = 0;
    reg [2:0] p_ar_size = 0, p_aw_size = 0;
    reg [1:0] p_ar_burst = 0, p_aw_burst = 0, p_r_resp = 0, p_b_resp = 0;
    reg [8*BYTES-1:0] p_w_data = 0, p_r_data = 0;
    reg [BYTES-1:0] p_w_strb = 0;
    reg p_w_last = 0, p_r_last = 0;

    always @(posedge clk) begin
        p_rst <= rst; p_halt <= halt; p_drained <= drained;
        p_ar_stuck <= ar_valid & ~ar_ready;
        p_aw_stuck <= aw_valid & ~aw_ready;
        p_w_stuck <= w_valid & ~w_ready;
        p_r_stuck <= r_valid & ~r_ready;
        p_b_stuck <= b_valid & ~b_ready;
        p_ar_addr <= ar_addr; p_ar_len <= ar_len; p_ar_size <= ar_size; p_ar_burst <= ar_burst;
        p_aw_addr <= aw_addr; p_aw_len <= aw_len; p_aw_size <= aw_size; p_aw_burst <= aw_burst;
        p_w_data <= w_data; p_w_strb <= w_strb; p_w_last <= w_last;
        p_r_data <= r_data; p_r_last <= r_last; p_r_resp <= r_resp;
        p_b_resp <= b_resp;
    end

    // -- the bus's bookkeeping: queues of burst lengths, oldest at index 0
    always @(posedge clk) begin
        if (wl_fire)
            for (i = 0; i < Q - 1; i = i + 1) awq[i] <= awq[i + 1];
        if (aw_fire && awn - wl_fire < Q)
            awq[awn - wl_fire] <= aw_len;
        awn <= awn + aw_fire - wl_fire;
        if (w_fire) wbeat <= wl_fire ? 0 : wbeat + 1;
        bpend <= bpend + wl_fire - (b_fire && bpend != 0);

        if (rl_fire)
            for (i = 0; i < Q - 1; i = i + 1) arq[i] <= arq[i + 1];
        if (ar_fire && arn - rl_fire < Q)
            arq[arn - rl_fire] <= ar_len;
        arn <= arn + ar_fire - rl_fire;
        if (r_fire) rbeat <= rl_fire ? 0 : rbeat + 1;
    end

    // -- a legal slave, and the shell's contract
    always @* begin
        if (r_valid) begin
            assume (arn != 0);
            assume (r_last == (rbeat == arq[0]));
        end
        if (p_r_stuck)
            assume (r_valid && r_data == p_r_data && r_last == p_r_last && r_resp == p_r_resp);
        if (b_valid) assume (bpend != 0);
        if (p_b_stuck) assume (b_valid && b_resp == p_b_resp);
        if (rst) assume (p_halt && p_drained);
        if (p_halt && !halt) assume (p_rst);
    end

    // -- the rules: ok_<rule> is 0 in a cycle that breaks it
    // len: at most 16 beats (AXI3)
    wire ok_len = (!ar_valid || ar_len <= 15) && (!aw_valid || aw_len <= 15);
    // incr: INCR bursts
    wire ok_incr = (!ar_valid || ar_burst == 2'b01) && (!aw_valid || aw_burst == 2'b01);
    // full: full-width, aligned beats; a W beat writes all its bytes or none
    wire ok_full = (!ar_valid || (ar_size == SIZE && ar_addr % BYTES == 0))
                   && (!aw_valid || (aw_size == SIZE && aw_addr % BYTES == 0))
                   && (!w_valid || w_strb == 0 || &w_strb);
    // 4k: no burst crosses a 4 KiB boundary
    wire ok_4k = (!ar_valid || ar_addr[11:0] + ((ar_len + 32'd1) << ar_size) <= 4096)
                 && (!aw_valid || aw_addr[11:0] + ((aw_len + 32'd1) << aw_size) <= 4096);
    // wlast: WLAST on the last beat of its burst, on no other
    wire ok_wlast = !w_valid || awn == 0 || w_last == (wbeat == awq[0]);
    // w_after_aw: W only after its AW
    wire ok_w_after_aw = !w_valid || awn != 0;
    // hold: valid and payload held until ready
    wire ok_hold = (!p_ar_stuck || (ar_valid && ar_addr == p_ar_addr && ar_len == p_ar_len
                                    && ar_size == p_ar_size && ar_burst == p_ar_burst))
                   && (!p_aw_stuck || (aw_valid && aw_addr == p_aw_addr && aw_len == p_aw_len
                                       && aw_size == p_aw_size && aw_burst == p_aw_burst))
                   && (!p_w_stuck || (w_valid && w_data == p_w_data && w_strb == p_w_strb
                                      && w_last == p_w_last));
    // outstanding: no address while MAXOUT bursts are in flight
    wire ok_outstanding = !(ar_valid || aw_valid) || arn + awn + bpend < MAXOUT;

    always @* begin
        if (CHECK & 1) assert (ok_len);
        if (CHECK & 2) assert (ok_incr);
        if (CHECK & 4) assert (ok_full);
        if (CHECK & 8) assert (ok_4k);
        if (CHECK & 16) assert (ok_wlast);
        if (CHECK & 32) assert (ok_w_after_aw);
        if (CHECK & 64) assert (ok_hold);
        if (CHECK & 128) assert (ok_outstanding);
    end
endmodule
