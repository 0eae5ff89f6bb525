"""``fiberflow run`` on Matrix Market files: every conversion of the file's values is said,
and the check is against the file's own precision."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from fiberflow import cli, datasets, verify


def write(tmp_path, name: str, A, field: str | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / name
    scipy.io.mmwrite(path, A, field=field)
    return path


def pattern(seed: int = 0) -> sp.coo_array:
    return sp.random_array((120, 90), density=0.05, rng=np.random.default_rng(seed), format="coo")


def test_float64_near_1e12_is_converted_and_checked_relative_to_the_row(tmp_path, capsys):
    A = pattern()
    A = sp.coo_array((A.data * 1e12 + 1 / 3, (A.row, A.col)), shape=A.shape)
    path = write(tmp_path, "big.mtx", A)
    assert cli.main(["run", "spmv", "--matrix", str(path)]) == 0
    out = capsys.readouterr().out
    assert "converted float64 values to float32 (max relative rounding" in out
    assert "within float32 tolerance of scipy: True" in out
    assert "input rounding: max relative rounding of a value" in out
    f = datasets.read_matrix_market(path)
    change = np.abs(f.matrix.data.astype(np.float64) - f.exact.data) / np.abs(f.exact.data)
    assert 0 < change.max() <= np.finfo(np.float32).eps / 2


def test_tolerance_rejects_an_error_above_the_bound():
    A = sp.csr_array(pattern(1)).astype(np.float32)
    A.data *= np.float32(1e12)
    x = np.random.default_rng(2).standard_normal(A.shape[1]).astype(np.float32)
    exact = (A.astype(np.float64) @ x.astype(np.float64)).astype(np.float32)
    assert verify.against_scipy(exact, A, x)[0]
    tol, _ = verify.tolerance(A, x)
    row = int(np.argmax(tol))
    wrong = exact.copy()
    wrong[row] += np.float32(3 * tol[row])
    ok, verdict = verify.against_scipy(wrong, A, x)
    assert not ok and "True" not in verdict


def test_integer_file_runs_as_int32(tmp_path, capsys):
    A = pattern()
    A = sp.coo_array((np.round(A.data * 1000).astype(np.int64) - 500, (A.row, A.col)), A.shape)
    path = write(tmp_path, "int.mtx", A, field="integer")
    assert cli.main(["run", "spmm", "--matrix", str(path)]) == 0
    out = capsys.readouterr().out
    assert "integer values, run as int32" in out
    assert "converted the integer values to int32 (all fit: exact)" in out
    assert "equal to scipy (int64 wrapped to 32 bits): True" in out


def test_integer_file_beyond_int32_is_refused_with_the_way_out(tmp_path, capsys):
    A = pattern()
    A = sp.coo_array((np.full(A.nnz, 3_000_000_000, np.int64), (A.row, A.col)), A.shape)
    path = write(tmp_path, "huge.mtx", A, field="integer")
    assert cli.main(["run", "spmv", "--matrix", str(path)]) == 1
    err = capsys.readouterr().err
    assert "beyond int32" in err and "--dtype float32" in err
    assert cli.main(["run", "spmv", "--matrix", str(path), "--dtype", "float32"]) == 0
    assert "converted integer values to float32" in capsys.readouterr().out


def test_pattern_file_values_are_one(tmp_path, capsys):
    path = write(tmp_path, "pattern.mtx", pattern(), field="pattern")
    assert cli.main(["run", "spmv", "--matrix", str(path)]) == 0
    out = capsys.readouterr().out
    assert "pattern file (no values): every stored entry is 1" in out
    assert "within float32 tolerance of scipy: True" in out
    assert set(datasets.read_matrix_market(path).matrix.data) == {1.0}


def test_complex_file_is_refused(tmp_path, capsys):
    A = pattern()
    A = sp.coo_array((A.data + 1j, (A.row, A.col)), shape=A.shape)
    path = write(tmp_path, "complex.mtx", A)
    assert cli.main(["run", "spmv", "--matrix", str(path)]) == 1
    assert "complex values" in capsys.readouterr().err


def test_values_beyond_float32_range_are_refused(tmp_path, capsys):
    A = pattern()
    A = sp.coo_array((A.data * 1e300, (A.row, A.col)), shape=A.shape)
    path = write(tmp_path, "overflow.mtx", A)
    assert cli.main(["run", "spmv", "--matrix", str(path)]) == 1
    assert "beyond float32's range" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", ["float32", "int32"])
def test_exact_conversions_say_so(tmp_path, dtype: str):
    A = pattern()
    A = sp.coo_array((np.round(A.data * 8) / 2 + 1, (A.row, A.col)), shape=A.shape)
    path = write(tmp_path, "halves.mtx", A)
    if dtype == "int32":
        A = sp.coo_array((np.round(A.data), (A.row, A.col)), shape=A.shape)
        path = write(tmp_path, "whole.mtx", A)
    f = datasets.read_matrix_market(path, dtype)
    assert f.conversions == [f"converted float64 values to {dtype} " + (
        "(all exact)" if dtype == "float32" else "(all are integers: exact)")]  # fmt: skip
