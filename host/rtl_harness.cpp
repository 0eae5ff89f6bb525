// Per-cycle loop of the rtl device: the Verilated shell, an AXI4-Lite master driven from Python,
// and a DDR model that serves the shell's AXI4 master ports straight from host memory.
//
// host/devices/rtl.py prepends the configuration:
//   #define TOP Vfiberflow_shell      (the Verilated class)  #include "Vfiberflow_shell.h"
//   #define ROOT Vfiberflow_shell___024root                  (the Verilated root class)
//   #include "Vfiberflow_shell___024root.h"
//   #define NPORTS <DMA engines>      #define BUS_BYTES <8 or 16>
//   #define BIND_PORTS(s) BIND(s, 0) BIND(s, 1) ...
//
// DDR model, per port: read bursts are accepted up to max_reads deep and answered, in order,
// read_latency cycles after acceptance; write bursts up to max_writes deep, B sent write_latency
// cycles after the last W beat. Bandwidth: every data beat spends BUS_BYTES of credit from its
// port and direction (port_bpc bytes/cycle each) and from the shared DDR (total_bpc). Bursts
// outside every mapped region get DECERR, bursts touching the fault range get fault_resp.
// Optional random backpressure (probability bp/65536 per channel per cycle, on the AXI4-Lite
// master's BREADY/RREADY too) tests the DUT.
// Once a valid is raised it is held until its handshake, as AXI requires.
//
// Rule check: the model also checks what the shell's masters do against the rules of the
// board's ports, and counts each breach by rule (ff_rule_errors): a beat size other than the
// bus width, WLAST off the burst's last beat, a burst longer than max_beats (16 on the AXI3 HP
// ports of a Zynq-7000), a burst that crosses a `boundary`-byte boundary (4 KB in AXI), an
// address not aligned to the bus width, a valid dropped or its payload changed before its
// handshake, and write data offered before its burst's address was accepted. The ports carry
// no burst type: INCR, AXI's meaning when it is left out.
//
// Reset check: the model watches the host's AXI4-Lite writes of the shell's reset bit
// (ff_watch_reset) and numbers the releases (a write that clears the bit after one that set
// it); each burst is tagged with the number current when it was accepted. When the host
// releases the reset, no burst may be left in a port's queues, and no beat or response may
// move for a burst accepted before the last release: either would carry a beat of an aborted
// transfer into a later one. Each breach counts in ff_stale (a port with bursts left at a
// release counts once).

#include <cstdint>
#include <cstring>
#include <deque>
#include <type_traits>
#include <vector>

#include "verilated.h"

struct Burst {
    uint64_t addr;
    int beats;
    int id;
    uint8_t resp;
    uint64_t ready_at;
    uint64_t epoch;  // the host's releases of the reset before this burst was accepted
};

enum Rule { RULE_SIZE, RULE_WLAST, RULE_LENGTH, RULE_BOUNDARY, RULE_ALIGN, RULE_HOLD,
            RULE_W_FIRST, N_RULES };

// A channel's offer that has not been taken yet: what must still be offered next cycle.
struct Offer {
    bool on;
    uint64_t addr;
    int len, size, id;
    uint8_t data[BUS_BYTES + BUS_BYTES / 8 + 1];  // W: data, strobes, last
};

struct Port {
    CData *awvalid, *awready, *awlen, *awsize, *awid;
    IData *awaddr;
    CData *wvalid, *wready, *wlast;
    void *wdata, *wstrb;
    CData *bvalid, *bready, *bresp, *bid;
    CData *arvalid, *arready, *arlen, *arsize, *arid;
    IData *araddr;
    CData *rvalid, *rready, *rlast, *rresp, *rid;
    void *rdata;
    std::deque<Burst> rq, wq, bq;
    int r_beat, w_beat;
    double r_credit, w_credit;
    bool r_hold, b_hold;
    Offer ar_offer, aw_offer, w_offer;
};

