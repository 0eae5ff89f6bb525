"""Level scanners, compressed and dense: references in, the fibers they point to out.

Ports: sink ``i`` (references); sources ``crd`` and ``ref`` (same shape). The compressed scanner
has read ports ``seg0`` and ``seg1`` (two ports on the segment array) and ``crd`` (block-RAM
timing); the dense scanner has config ``dim`` (the level's size).

Tokens (``docs/streams.md``): each reference ``r`` emits its fiber (compressed: coordinates
``crd[seg[r]:seg[r+1]]`` with references ``seg[r]..seg[r+1]-1``; dense: coordinates
``0..dim-1`` with references ``r*dim + c``), then a stop. An ``EMPTY`` reference scans as an empty
fiber. An input stop ``Sn`` becomes ``S(n+1)``, merged with the stop of the fiber just before it;
otherwise a fiber ends with ``S0``. ``D`` passes on.

Timing: one token per cycle, with no bubble between fibers: both scanners start the next fiber
in the cycle they emit the previous fiber's stop. The compressed scanner reads ``seg[r]`` and
``seg[r+1]`` of the reference waiting at its input while the current fiber streams out, so it
only waits (one cycle) for a reference that arrives just as it is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from migen import FSM, If, NextState, NextValue, Signal

from fiberflow.overlay.primitives.primitive import Primitive, ReadPort, eager_fork
from fiberflow.overlay.primitives.stream import DONE, Done, Empty, Kind, Stop, Token, Val


class _Scanner(Primitive):
    def __init__(self, compressed: bool) -> None:
        super().__init__()
        i = self.sink("i")
        crd = self.source("crd")
        ref = self.source("ref")
        if compressed:
            # Two ports on the segment array (a block RAM has two) read seg[r] and seg[r+1]
            # for the reference waiting at the input while the current fiber streams out.
            seg0, seg1, crd_p = ReadPort("seg0"), ReadPort("seg1"), ReadPort("crd")
            self.rd_ports += [seg0, seg1, crd_p]
        else:
            dim = self.config("dim", 32)
        # # #
        ov, ofire = Signal(), Signal()
        okind, ocrd, oref = Signal(2), Signal(32), Signal(32)
        eager_fork(self, ov, ofire, [crd, ref])
        self.comb += [
            crd.kind.eq(okind),
            ref.kind.eq(okind),
            crd.data.eq(ocrd),
            ref.data.eq(oref),
        ]
        pos, end, base = Signal(32), Signal(32), Signal(32)
        pending = Signal()  # a fiber was started and its stop is not yet out
        streaming = Signal()
        self.comb += streaming.eq(pos < end)
        ready_to_start = Signal()  # the head reference's fiber bounds are known this cycle
        if compressed:
            seg_ok = Signal()  # seg0/seg1 hold the bounds of the current head reference
            self.comb += [
                seg0.adr.eq(i.data),
                seg1.adr.eq(i.data + 1),
                ready_to_start.eq(seg_ok),
                crd_p.adr.eq(pos + (streaming & ofire)),
            ]
            self.sync += seg_ok.eq(i.valid & ~i.ready)
        else:
            self.comb += ready_to_start.eq(1)

        def stop(level: object) -> list:
            return [ov.eq(1), okind.eq(Kind.STOP), ocrd.eq(level), oref.eq(level)]

        def start_fiber() -> list:
            """Take the reference at the head of ``i`` and begin its fiber next cycle."""
            if compressed:
                return [
                    i.ready.eq(1),
                    crd_p.adr.eq(seg0.dat),
                    NextValue(pos, seg0.dat),
                    NextValue(end, seg1.dat),
                    NextValue(pending, 1),
                ]
            return [
                i.ready.eq(1),
                NextValue(base, i.data * dim),
                NextValue(pos, 0),
                NextValue(end, dim),
                NextValue(pending, 1),
            ]

        # START gives the FSM a second state (Migen needs two); it lasts one cycle after reset.
        self.submodules.fsm = fsm = FSM(reset_state="START")
        fsm.act("START", NextState("RUN"))
        head_val = i.kind == Kind.VAL
        head_empty = i.kind == Kind.EMPTY
        fsm.act(
            "RUN",
            If(
                streaming,
                ov.eq(1),
                okind.eq(Kind.VAL),
                ocrd.eq(crd_p.dat if compressed else pos),
                oref.eq(pos if compressed else base + pos),
                If(ofire, NextValue(pos, pos + 1)),
            ).Elif(
                i.valid,
                If(
                    i.kind == Kind.STOP,
                    *stop(i.data + 1),
                    i.ready.eq(ofire),
                    If(ofire, NextValue(pending, 0)),
                )
                .Elif(
                    pending,
                    # End the previous fiber with S0; if a reference follows, start it now.
                    *stop(0),
                    If(
                        ofire,
                        NextValue(pending, 0),
                        If(head_val & ready_to_start, *start_fiber()),
                        If(head_empty, i.ready.eq(1), NextValue(pending, 1)),
                    ),
                )
                .Elif(
                    head_val,
                    If(ready_to_start, *start_fiber()),
                )
                .Elif(
                    head_empty,
                    i.ready.eq(1),
                    NextValue(pending, 1),
                )
                .Else(  # done
                    ov.eq(1),
                    okind.eq(Kind.DONE),
                    i.ready.eq(ofire),
                ),
            ),
        )


class CompressedScanner(_Scanner):
    def __init__(self) -> None:
        super().__init__(compressed=True)


class DenseScanner(_Scanner):
    def __init__(self) -> None:
        super().__init__(compressed=False)


# ---- reference model -----------------------------------------------------------------------


def scan_model(
    refs: list[Token], fiber: Callable[[int], tuple[list[Token], list[Token]]]
) -> tuple[list[Token], list[Token]]:
    """Shared by both scanners: ``fiber(r)`` gives the coordinates and references of fiber
    ``r``. A reference (or empty) opens a fiber, ended by ``S0`` when another follows or by
    the next stop raised by one; a stop with no fiber open is raised by one alone."""
    crd: list[Token] = []
    ref: list[Token] = []
    pending = False
    for tok in refs:
        if isinstance(tok, (Val, Empty)):
            if pending:
                crd.append(Stop(0))
                ref.append(Stop(0))
            if isinstance(tok, Val):
                cs, ps = fiber(tok.value)
                crd += cs
                ref += ps
            pending = True
        elif isinstance(tok, Stop):
            crd.append(Stop(tok.level + 1))
            ref.append(Stop(tok.level + 1))
            pending = False
        elif isinstance(tok, Done):
            if pending:
                crd.append(Stop(0))
                ref.append(Stop(0))
            crd.append(DONE)
            ref.append(DONE)
            pending = False
    return crd, ref


def model_compressed(
    refs: list[Token], seg: Sequence[int], crd: Sequence[int]
) -> tuple[list[Token], list[Token]]:
    words: dict[int, Val] = {}  # one token per coordinate value (tokens are immutable)

    def fiber(r: int) -> tuple[list[Token], list[Token]]:
        lo, hi = int(seg[r]), int(seg[r + 1])
        cs = [words.get(c) or words.setdefault(c, Val(c)) for c in map(int, crd[lo:hi])]
        return cs, [Val(p) for p in range(lo, hi)]  # type: ignore[misc]

    return scan_model(refs, fiber)


def model_dense(refs: list[Token], dim: int) -> tuple[list[Token], list[Token]]:
    coords: list[Token] = [Val(c) for c in range(dim)]
    return scan_model(
        refs, lambda r: (coords, [Val((r * dim + c) & 0xFFFFFFFF) for c in range(dim)])
    )
