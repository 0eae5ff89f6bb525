import pytest

import fiberflow as ff
from fiberflow.host.formats.formats import Format


@pytest.mark.parametrize(
    ("spec", "levels", "order"),
    [
        ("ds", ("d", "s"), (0, 1)),
        ("ss", ("s", "s"), (0, 1)),
        ("ds:1,0", ("d", "s"), (1, 0)),
        ("d", ("d",), (0,)),
        ("sss", ("s", "s", "s"), (0, 1, 2)),
        ("sds:2,0,1", ("s", "d", "s"), (2, 0, 1)),
    ],
)
def test_parse(spec, levels, order):
    fmt = Format.parse(spec)
    assert fmt.levels == levels
    assert fmt.order == order
    assert Format.parse(str(fmt)) == fmt


def test_identity_ordering_is_not_printed():
    assert str(Format.parse("ds:0,1")) == "ds"


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("", "one letter per mode"),
        ("dx", "one letter per mode"),
        ("ds:1", "permutation"),
        ("ds:0,0", "permutation"),
        ("ds:a,b", "comma-separated integers"),
        ("s" * 9, "at most 8"),
        (3, "must be a string"),
    ],
)
def test_bad_formats(spec, match):
    with pytest.raises(ff.FormatError, match=match):
        Format.parse(spec)


def test_rank_mismatch_names_both():
    with pytest.raises(ff.FormatError, match=r"describes 1 mode.*has 2"):
        Format.parse("d", ndim=2)