struct Region {
    uint64_t base, size;
    uint8_t *ptr;
};

struct Sim {
    VerilatedContext *ctx;
    TOP *top;
    uint64_t cycle;
    Port ports[NPORTS];
    std::vector<Region> regions;
    // DDR model configuration
    int read_latency, write_latency, max_reads, max_writes;
    double port_bpc, total_bpc, total_credit;
    uint32_t bp;
    uint64_t rng;
    // faults
    uint64_t fault_lo, fault_hi;
    uint8_t fault_resp;
    bool hang;  // the DDR stops answering (raises no ready or valid it has not raised yet)
    int64_t hang_after;  // data beats (any port) until hang is set; -1: off
    // reset check (see the top of the file)
    uint32_t reset_addr, reset_mask;
    uint64_t epoch;
    bool held;  // the host's last write of the watched register set the bit
    uint64_t stale;
    // AXI4-Lite master
    int lw_state, lr_state;  // bit 0: A pending, bit 1: W pending (writes); 1: AR, 2: wait R
    uint32_t l_addr, l_data, l_rdata;
    uint8_t l_resp;
    // rule check (see the top of the file)
    int max_beats;
    uint64_t boundary;
    uint64_t rule_errors[N_RULES];
    uint64_t evals;  // model evaluations: one per cycle, two in exact mode or a register access
    bool exact;  // settle combinational outputs before sampling in every cycle
};

#define BIND(s, N)                                         \
    {                                                      \
        Port &p = s->ports[N];                             \
        p.awvalid = &s->top->m_axi##N##_awvalid;           \
        p.awready = &s->top->m_axi##N##_awready;           \
        p.awlen = &s->top->m_axi##N##_awlen;               \
        p.awsize = &s->top->m_axi##N##_awsize;             \
        p.awid = &s->top->m_axi##N##_awid;                 \
        p.awaddr = &s->top->m_axi##N##_awaddr;             \
        p.wvalid = &s->top->m_axi##N##_wvalid;             \
        p.wready = &s->top->m_axi##N##_wready;             \
        p.wlast = &s->top->m_axi##N##_wlast;               \
        p.wdata = (void *)&s->top->m_axi##N##_wdata;       \
        p.wstrb = (void *)&s->top->m_axi##N##_wstrb;       \
        p.bvalid = &s->top->m_axi##N##_bvalid;             \
        p.bready = &s->top->m_axi##N##_bready;             \
        p.bresp = &s->top->m_axi##N##_bresp;               \
        p.bid = &s->top->m_axi##N##_bid;                   \
        p.arvalid = &s->top->m_axi##N##_arvalid;           \
        p.arready = &s->top->m_axi##N##_arready;           \
        p.arlen = &s->top->m_axi##N##_arlen;               \
        p.arsize = &s->top->m_axi##N##_arsize;             \
        p.arid = &s->top->m_axi##N##_arid;                 \
        p.araddr = &s->top->m_axi##N##_araddr;             \
        p.rvalid = &s->top->m_axi##N##_rvalid;             \
        p.rready = &s->top->m_axi##N##_rready;             \
        p.rlast = &s->top->m_axi##N##_rlast;               \
        p.rresp = &s->top->m_axi##N##_rresp;               \
        p.rid = &s->top->m_axi##N##_rid;                   \
        p.rdata = (void *)&s->top->m_axi##N##_rdata;       \
    }

static bool backpressure(Sim *s) {
    if (!s->bp) return false;
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return (uint32_t)(s->rng & 0xffff) < s->bp;
}

// The host memory behind [addr, addr + n), or nullptr if it is not inside one mapped region.
static uint8_t *lookup(Sim *s, uint64_t addr, uint64_t n) {
    for (auto &r : s->regions)
        if (addr >= r.base && addr + n <= r.base + r.size) return r.ptr + (addr - r.base);
    return nullptr;
}

