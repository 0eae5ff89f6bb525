"""The pack benchmark's notes: which AVX2 and AVX-512 rows miss a target is stated, not left to
the reader of the table."""

from fiberflow.bench.pack import misses


def row(matrix: str, loops: str, ratio: float, gbs: float, bits: int = 16) -> list[object]:
    # the columns of shape_rows' table rows
    return [matrix, "256 x 256", bits, loops, 1, 1.0, 1.0, gbs, 1.0, ratio, "", 1.0]


def test_rows_below_a_target_are_named():
    rows = [
        row("random", "AVX-512 (best)", 0.35, 3.0),
        row("banded", "AVX2", 0.29, 2.0),
        row("power-law", "AVX2", 0.4, 0.9, bits=32),
        row("banded", "portable", 0.1, 0.5),  # not a target level
    ]
    assert misses(rows) == (
        "banded 256 x 256 AVX2 0.29x, 2.00 GB/s; power-law 256 x 256 (32-bit) AVX2 0.40x, 0.90 GB/s"
    )


def test_no_misses():
    assert misses([row("random", "AVX2", 0.3, 1.0), row("banded", "portable", 0.1, 0.1)]) == "none"
