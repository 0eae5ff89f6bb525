"""Tensor index notation: ``X(i,j) = B(i,k) * C(k,j)`` parsed into a small tree.

Grammar (whitespace anywhere)::

    assignment := access "=" sum
    sum        := product (("+" | "-") product)*
    product    := factor ("*" factor)*
    factor     := access | "(" sum ")"
    access     := NAME [ "(" [NAME ("," NAME)*] ")" ]      a tensor, or a scalar: "a" or "a()"

An index on the right that is not on the left is summed (with the semiring's addition) over the
smallest sub-expression that holds every use of it: in ``x(i) = b(i) - C(i,j) * d(j)`` the sum
over ``j`` is of ``C(i,j) * d(j)`` alone. Every error marks the place in the text with a caret,
as Python marks a syntax error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fiberflow.errors import FormatError

_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(\S))")


def caret(text: str, start: int, end: int | None = None) -> str:
    """``text`` with a line of carets under ``text[start:end]``."""
    end = start + 1 if end is None or end <= start else end
    return f"    {text}\n    {' ' * start}{'^' * (end - start)}"


def error(text: str, start: int, end: int | None, what: str, cls: type = FormatError) -> Exception:
    return cls(f"{what}\n{caret(text, start, end)}")


@dataclass(frozen=True)
class Access:
    """``name(indices)``; ``spans[k]`` is where index ``k`` is written, ``span`` the name."""

    name: str
    indices: tuple[str, ...]
    span: tuple[int, int]
    spans: tuple[tuple[int, int], ...]

    def index_set(self) -> frozenset[str]:
        return frozenset(self.indices)


@dataclass(frozen=True)
class Product:
    factors: tuple[Node, ...]


@dataclass(frozen=True)
class Sum:
    """``terms[0] (signs[1]) terms[1] ...``: ``signs[k]`` is ``+1`` or ``-1`` (``signs[0]`` is
    always ``+1``)."""

    terms: tuple[Node, ...]
    signs: tuple[int, ...]


Node = Access | Product | Sum


@dataclass(frozen=True)
class Assignment:
    text: str
    lhs: Access
    rhs: Node


def accesses(node: Node) -> list[Access]:
    """Every access under ``node``, left to right."""
    if isinstance(node, Access):
        return [node]
    kids = node.factors if isinstance(node, Product) else node.terms
    return [a for kid in kids for a in accesses(kid)]


def indices(node: Node) -> frozenset[str]:
    return frozenset(i for a in accesses(node) for i in a.indices)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks: list[tuple[str, str, int, int]] = []  # (kind, text, start, end)
        for m in _TOKEN.finditer(text):
            if m.group(1):
                self.toks.append(("name", m.group(1), m.start(1), m.end(1)))
            elif m.group(2):
                self.toks.append(("sym", m.group(2), m.start(2), m.end(2)))
        self.toks.append(("end", "", len(text), len(text)))
        self.k = 0

    def peek(self) -> tuple[str, str, int, int]:
        return self.toks[self.k]

    def take(self, sym: str | None = None, what: str = "") -> tuple[str, str, int, int]:
        tok = self.peek()
        if sym is not None and tok[1] != sym:
            found = "the end" if tok[0] == "end" else repr(tok[1])
            raise error(self.text, tok[2], tok[3], f"expected {what or repr(sym)}, found {found}")
        self.k += 1
        return tok

    def assignment(self) -> Assignment:
        lhs = self.access()
        self.take("=", "'=' after the result")
        rhs = self.sum()
        tok = self.peek()
        if tok[0] != "end":
            raise error(
                self.text, tok[2], tok[3], f"unexpected {tok[1]!r}: expected + - * or the end"
            )
        return Assignment(self.text, lhs, rhs)

    def sum(self) -> Node:
        terms, signs = [self.product()], [1]
        while self.peek()[1] in ("+", "-"):
            signs.append(1 if self.take()[1] == "+" else -1)
            terms.append(self.product())
        return terms[0] if len(terms) == 1 else Sum(tuple(terms), tuple(signs))

    def product(self) -> Node:
        factors = [self.factor()]
        while self.peek()[1] == "*":
            self.take()
            factors.append(self.factor())
        return factors[0] if len(factors) == 1 else Product(tuple(factors))

    def factor(self) -> Node:
        tok = self.peek()
        if tok[1] == "(":
            self.take()
            inner = self.sum()
            self.take(")", "')'")
            return inner
        if tok[0] != "name":
            found = "the end" if tok[0] == "end" else repr(tok[1])
            raise error(
                self.text, tok[2], tok[3], f"expected a tensor such as B(i,j), found {found}"
            )
        return self.access()

    def access(self) -> Access:
        kind, name, start, end = self.peek()
        if kind != "name":
            found = "the end" if kind == "end" else repr(name)
            raise error(self.text, start, end, f"expected a tensor name, found {found}")
        self.take()
        idx: list[str] = []
        spans: list[tuple[int, int]] = []
        if self.peek()[1] == "(":
            self.take()
            if self.peek()[1] != ")":
                while True:
                    kind_i, name_i, s, e = self.take()
                    if kind_i != "name":
                        raise error(self.text, s, e, f"expected an index name in {name}(...)")
                    if name_i in idx:
                        raise error(
                            self.text, s, e,
                            f"index {name_i} appears twice in {name}: a diagonal is not "
                            "supported; copy the operand's diagonal out first",
                        )  # fmt: skip
                    idx.append(name_i)
                    spans.append((s, e))
                    if self.peek()[1] != ",":
                        break
                    self.take()
            self.take(")", f"')' to close {name}(")
        return Access(name, tuple(idx), (start, end), tuple(spans))


def parse(text: str) -> Assignment:
    """Parse ``text``; raises :class:`FormatError` with a caret on bad syntax."""
    if not isinstance(text, str):
        raise FormatError(
            f"an expression must be a string such as 'y(i) = A(i,j) * x(j)', not {text!r}"
        )
    return _Parser(text).assignment()