static uint8_t burst_resp(Sim *s, uint64_t addr, uint64_t n) {
    if (s->fault_resp && addr < s->fault_hi && addr + n > s->fault_lo) return s->fault_resp;
    return lookup(s, addr, n) ? 0 : 3;  // DECERR
}

// Drive the slave side of every port from the model state (before the clock edge).
static void drive_ports(Sim *s) {
    for (int i = 0; i < NPORTS; i++) {
        Port &p = s->ports[i];
        *p.arready = (int)p.rq.size() < s->max_reads && !s->hang && !backpressure(s);
        *p.awready = (int)p.wq.size() < s->max_writes && !s->hang && !backpressure(s);
        *p.wready = !p.wq.empty() && p.w_credit >= BUS_BYTES && s->total_credit >= BUS_BYTES &&
                    !s->hang && !backpressure(s);
        bool r_ok = !p.rq.empty() && p.rq.front().ready_at <= s->cycle && !s->hang;
        bool rv = p.r_hold || (r_ok && p.r_credit >= BUS_BYTES &&
                               s->total_credit >= BUS_BYTES && !backpressure(s));
        *p.rvalid = rv;
        if (rv) {
            Burst &b = p.rq.front();
            uint64_t a = b.addr + (uint64_t)p.r_beat * BUS_BYTES;
            uint8_t *src = b.resp ? nullptr : lookup(s, a, BUS_BYTES);
            if (src)
                memcpy(p.rdata, src, BUS_BYTES);
            else
                memset(p.rdata, 0, BUS_BYTES);
            *p.rlast = p.r_beat == b.beats - 1;
            *p.rresp = b.resp;
            *p.rid = b.id;
        }
        bool bv = p.b_hold || (!p.bq.empty() && p.bq.front().ready_at <= s->cycle &&
                               !s->hang && !backpressure(s));
        *p.bvalid = bv;
        if (bv) {
            *p.bresp = p.bq.front().resp;
            *p.bid = p.bq.front().id;
        }
    }
}

struct Fired {
    bool ar, aw, w, r, b;
};

// An address offer's rules, checked once, in the cycle it is first offered.
static void check_burst(Sim *s, uint64_t addr, int beats, int size) {
    if ((1 << size) != BUS_BYTES) s->rule_errors[RULE_SIZE]++;
    if (beats > s->max_beats) s->rule_errors[RULE_LENGTH]++;
    if (addr % BUS_BYTES) s->rule_errors[RULE_ALIGN]++;
    if (addr % s->boundary + (uint64_t)beats * BUS_BYTES > s->boundary)
        s->rule_errors[RULE_BOUNDARY]++;
}

// A channel offered `now` this cycle (valid and payload); `o` is what it offered last cycle if
// that was not taken. Counts a dropped valid or a changed payload; returns whether the offer is
// new (its rules are then checked once).
static bool hold_check(Sim *s, Offer *o, bool valid, const Offer &now, bool taken) {
    bool fresh = valid;
    if (o->on) {
        fresh = false;
        if (!valid || o->addr != now.addr || o->len != now.len || o->size != now.size ||
            o->id != now.id || memcmp(o->data, now.data, sizeof now.data))
            s->rule_errors[RULE_HOLD]++;
    }
    *o = now;
    o->on = valid && !taken;
    return fresh;
}

static Offer address_offer(IData *addr, CData *len, CData *size, CData *id) {
    Offer o = {};
    o.addr = *addr;
    o.len = *len;
    o.size = *size;
    o.id = *id;
    return o;
}

// A data beat moved: count it towards a pending ff_hang_after.
static void count_beat(Sim *s) {
    if (s->hang_after > 0 && --s->hang_after == 0) s->hang = true;
}

