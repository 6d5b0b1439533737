"""The MRMCaov CSV (opened in spreadsheets: text cells are neutralised): write and read."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from readerstudy.csvsafe import safe_frame
from readerstudy.results.formats.common import (
    FormatError,
    _cases,
    _number,
    _ratings,
)

MRMCAOV_COLUMNS = ["reader", "treatment", "case", "truth", "rating"]


def write_mrmcaov_csv(df: pd.DataFrame, include_patient: bool = True) -> str:
    """CSV for MRMCaov: ``reader, treatment, case, truth, rating`` (+ ``patient`` if present and wanted).

    In R: ``d <- read.csv(f, colClasses = c(reader = "character", treatment = "character", case = "character"))``
    then ``mrmc(empirical_auc(truth, rating), treatment, reader, case, data = d)``.
    """
    table = _ratings(df, ("patient",) if include_patient else ())
    position = {c: i for i, c in enumerate(_cases(table)["case"])}
    out = table.rename(columns={"modality": "treatment"}).assign(_k=table["case"].map(position))
    out = out.sort_values(["treatment", "reader", "_k"], kind="stable")
    out["rating"] = [_number(x) for x in out["rating"].tolist()]
    cols = [*MRMCAOV_COLUMNS, *(["patient"] if "patient" in out.columns else [])]
    # Statisticians open this in spreadsheets too: ids that would run as formulas get a leading "'".
    return safe_frame(out[cols]).to_csv(index=False, lineterminator="\n")


def read_mrmcaov_csv(text: str) -> pd.DataFrame:
    """Parse MRMCaov CSV into ``reader, modality, case, truth, rating`` (+ ``patient``); rows in errors are
    CSV line numbers (header = line 1)."""
    try:
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise FormatError(f"MRMCaov CSV: cannot parse ({exc})") from exc
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in MRMCAOV_COLUMNS if c not in raw.columns]
    if missing:
        raise FormatError(
            f"MRMCaov CSV: missing column(s) {missing}; expected {MRMCAOV_COLUMNS}, found {list(raw.columns)}"
        )
    if raw.empty:
        raise FormatError("MRMCaov CSV: no data rows")
    out = pd.DataFrame(
        {"reader": raw["reader"].str.strip(), "modality": raw["treatment"].str.strip(), "case": raw["case"].str.strip()}
    )
    for col in ("reader", "modality", "case"):
        empty = out[col] == ""
        if empty.any():
            src = "treatment" if col == "modality" else col
            raise FormatError(f"MRMCaov CSV line {int(empty.to_numpy().argmax()) + 2}: {src} is empty")
    truth = pd.to_numeric(raw["truth"], errors="coerce")
    bad = ~truth.isin([0, 1])
    if bad.any():
        i = int(bad.to_numpy().argmax())
        raise FormatError(f"MRMCaov CSV line {i + 2}: truth {raw['truth'].iloc[i]!r}; expected 0 or 1")
    rating = pd.to_numeric(raw["rating"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(rating)
    if bad.any():
        i = int(bad.argmax())
        raise FormatError(f"MRMCaov CSV line {i + 2}: rating {raw['rating'].iloc[i]!r} is not a finite number")
    out["truth"] = truth.astype(int)
    out["rating"] = rating
    if "patient" in raw.columns:
        out["patient"] = raw["patient"].str.strip()
    return out
