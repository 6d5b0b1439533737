"""The exports' fast paths write what the slow ones wrote: reads.csv and the table hash with preformatted floats,
the JAFROC rating rows as openpyxl's write-only sheets write them (measured by ``python -m bench.scale``)."""

import hashlib
import io
import math
import zipfile

import numpy as np
import pandas as pd
from openpyxl import Workbook, load_workbook

from readerstudy.csvsafe import safe_frame
from readerstudy.results import formats
from readerstudy.results.formats.jafroc import _append_text, _with_rows
from readerstudy.results.table import table_sha256, to_csv
from tests.results.test_formats import simulate_study


def awkward_table() -> pd.DataFrame:
    """Floats that round, -0.0, tiny and huge values, NaN, inf; ints; text with formulas, commas and quotes."""
    return pd.DataFrame(
        {
            "reader": ["b", "a", "=cmd", "a", "c,d"],
            "modality": ["aided", "unaided", "aided", "aided", 'say "x"'],
            "case": ["L2", "L1", "L3", "L1", "L4"],
            "rating": [55.0, math.nan, -0.0, 1e-12, 123456789.123456789],
            "active_seconds": [1 / 3, 2.5, 1e300, math.inf, -math.inf],
            "served_seconds": [math.nan] * 5,
            "truth": [1, 0, 1, 1, 0],
            "measurements": ["", '[{"tool":"length"}]', "", "", ""],
        }
    )


def test_reads_csv_bytes_are_pandas_float_format():
    df = awkward_table()
    assert to_csv(df) == safe_frame(df).to_csv(index=False, float_format="%.10g")


def test_table_hash_is_that_of_pandas_float_format():
    df = awkward_table()
    canonical = df.sort_values(["reader", "modality", "case"]).to_csv(index=False, float_format="%.10g")
    assert table_sha256(df) == hashlib.sha256(canonical.encode()).hexdigest()


def test_reads_csv_of_a_table_without_floats():
    df = pd.DataFrame({"reader": ["a"], "modality": ["m"], "case": ["c"], "truth": [1]})
    assert to_csv(df) == safe_frame(df).to_csv(index=False, float_format="%.10g")


def _workbook(rows: list[list], *, fast: bool) -> bytes:
    wb = Workbook(write_only=True)
    sheet = wb.create_sheet("FP")
    _append_text(sheet, ["ReaderID", "ModalityID", "CaseID", "FP_Rating"])
    _append_text(wb.create_sheet("TP"), ["ReaderID"])
    if not fast:
        for row in rows:
            _append_text(sheet, row)
    buffer = io.BytesIO()
    wb.save(buffer)
    return _with_rows(buffer.getvalue(), {"FP": rows}) if fast else buffer.getvalue()


def test_jafroc_rows_are_openpyxl_write_only_rows():
    rows = [
        [1, "aided", 3, 55],
        [2, "=1+1", 4, 12.5],  # a formula in openpyxl's eyes: text in both
        [10, " padded ", 5, 1e-07],
        [3, "a&b<c>", 6, 100.25],
        [4, "x", None, 7],
    ]
    fast, slow = (zipfile.ZipFile(io.BytesIO(_workbook(rows, fast=f))) for f in (True, False))
    assert fast.namelist() == slow.namelist()
    for name in slow.namelist():
        if name != "docProps/core.xml":  # the creation time
            assert fast.read(name) == slow.read(name), name
    cells = [[c.value for c in row] for row in load_workbook(io.BytesIO(_workbook(rows, fast=True)))["FP"]]
    assert cells[1:] == [[1, "aided", 3, 55], [2, "=1+1", 4, 12.5], [10, " padded ", 5, 1e-07],
                         [3, "a&b<c>", 6, 100.25], [4, "x", None, 7]]  # fmt: skip


def test_jafroc_workbook_of_a_study_reads_back():
    study = simulate_study()
    back = formats.read_jafroc(formats.write_jafroc(study))
    merged = back.merge(study, on=["reader", "modality", "case"], suffixes=("", "_in"))
    assert len(merged) == len(study) == len(back)
    assert np.array_equal(merged["rating"].to_numpy(), merged["rating_in"].to_numpy(dtype=float))