static void sample_ports(Sim *s, Fired *f) {
    for (int i = 0; i < NPORTS; i++) {
        Port &p = s->ports[i];
        f[i].ar = *p.arvalid && *p.arready;
        f[i].aw = *p.awvalid && *p.awready;
        f[i].w = *p.wvalid && *p.wready;
        f[i].r = *p.rvalid && *p.rready;
        f[i].b = *p.bvalid && *p.bready;
        if (f[i].r && p.rq.front().epoch < s->epoch) s->stale++;
        if (f[i].w && p.wq.front().epoch < s->epoch) s->stale++;
        if (f[i].b && p.bq.front().epoch < s->epoch) s->stale++;
        if (f[i].r) count_beat(s);
        if (f[i].w) count_beat(s);
        // (a channel neither offering nor owing an offer has nothing to check: most cycles)
        if (*p.arvalid || p.ar_offer.on) {
            Offer ar = address_offer(p.araddr, p.arlen, p.arsize, p.arid);
            if (hold_check(s, &p.ar_offer, *p.arvalid, ar, f[i].ar))
                check_burst(s, ar.addr, ar.len + 1, ar.size);
        }
        if (*p.awvalid || p.aw_offer.on) {
            Offer aw = address_offer(p.awaddr, p.awlen, p.awsize, p.awid);
            if (hold_check(s, &p.aw_offer, *p.awvalid, aw, f[i].aw))
                check_burst(s, aw.addr, aw.len + 1, aw.size);
        }
        if (*p.wvalid || p.w_offer.on) {
            Offer w = {};
            memcpy(w.data, p.wdata, BUS_BYTES);
            memcpy(w.data + BUS_BYTES, p.wstrb, BUS_BYTES / 8);
            w.data[BUS_BYTES + BUS_BYTES / 8] = *p.wlast;
            hold_check(s, &p.w_offer, *p.wvalid, w, f[i].w);
        }
        // write data only for a burst whose address was taken (this cycle at the latest)
        if (*p.wvalid && p.wq.empty() && !f[i].aw) s->rule_errors[RULE_W_FIRST]++;
        if (f[i].ar) {
            Burst b;
            b.beats = *p.arlen + 1;
            b.addr = *p.araddr;
            b.id = *p.arid;
            b.resp = burst_resp(s, b.addr, (uint64_t)b.beats * BUS_BYTES);
            b.ready_at = s->cycle + s->read_latency;
            b.epoch = s->epoch;
            p.rq.push_back(b);
        }
        if (f[i].aw) {
            Burst b;
            b.beats = *p.awlen + 1;
            b.addr = *p.awaddr;
            b.id = *p.awid;
            b.resp = burst_resp(s, b.addr, (uint64_t)b.beats * BUS_BYTES);
            b.ready_at = 0;
            b.epoch = s->epoch;
            p.wq.push_back(b);
        }
        if (f[i].w) {
            Burst &b = p.wq.front();
            uint64_t a = b.addr + (uint64_t)p.w_beat * BUS_BYTES;
            uint8_t *dst = b.resp ? nullptr : lookup(s, a, BUS_BYTES);
            if (dst) {
                uint32_t strb = 0;
                memcpy(&strb, p.wstrb, BUS_BYTES / 8);
                const uint8_t *src = (const uint8_t *)p.wdata;
                for (int k = 0; k < BUS_BYTES; k++)
                    if (strb >> k & 1) dst[k] = src[k];
            }
            bool last = p.w_beat == b.beats - 1;
            if ((bool)*p.wlast != last) s->rule_errors[RULE_WLAST]++;
            p.w_credit -= BUS_BYTES;
            s->total_credit -= BUS_BYTES;
            if (last) {
                b.ready_at = s->cycle + s->write_latency;
                p.bq.push_back(b);
                p.wq.pop_front();
                p.w_beat = 0;
            } else {
                p.w_beat++;
            }
        }
        p.r_hold = *p.rvalid && !f[i].r;
        if (f[i].r) {
            p.r_credit -= BUS_BYTES;
            s->total_credit -= BUS_BYTES;
            if (++p.r_beat == p.rq.front().beats) {
                p.rq.pop_front();
                p.r_beat = 0;
            }
        }
        p.b_hold = *p.bvalid && !f[i].b;
        if (f[i].b) p.bq.pop_front();
    }
}

