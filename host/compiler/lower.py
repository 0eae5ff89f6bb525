"""From an expression, a format per operand and a loop order to a SAM graph.

The construction follows the Sparse Abstract Machine: the loop indices are visited in order;
at each index, every operand that has it scans its next level, the coordinate streams of a
product are intersected and those of a sum are united, and the operands without the index
have their references repeated over it. Values are read at the end of each operand's
references and combined with the semiring's ALU operations in the expression's tree; an index
that is summed is reduced, where its sum is, by a reducer (when it is the innermost index
left) or a sparse accumulator (Gustavson's order: one result index after it). The graph ends
at the result's writers; the host builds the result from what reached them
(:func:`.execute.levels`, :func:`.execute.align`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from fiberflow.errors import FormatError, ShapeError
from fiberflow.host.compiler import expr as ex
from fiberflow.host.compiler.graph import Graph, Stream
from fiberflow.host.formats.formats import COMPRESSED, Format

MAX_SEARCH = 6  # indices up to which every loop order is tried when none is given


@dataclass
class _Tree:
    """A node of the expression with the accesses under it (by position, left to right)."""

    node: ex.Node
    kids: list[_Tree]
    accs: frozenset[int]
    access: int | None = None  # for a leaf, its position
    reductions: list[str] = field(default_factory=list)  # indices summed here


@dataclass(frozen=True)
class Program:
    """A compiled expression: its graph and what running it needs."""

    assignment: ex.Assignment
    formats: dict[str, Format]  # every operand's and the result's
    order: tuple[str, ...]
    graph: Graph
    accesses: tuple[ex.Access, ...]  # the right side's, by position
    out_levels: tuple[int, ...]  # write_compressed node per result level, in storage order
    out_values: int  # the array_write node
    # the coordinates of the indices reducers sum last (outermost first): which of the
    # result's last-level coordinates had anything to sum
    summed: tuple[Stream, ...] = ()


def _tree(node: ex.Node, counter: list[int]) -> _Tree:
    if isinstance(node, ex.Access):
        k = counter[0]
        counter[0] += 1
        return _Tree(node, [], frozenset([k]), access=k)
    kids = [
        _tree(c, counter) for c in (node.factors if isinstance(node, ex.Product) else node.terms)
    ]
    return _Tree(node, kids, frozenset().union(*(k.accs for k in kids)))


def _walk(t: _Tree) -> list[_Tree]:
    return [t, *(n for k in t.kids for n in _walk(k))]


class _Lowering:
    def __init__(self, a: ex.Assignment, formats: dict[str, Format]) -> None:
        self.a = a
        self.text = a.text
        self.accs = tuple(ex.accesses(a.rhs))
        self.root = _tree(a.rhs, [0])
        self.formats = formats
        self.free = a.lhs.indices
        self._check_names()
        self.scope: dict[str, _Tree] = {}
        for v in sorted(ex.indices(a.rhs)):
            users = frozenset(k for k, acc in enumerate(self.accs) if v in acc.indices)
            self.scope[v] = self.root if v in self.free else self._smallest(self.root, users)
            if v not in self.free:
                self.scope[v].reductions.append(v)
        self._check_sums()

    # -- checks that do not depend on the order -------------------------------------------

    def _err(self, span: tuple[int, int], what: str, cls: type = FormatError) -> Exception:
        return ex.error(self.text, span[0], span[1], what, cls)

    def _check_names(self) -> None:
        lhs = self.a.lhs
        rank: dict[str, ex.Access] = {}
        for acc in self.accs:
            if acc.name == lhs.name:
                raise self._err(acc.span, f"{lhs.name} is the result and cannot be an operand too")
            first = rank.setdefault(acc.name, acc)
            if len(first.indices) != len(acc.indices):
                raise self._err(
                    acc.span,
                    f"{acc.name} has {len(first.indices)} indices in one place and "
                    f"{len(acc.indices)} here",
                    ShapeError,
                )
        used = ex.indices(self.a.rhs)
        for v, span in zip(lhs.indices, lhs.spans, strict=True):
            if v not in used:
                raise self._err(
                    span, f"index {v} of the result appears nowhere on the right: "
                    "broadcasting is not supported", ShapeError,
                )  # fmt: skip

    def _smallest(self, t: _Tree, users: frozenset[int]) -> _Tree:
        for k in t.kids:
            if users <= k.accs:
                return self._smallest(k, users)
        return t

    def free_of(self, t: _Tree) -> frozenset[str]:
        """The indices of ``t``'s value: its indices less those summed inside it."""
        inside = {n.node for n in _walk(t)}
        return frozenset(
            v for v in ex.indices(t.node) if v in self.free or self.scope[v].node not in inside
        )

    def _check_sums(self) -> None:
        for t in _walk(self.root):
            if isinstance(t.node, ex.Sum):
                want = self.free_of(t.kids[0])
                for k in t.kids[1:]:
                    got = self.free_of(k)
                    if got != want:
                        first = self.accs[min(k.accs)]
                        raise self._err(
                            first.span,
                            f"the terms of a sum must have the same indices: this term has "
                            f"({','.join(sorted(got))}), the first ({','.join(sorted(want))})",
                            ShapeError,
                        )

    # -- order ----------------------------------------------------------------------------

    def levels_of(self, acc: ex.Access) -> list[str]:
        fmt = self.formats[acc.name]
        return [acc.indices[m] for m in fmt.order]

    def check_order(self, order: tuple[str, ...]) -> None:
        where = {v: p for p, v in enumerate(order)}
        for acc in (*self.accs, self.a.lhs):
            seq = [where[v] for v in self.levels_of(acc)]
            if seq != sorted(seq):
                fmt = self.formats[acc.name]
                raise self._err(
                    acc.span,
                    f"{acc.name} is stored as {str(fmt)!r} (levels "
                    f"{','.join(self.levels_of(acc))}) but the loop order {''.join(order)} "
                    "visits them in another order: change its format's mode order (e.g. "
                    "'ds:1,0') or the loop order",
                )
        # an index's sum must close before an index whose scope is wider is visited
        for p, v in enumerate(order):
            sv = {n.node for n in _walk(self.scope[v])}
            for u in order[:p]:
                su = {n.node for n in _walk(self.scope[u])}
                if not (sv <= su or not (sv & su)):
                    raise self._err(
                        self.a.lhs.span if v in self.free else self._span_of(v),
                        f"the loop order {''.join(order)} visits {v} after {u}, whose sum "
                        f"is inside {v}'s reach: visit {v} first",
                    )

    def _span_of(self, v: str) -> tuple[int, int]:
        for acc in self.accs:
            if v in acc.indices:
                return acc.spans[acc.indices.index(v)]
        return self.a.lhs.span

    # -- the graph ------------------------------------------------------------------------

    def build(self, order: tuple[str, ...]) -> Program:
        self.check_order(order)
        g = Graph()
        self.g = g
        ref: dict[int, Stream] = {}
        seen: dict[int, list[str]] = {}
        for k, acc in enumerate(self.accs):
            ref[k] = Stream(g.add("root", label=acc.name, tensor=acc.name).id, "ref")
            seen[k] = []
        crd_of: dict[str, Stream] = {}
        for v in order:
            members = sorted(self.scope[v].accs)
            crd, refs = self._merge(self.scope[v], v, ref, seen)
            crd_of[v] = crd
            sig = None
            for k in members:
                if k in refs:
                    ref[k] = refs[k]
                else:
                    if sig is None:
                        sig = Stream(g.add("repeat_sig", {"crd": crd}, label=v).id, "sig")
                    n = g.add("repeater", {"ref": ref[k], "sig": sig},
                              label=f"{self.accs[k].name} over {v}")  # fmt: skip
                    ref[k] = Stream(n.id, "ref")
                seen[k].append(v)
        self.ref, self.seen, self.crd_of = ref, seen, crd_of
        self.out_crd: dict[str, Stream] = dict(crd_of)
        self.reduced_last: list[str] = []  # reducer-summed indices of the result's last level
        val, hist = self._value(self.root, order)
        lhs = self.a.lhs
        want = [v for v in order if v in self.free]
        if hist != want:  # pragma: no cover - the checks above make this unreachable
            raise self._err(lhs.span, f"internal: result at {hist}, not {want}")
        return self._write(order, val)

    def _merge(
        self, t: _Tree, v: str, ref: dict[int, Stream], seen: dict[int, list[str]]
    ) -> tuple[Stream, dict[int, Stream]]:
        g = self.g
        if t.access is not None:
            acc = self.accs[t.access]
            level = sum(1 for u in seen[t.access] if u in acc.indices)
            kind = self.formats[acc.name].levels[level]
            n = g.add(
                "scan_compressed" if kind == COMPRESSED else "scan_dense",
                {"ref": ref[t.access]}, label=f"{acc.name} level {level} ({v})",
                tensor=acc.name, level=level, index=v,
            )  # fmt: skip
            return Stream(n.id, "crd"), {t.access: Stream(n.id, "ref")}
        parts = [self._merge(k, v, ref, seen) for k in t.kids if v in ex.indices(k.node)]
        kind = "intersect" if isinstance(t.node, ex.Product) else "union"
        crd, refs = parts[0]
        for crd2, refs2 in parts[1:]:
            a0, b0 = next(iter(refs)), next(iter(refs2))
            j = g.add(kind, {"crd0": crd, "ref0": refs[a0], "crd1": crd2, "ref1": refs2[b0]},
                      label=v)  # fmt: skip
            new = {a0: Stream(j.id, "ref0"), b0: Stream(j.id, "ref1")}
            # the primitive carries one reference a side: the others go through a copy
            for other in list(refs)[1:]:
                c = g.add(kind, {"crd0": crd, "ref0": refs[other], "crd1": crd2,
                                 "ref1": refs2[b0]}, label=f"{v} (copy)")  # fmt: skip
                new[other] = Stream(c.id, "ref0")
            for other in list(refs2)[1:]:
                c = g.add(kind, {"crd0": crd, "ref0": refs[a0], "crd1": crd2,
                                 "ref1": refs2[other]}, label=f"{v} (copy)")  # fmt: skip
                new[other] = Stream(c.id, "ref1")
            crd, refs = Stream(j.id, "crd"), new
        return crd, refs

    def _value(self, t: _Tree, order: tuple[str, ...]) -> tuple[Stream, list[str]]:
        g = self.g
        if t.access is not None:
            acc = self.accs[t.access]
            n = g.add("array_read", {"ref": self.ref[t.access]}, label=f"{acc.name} values",
                      tensor=acc.name)  # fmt: skip
            val, hist = Stream(n.id, "val"), list(self.seen[t.access])
        else:
            parts = [self._value(k, order) for k in t.kids]
            val, hist = parts[0]
            for k, (val2, hist2) in enumerate(parts[1:], 1):
                if hist2 != hist:  # pragma: no cover - check_order makes this unreachable
                    raise self._err(self.a.lhs.span, "internal: operands at different depths")
                if isinstance(t.node, ex.Product):
                    op = "mul"
                else:
                    op = "add" if t.node.signs[k] > 0 else "sub"
                n = g.add("alu", {"a": val, "b": val2}, label=op, op=op)
                val = Stream(n.id, "val")
        for v in sorted(t.reductions, key=hist.index, reverse=True):
            tail = hist[hist.index(v) + 1 :]
            if not tail:
                ins = {"val": val}
                if len(hist) > 1:  # the coordinates its sums belong to (execute.closing)
                    ins["crd"] = self.out_crd[hist[-2]]
                n = g.add("reduce", ins, label=f"sum over {v}", op="add", index=v)
                val = Stream(n.id, "val")
                if t is self.root:
                    self.reduced_last.append(v)
            elif t is self.root and len(tail) == 1 and tail[0] in self.free:
                f = tail[0]
                n = g.add("spacc", {"crd": self.out_crd[f], "val": val},
                          label=f"sum over {v} into {f}", op="add", index=f)  # fmt: skip
                val, self.out_crd[f] = Stream(n.id, "val"), Stream(n.id, "crd")
                self.reduced_last.clear()  # it keeps only coordinates that had something
            else:
                raise self._err(
                    self._span_of(v),
                    f"the sum over {v} needs {v} innermost in the loop order, or followed by "
                    f"only the result's last index (Gustavson's order); {', '.join(tail)} "
                    "come after it",
                )
            hist.remove(v)
        return val, hist

    def _write(self, order: tuple[str, ...], val: Stream) -> Program:
        g = self.g
        lhs = self.a.lhs
        fmt = self.formats[lhs.name]
        levels = [lhs.indices[m] for m in fmt.order]
        crd = {v: self.out_crd[v] for v in levels}
        outs = tuple(
            g.add(
                "write_compressed", {"crd": crd[v]}, label=f"{lhs.name} level {k} ({v})", level=k
            ).id
            for k, v in enumerate(levels)
        )
        w = g.add("array_write", {"val": val}, label=f"{lhs.name} values")
        summed = tuple(self.crd_of[v] for v in reversed(self.reduced_last))
        return Program(self.a, self.formats, order, g, self.accs, outs, w.id, summed)


