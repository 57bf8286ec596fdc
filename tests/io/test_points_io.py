"""read_points: .npy arrays checked from their header, CSV errors that name the line; and the CLI's messages."""

from __future__ import annotations

import re

import numpy as np
import pytest
from numpy.lib import format as npy
from typer.testing import CliRunner

import gpuseg._core.memory
from gpuseg.cli.app import app
from gpuseg.errors import GpusegError, MemoryLimitError
from gpuseg.io.points import read_points

runner = CliRunner()


def npy_with_header(path, shape, dtype=np.float64, payload=b""):
    """A .npy file whose header claims ``shape``, followed by ``payload`` (not necessarily that many bytes)."""
    with open(path, "wb") as f:
        npy.write_array_header_1_0(f, {"descr": npy.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                                       "shape": shape})  # fmt: skip
        f.write(payload)
    return path


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32, np.uint8, np.bool_])
def test_npy_round_trip(tmp_path, rng, dtype):
    X = (rng.random((50, 3)) * 100).astype(dtype)
    np.save(tmp_path / "x.npy", X)
    got = read_points(tmp_path / "x.npy")
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, X)


def test_npy_fortran_order(tmp_path, rng):
    X = np.asfortranarray(rng.random((20, 4)))
    np.save(tmp_path / "x.npy", X)
    np.testing.assert_array_equal(read_points(tmp_path / "x.npy"), X)


def test_npy_header_claiming_a_huge_shape_is_refused_before_allocating(tmp_path):
    path = npy_with_header(tmp_path / "lying.npy", (10**12, 3), payload=bytes(240))
    with pytest.raises(GpusegError) as caught:
        read_points(path)
    message = str(caught.value)
    assert "lying.npy: its header claims an array of shape (1000000000000, 3) (float64)" in message
    assert "24,000,000,000,000 bytes, but only 240 bytes follow it: the file is truncated or damaged" in message


def test_truncated_npy_is_refused(tmp_path, rng):
    np.save(tmp_path / "x.npy", rng.random((100, 3)))
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) - 100])
    with pytest.raises(GpusegError, match=r"cut.npy: its header claims an array of shape \(100, 3\)"):
        read_points(tmp_path / "cut.npy")


def test_npy_larger_than_the_memory_is_refused(tmp_path, rng, monkeypatch):
    np.save(tmp_path / "x.npy", rng.random((1000, 4)))
    monkeypatch.setattr(gpuseg._core.memory, "available_memory", lambda: 16_000)
    with pytest.raises(
        MemoryLimitError,
        match=r"x.npy: an array of shape \(1000, 4\) \(float64\) and its float64 copy need 64,000 bytes and 16,000",
    ):
        read_points(tmp_path / "x.npy")


@pytest.mark.parametrize("shape", [(10,), (4, 5, 2), ()])
def test_npy_that_is_not_an_n_by_f_array_is_refused(tmp_path, shape):
    np.save(tmp_path / "x.npy", np.zeros(shape))
    with pytest.raises(GpusegError, match=rf"x.npy: holds an array of shape {re.escape(str(shape))}.*reshape it"):
        read_points(tmp_path / "x.npy")


@pytest.mark.parametrize("shape", [(0, 3), (3, 0)])
def test_empty_npy_is_refused(tmp_path, shape):
    np.save(tmp_path / "x.npy", np.zeros(shape))
    with pytest.raises(GpusegError, match=rf"x.npy: holds an empty array of shape {re.escape(str(shape))}"):
        read_points(tmp_path / "x.npy")


@pytest.mark.parametrize(
    "array",
    [
        np.array([["a", "b"]]),
        np.array([[1 + 2j, 3j]]),
        np.zeros((2, 2), dtype=[("x", "f8")]),
        np.array([[None, 1]], dtype=object),
        np.array([["2024-01-01"]], dtype="datetime64[D]"),
    ],
    ids=["strings", "complex", "structured", "objects", "dates"],
)
def test_npy_of_non_numbers_is_refused(tmp_path, array):
    np.save(tmp_path / "x.npy", array, allow_pickle=True)
    with pytest.raises(GpusegError, match="x.npy: holds .* values; gpuseg clusters numbers"):
        read_points(tmp_path / "x.npy")


def test_not_an_npy_file(tmp_path):
    (tmp_path / "x.npy").write_text("1,2\n3,4\n")
    with pytest.raises(GpusegError, match="x.npy: not a readable .npy file"):
        read_points(tmp_path / "x.npy")