static void credit(Sim *s) {
    double cap = 2.0 * BUS_BYTES;
    s->total_credit += s->total_bpc;
    if (s->total_credit > NPORTS * cap) s->total_credit = NPORTS * cap;
    for (int i = 0; i < NPORTS; i++) {
        Port &p = s->ports[i];
        p.r_credit += s->port_bpc;
        p.w_credit += s->port_bpc;
        if (p.r_credit > cap) p.r_credit = cap;
        if (p.w_credit > cap) p.w_credit = cap;
    }
}

static void drive_lite(Sim *s) {
    TOP *t = s->top;
    t->s_axil_awvalid = s->lw_state & 1;
    t->s_axil_wvalid = (s->lw_state >> 1) & 1;
    t->s_axil_awaddr = s->l_addr;
    t->s_axil_wdata = s->l_data;
    t->s_axil_wstrb = 0xf;
    t->s_axil_bready = !backpressure(s);
    t->s_axil_arvalid = s->lr_state == 1;
    t->s_axil_araddr = s->l_addr;
    t->s_axil_rready = !backpressure(s);
}

static void sample_lite(Sim *s) {
    TOP *t = s->top;
    if (s->lw_state) {
        if ((s->lw_state & 1) && t->s_axil_awready) s->lw_state &= ~1;
        if ((s->lw_state & 2) && t->s_axil_wready) s->lw_state &= ~2;
        if ((s->lw_state & 4) && t->s_axil_bvalid && t->s_axil_bready) {
            s->l_resp = t->s_axil_bresp;
            s->lw_state = 0;
        } else if (!(s->lw_state & 3)) {
            s->lw_state |= 4;  // wait for B from the next cycle on
        }
    }
    if (s->lr_state == 1 && t->s_axil_arready) {
        s->lr_state = 2;
    } else if (s->lr_state == 2 && t->s_axil_rvalid && t->s_axil_rready) {
        s->l_rdata = t->s_axil_rdata;
        s->l_resp = t->s_axil_rresp;
        s->lr_state = 0;
    }
}

// The falling clock edge without an evaluation. Verilator 5 finds a rising edge of sys_clk by
// comparing it, in eval(), with its value at the previous eval(). The falling edge triggers
// nothing (the shell has no negedge logic, and no logic reads the clock as data), so its own
// eval() would only recompute the input logic from unchanged inputs: a tenth of a cycle's
// instructions (callgrind). Lowering the clock and writing 0 into that remembered value gives
// the next eval() with sys_clk = 1 its rising edge, exactly as the evaluated falling edge did.
// The member is the model's own: it is detected at compile time, and a Verilator that names
// it otherwise gets the falling-edge eval() back (tests/test_rtl_shell.py notices the extra
// evaluations). ROOT is the Verilated root class (host/devices/rtl.py).
template <class R, class = void>
struct ClockPrev {
    static bool lower(R *) { return false; }
};
template <class R>
struct ClockPrev<R, std::void_t<decltype(R::__Vtrigprevexpr___TOP__sys_clk__0)>> {
    static bool lower(R *r) {
        r->__Vtrigprevexpr___TOP__sys_clk__0 = 0;
        return true;
    }
};

static void eval(Sim *s) {
    s->top->eval();
    s->evals++;
}