def default_format(ndim: int) -> str:
    """Vectors dense, matrices CSR, higher ranks CSF."""
    return {0: "", 1: "d", 2: "ds"}.get(ndim, "s" * ndim)


def lower(
    text: str, formats: dict[str, str | Format] | None = None, order: str | None = None
) -> Program:
    """Compile ``text`` (see :mod:`.expr`) to a :class:`Program`."""
    a = ex.parse(text)
    formats = dict(formats or {})
    ranks = {acc.name: len(acc.indices) for acc in (*ex.accesses(a.rhs), a.lhs)}
    for name in formats:
        if name not in ranks:
            raise FormatError(f"formats names {name!r}, which is not in {text!r}")
    parsed: dict[str, Format] = {}
    for name, n in ranks.items():
        spec = formats.get(name, default_format(n))
        parsed[name] = Format((), ()) if n == 0 and spec == "" else Format.parse(spec, n)
    low = _Lowering(a, parsed)
    everything = [*a.lhs.indices, *sorted(ex.indices(a.rhs) - set(a.lhs.indices))]
    if order is not None:
        seq = (
            tuple(order.replace(",", "").replace(" ", ""))
            if "," not in order
            else tuple(p.strip() for p in order.split(","))
        )
        if sorted(seq) != sorted(everything):
            raise FormatError(
                f"order {order!r} must list each index once: {', '.join(sorted(everything))}"
            )
        return low.build(seq)
    free, reds = list(a.lhs.indices), [v for v in everything if v not in a.lhs.indices]
    candidates = [tuple(free + reds)]
    if free and reds:
        candidates.append(tuple(free[:-1] + reds + free[-1:]))  # Gustavson
    if len(everything) <= MAX_SEARCH:
        candidates += itertools.permutations(everything)
    first: Exception | None = None
    for seq in dict.fromkeys(candidates):  # (a build starts afresh: one lowering serves all)
        try:
            return low.build(seq)
        except FormatError as e:
            first = first or e
    assert first is not None
    raise first
