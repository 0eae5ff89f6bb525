import argparse

import pytest

from fiberflow.bench import primitives

pytestmark = pytest.mark.rtl


def test_bench_primitives_counts_cells():
    args = argparse.Namespace(family="xc7", only=["fork2", "fp32_mul core"])
    report = primitives.run(args)
    rows = {r[0]: r for r in report.rows}
    assert set(rows) == {"fork2", "fp32_mul core"}
    _, lut, ff, _, bram, dsp = rows["fp32_mul core"]
    assert 2 <= dsp <= 3 and 0 < lut < 500 and ff >= 96 and bram == 0
    assert rows["fork2"][5] == 0 and rows["fork2"][2] == 2  # two "taken" flags, no DSP
    assert any("rule of thumb" in n for n in report.notes)


def test_unknown_name_is_a_clear_error():
    from fiberflow.errors import BuildError

    with pytest.raises(BuildError, match="choose from"):
        primitives.run(argparse.Namespace(family="xc7", only=["nope"]))