// One clock cycle. The model's inputs for the cycle are set, handshakes are sampled, then the
// rising edge is evaluated and the clock lowered (see ClockPrev).
//
// Sampling needs the shell's outputs as they are before the edge with this cycle's inputs.
// The DMA engines' AXI4 outputs depend only on their state (no combinational path from an AXI
// input to an output), so the values of the last evaluation are right and the model is
// evaluated once per cycle. The AXI4-Lite slave's ready signals do depend on its inputs, so
// while a register access is in flight (and always in exact mode) the model is evaluated
// once more to settle them first. tests/test_rtl_shell.py checks both modes agree.
static void tick(Sim *s) {
    credit(s);
    drive_ports(s);
    drive_lite(s);
    if (s->exact || s->lw_state || s->lr_state) eval(s);
    Fired f[NPORTS];
    sample_ports(s, f);
    sample_lite(s);
    s->top->sys_clk = 1;
    eval(s);
    s->top->sys_clk = 0;
    if (!ClockPrev<ROOT>::lower(s->top->rootp)) eval(s);
    s->cycle++;
}

extern "C" {

void *ff_new(void) {
    Sim *s = new Sim();
    s->ctx = new VerilatedContext;
    s->top = new TOP(s->ctx);
    BIND_PORTS(s)
    s->read_latency = 32;
    s->write_latency = 16;
    s->max_reads = 8;
    s->max_writes = 8;
    s->port_bpc = BUS_BYTES;
    s->total_bpc = 32;
    s->rng = 0x9e3779b97f4a7c15ull;
    s->hang_after = -1;
    s->max_beats = 256;
    s->boundary = 4096;
    return s;
}

void ff_free(void *h) {
    Sim *s = (Sim *)h;
    s->top->final();
    delete s->top;
    delete s->ctx;
    delete s;
}

void ff_config(void *h, int read_latency, int write_latency, int max_reads, int max_writes,
               double port_bpc, double total_bpc, uint32_t bp, uint64_t seed) {
    Sim *s = (Sim *)h;
    s->read_latency = read_latency;
    s->write_latency = write_latency;
    s->max_reads = max_reads;
    s->max_writes = max_writes;
    s->port_bpc = port_bpc;
    s->total_bpc = total_bpc;
    s->bp = bp;
    s->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
}

// Drop every transaction in flight (used with a reset of the shell's DMA engines).
void ff_abort(void *h) {
    Sim *s = (Sim *)h;
    for (int i = 0; i < NPORTS; i++) {
        Port &p = s->ports[i];
        p.rq.clear();
        p.wq.clear();
        p.bq.clear();
        p.r_beat = p.w_beat = 0;
        p.r_hold = p.b_hold = false;
        p.ar_offer.on = p.aw_offer.on = p.w_offer.on = false;  // the reset drops them
    }
    s->lw_state = s->lr_state = 0;
}

void ff_reset(void *h, int cycles) {
    Sim *s = (Sim *)h;
    ff_abort(h);
    s->top->sys_rst = 1;
    for (int i = 0; i < cycles; i++) tick(s);
    s->top->sys_rst = 0;
}

void ff_step(void *h, uint64_t n) {
    Sim *s = (Sim *)h;
    for (uint64_t i = 0; i < n; i++) tick(s);
}

uint64_t ff_cycle(void *h) { return ((Sim *)h)->cycle; }
// The rule check's limits: the longest burst in beats, and the boundary bursts must not cross.
void ff_rules(void *h, int max_beats, uint64_t boundary) {
    Sim *s = (Sim *)h;
    s->max_beats = max_beats;
    s->boundary = boundary;
}

// The breaches of each rule so far (n of them, in the order of enum Rule).
void ff_rule_errors(void *h, uint64_t *out, int n) {
    Sim *s = (Sim *)h;
    for (int i = 0; i < n && i < N_RULES; i++) out[i] = s->rule_errors[i];
}
uint64_t ff_evals(void *h) { return ((Sim *)h)->evals; }

void ff_map(void *h, uint64_t base, uint64_t size, void *ptr) {
    Sim *s = (Sim *)h;
    s->regions.push_back(Region{base, size, (uint8_t *)ptr});
}

void ff_unmap(void *h, uint64_t base) {
    Sim *s = (Sim *)h;
    for (size_t i = 0; i < s->regions.size(); i++)
        if (s->regions[i].base == base) {
            s->regions.erase(s->regions.begin() + i);
            return;
        }
}

void ff_fault_dma(void *h, uint64_t lo, uint64_t hi, int resp) {
    Sim *s = (Sim *)h;
    s->fault_lo = lo;
    s->fault_hi = hi;
    s->fault_resp = (uint8_t)resp;
}

void ff_stall_cpu(void *h, int on) { ((Sim *)h)->top->stall_cpu = on ? 1 : 0; }
void ff_stall_lanes(void *h, int on) { ((Sim *)h)->top->stall_lanes = on ? 1 : 0; }

void ff_hang_ddr(void *h, int on) {
    Sim *s = (Sim *)h;
    s->hang = on != 0;
    s->hang_after = -1;
}

// Hang the DDR (as ff_hang_ddr) once `beats` more data beats have moved on any port, so that a
// test's reset lands in the middle of a burst.
void ff_hang_after(void *h, int64_t beats) {
    Sim *s = (Sim *)h;
    s->hang_after = beats > 0 ? beats : -1;
    if (beats <= 0) s->hang = true;
}

void ff_watch_reset(void *h, uint32_t addr, uint32_t mask) {
    Sim *s = (Sim *)h;
    s->reset_addr = addr;
    s->reset_mask = mask;
}

uint64_t ff_stale(void *h) { return ((Sim *)h)->stale; }

void ff_exact(void *h, int on) { ((Sim *)h)->exact = on != 0; }

// AXI4-Lite write; returns the response (0 OKAY), or -1 after max_cycles.
int ff_write(void *h, uint32_t addr, uint32_t data, uint64_t max_cycles) {
    Sim *s = (Sim *)h;
    s->l_addr = addr;
    s->l_data = data;
    s->lw_state = 3;
    for (uint64_t i = 0; i < max_cycles; i++) {
        tick(s);
        if (!s->lw_state) {
            if (s->reset_mask && addr == s->reset_addr) {
                bool set = (data & s->reset_mask) != 0;
                if (s->held && !set) {
                    s->epoch++;
                    for (int p = 0; p < NPORTS; p++) {
                        Port &q = s->ports[p];
                        if (!q.rq.empty() || !q.wq.empty() || !q.bq.empty()) s->stale++;
                    }
                }
                s->held = set;
            }
            return s->l_resp;
        }
    }
    s->lw_state = 0;
    return -1;
}

// AXI4-Lite read into *out; returns the response, or -1 after max_cycles.
int ff_read(void *h, uint32_t addr, uint32_t *out, uint64_t max_cycles) {
    Sim *s = (Sim *)h;
    s->l_addr = addr;
    s->lr_state = 1;
    for (uint64_t i = 0; i < max_cycles; i++) {
        tick(s);
        if (!s->lr_state) {
            *out = s->l_rdata;
            return s->l_resp;
        }
    }
    s->lr_state = 0;
    return -1;
}

// Write n words starting at addr (a firmware image into the RAM window); returns 0 or -1.
int ff_write_block(void *h, uint32_t addr, const uint32_t *words, uint32_t n,
                   uint64_t max_cycles) {
    for (uint32_t i = 0; i < n; i++)
        if (ff_write(h, addr + 4 * i, words[i], max_cycles) != 0) return -1;
    return 0;
}

// Poll register addr every `every` cycles until (value & mask) == want; the value goes to *out.
// Returns the cycles waited, or -1 if max_cycles passed first.
int64_t ff_wait(void *h, uint32_t addr, uint32_t mask, uint32_t want, uint32_t every,
                uint64_t max_cycles, uint32_t *out) {
    Sim *s = (Sim *)h;
    uint64_t start = s->cycle;
    for (;;) {
        if (ff_read(h, addr, out, 1000) != 0) return -1;
        if ((*out & mask) == want) return (int64_t)(s->cycle - start);
        if (s->cycle - start >= max_cycles) return -1;
        ff_step(h, every);
    }
}
}
