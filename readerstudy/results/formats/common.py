"""What the peer formats share: the rating columns, id and number text, the validated ratings table."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

RATING_COLUMNS = ["reader", "modality", "case", "truth", "rating"]
IMRMC_TRUTH_READERS = ("-1", "truth")  # iMRMC marks truth rows with either reader id
JAFROC_MAP_PROPERTY = "readerstudy_ids"  # custom document property holding our case/patient ids


class FormatError(ValueError):
    """A peer-format file that cannot be read; the message names the line, sheet or row."""


def _id(value: object) -> str:
    """An id as text: integral floats (Excel, pandas) lose their '.0' so that 3.0 and '3' are the same id."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _number(value: float) -> str:
    """Shortest text that reads back as the same float (integers without a decimal point)."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _ratings(df: pd.DataFrame, columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Validated copy of the rating columns (plus ``columns`` if present) with string ids."""
    missing = [c for c in RATING_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"missing column(s) {missing}; expected at least {RATING_COLUMNS}")
    if df.empty:
        raise ValueError("the ratings table has no rows")
    out = df[[*RATING_COLUMNS, *(c for c in columns if c in df.columns)]].copy()
    for col in ("reader", "modality", "case", *(c for c in columns if c in df.columns)):
        if out[col].isna().any():
            raise ValueError(f"column {col!r}: empty value in row {int(out[col].isna().to_numpy().argmax())}")
        out[col] = [_id(v) for v in out[col].tolist()]  # a list: iterating a pandas column is far slower
    truth = pd.to_numeric(out["truth"], errors="coerce")
    if not truth.isin([0, 1]).all():
        row = int((~truth.isin([0, 1])).to_numpy().argmax())
        raise ValueError(f"column 'truth': expected 0 or 1, found {out['truth'].iloc[row]!r} in row {row}")
    out["truth"] = truth.astype(int)
    rating = pd.to_numeric(out["rating"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(rating)
    if bad.any():
        row = int(bad.argmax())
        raise ValueError(f"column 'rating': expected a finite number, found {out['rating'].iloc[row]!r} in row {row}")
    out["rating"] = rating
    per_case = out.groupby("case")["truth"].nunique()
    if (per_case > 1).any():
        raise ValueError(f"case {per_case[per_case > 1].index[0]!r} has both truth values; expected one per case")
    dup = out.duplicated(["reader", "modality", "case"])
    if dup.any():
        r = out[dup].iloc[0]
        raise ValueError(f"reader {r['reader']!r} rated case {r['case']!r} in modality {r['modality']!r} twice")
    return out.reset_index(drop=True)


def _check_plain_ids(df: pd.DataFrame, fmt: str, columns: tuple[str, ...] = ("reader", "modality", "case")) -> None:
    """Ids in comma/whitespace-delimited formats must not contain commas or whitespace."""
    for col in columns:
        bad = [v for v in pd.unique(df[col]) if v == "" or re.search(r"[\s,]", v)]
        if bad:
            raise ValueError(
                f"{fmt}: {col} id {bad[0]!r} is empty or contains a comma or whitespace, which {fmt} "
                "cannot store; rename it"
            )


def _id_order(ids: pd.Series) -> pd.Series:
    """Sort key for ids: numeric when every id is a number (so 2 comes before 10), else the text."""
    numeric = pd.to_numeric(ids, errors="coerce")
    return numeric if numeric.notna().all() else ids


def _cases(df: pd.DataFrame) -> pd.DataFrame:
    """One row per case (case, truth[, patient]), negatives first, each class in id order."""
    cols = ["case", "truth", *(["patient"] if "patient" in df.columns else [])]
    cases = df.drop_duplicates("case")[cols]
    cases = cases.assign(_key=_id_order(cases["case"])).sort_values(["truth", "_key"], kind="stable")
    return cases.drop(columns="_key").reset_index(drop=True)