def test_npy_with_nan_names_the_row(tmp_path):
    X = np.zeros((5, 3))
    X[3, 1] = np.nan
    X[4, 0] = np.inf
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(GpusegError, match=r"x.npy: row 3 \(from 0\), column 2: nan is not a finite number.*2 rows"):
        read_points(tmp_path / "x.npy")


# ------------------------------------------------------------------------------------------------ CSV


def write(path, text, encoding="utf-8"):
    path.write_text(text, encoding=encoding)
    return path


@pytest.mark.parametrize(
    "text",
    [
        "1,2\n3,4.5\n-6e1,7\n",
        "x,y\n1,2\n3,4.5\n-6e1,7\n",
        "\n# x , y\n1,2\n\n3, 4.5\n -6e1 ,7",
        "\ufeffa,b\r\n1,2\r\n3,4.5\r\n-6e1,7\r\n",
    ],
    ids=["plain", "header", "blank lines and spaces", "BOM and CRLF"],
)
def test_csv_tables(tmp_path, text):
    got = read_points(write(tmp_path / "p.csv", text))
    np.testing.assert_array_equal(got, [[1, 2], [3, 4.5], [-60, 7]])
    assert got.dtype == np.float64


def test_single_column_csv(tmp_path):
    np.testing.assert_array_equal(read_points(write(tmp_path / "p.csv", "v\n1\n2\n")), [[1], [2]])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x,y\n1,2\n\n3,abc\n", "line 4, column 2: 'abc' is not a number"),
        ("1,2\n3,4\n5,6,7\n", "line 3 has 3 columns where line 1 has 2"),
        ("x,y\n1,2\n3\n", "line 3 has 1 columns where line 2 has 2"),
        ("1,2\n3,,4\n", "line 2, column 2: the field is empty"),
        ("1,2,\n", "line 1, column 3: the field is empty"),
        ("a;b\n1;2\n", "line 2, column 1: '1;2' is not a number .features are numbers separated by commas"),
    ],
)
def test_csv_errors_name_the_line_and_the_problem(tmp_path, text, message):
    with pytest.raises(GpusegError, match=f"p.csv: {message}"):
        read_points(write(tmp_path / "p.csv", text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("\n \n\n", "has no rows; write one sample per line"),
        ("x,y\n", "has a header line and no data rows"),
        ("x,y\n1,2\n3,nan\n", "line 3, column 2: nan is not a finite number"),
        ("1,2\n-inf,2\n", "line 2, column 1: -inf is not a finite number"),
    ],
)
def test_csv_without_usable_rows(tmp_path, text, message):
    with pytest.raises(GpusegError, match=f"p.csv: {message}"):
        read_points(write(tmp_path / "p.csv", text))


def test_binary_csv_is_refused(tmp_path):
    (tmp_path / "p.csv").write_bytes(b"1,2\n\xff\xfe\x00\x01")
    with pytest.raises(GpusegError, match="p.csv: not a text file .byte 4 is not UTF-8 text"):
        read_points(tmp_path / "p.csv")


def test_other_files_are_refused(tmp_path):
    with pytest.raises(GpusegError, match="p.txt: points must be a .npy or .csv file"):
        read_points(write(tmp_path / "p.txt", "1,2\n"))
    with pytest.raises(GpusegError, match="none.npy: no such file"):
        read_points(tmp_path / "none.npy")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(GpusegError, match="dir.csv: is a directory"):
        read_points(tmp_path / "dir.csv")


# ------------------------------------------------------------------------------------------------ CLI


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.csv", "x,y\n1,2\n3,abc\n", "bad.csv: line 3, column 2: 'abc' is not a number"),
        ("ragged.csv", "1,2\n3,4,5\n", "ragged.csv: line 2 has 3 columns where line 1 has 2"),
        ("nan.csv", "1,2\nnan,1\n", "nan.csv: line 2, column 1: nan is not a finite number"),
        ("empty.csv", "", "empty.csv: the file is empty"),
        ("lying.npy", None, r"lying.npy: its header claims an array of shape (1000000000000, 3)"),
        ("flat.npy", np.zeros(7), "flat.npy: holds an array of shape (7,)"),
    ],
)
def test_cli_reports_bad_points_without_a_traceback(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        npy_with_header(path, (10**12, 3), payload=bytes(24))
    elif isinstance(content, str):
        path.write_text(content)
    else:
        np.save(path, content)
    result = runner.invoke(app, ["cluster", str(path), "--eps", "0.5", "--min-samples", "2"])
    assert result.exit_code == 1
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / f"{path.stem}.labels.npy").exists()
