"""The analysis-ready long table of a study's reads: one row per reader x modality x case."""

import hashlib
import json
from typing import Any

import pandas as pd

from inference.models import Prediction
from readerstudy.analysis.strata import size_stratum
from readerstudy.csvsafe import safe_frame
from readerstudy.reading.models import Read
from readerstudy.studies import covariates
from readerstudy.studies.models import Case, Study, Truth

# The case's clinical covariates (studies.covariates, in registry order) and case text close the table: case-level
# values repeated on each read of the case, empty where the manifest left them out.
CLINICAL_COLUMNS = list(covariates.COLUMNS)
COLUMNS = [
    "reader", "modality", "case", "patient", "truth", "truth_label", "rating", "diameter_mm", "size_stratum",
    "session", "position", "active_seconds", "submitted_at", "model_probability",
    "served_seconds", "not_assessable", "not_assessable_reason", "comment", "n_measurements", "measurements",
    *CLINICAL_COLUMNS,
]  # fmt: skip


def reads_table(study: Study) -> pd.DataFrame:
    """Every submitted read with its truth, lesion size and the model probability: for aided reads the one the
    reader was shown (stored with the read), otherwise the case's prediction (frozen at launch, so the same).

    Reads of practice items are not part of it (``Read.objects.analysed()``), so no export, analysis run, figure,
    reading-time model or report built from this table sees them."""
    rows = (
        Read.objects.analysed()
        .filter(study=study)
        .order_by("reader__username", "modality__order", "case__case_id")
        .values_list(
            "reader__username", "modality__key", "case__case_id", "case__patient__pseudonym", "case__truth__label",
            "rating", "case__diameter_mm", "item__session__index", "item__position",
            "active_seconds", "submitted_at", "case_id", "prediction__probability",
            "served_seconds", "not_assessable", "not_assessable_reason", "comment", "viewer_state",
        )
    )  # fmt: skip
    names = [
        "reader", "modality", "case", "patient", "truth_label", "rating", "diameter_mm",
        "session", "position", "active_seconds", "submitted_at", "case_pk", "shown_probability",
        "served_seconds", "not_assessable", "not_assessable_reason", "comment", "viewer_state",
    ]  # fmt: skip
    records = list(rows)
    df = pd.DataFrame.from_records(records, columns=names)
    probability = _latest_probabilities(study)
    df["truth"] = (df["truth_label"] == Truth.POSITIVE_LABEL).astype(int)
    # Under the study's current bins (an analysis run may choose others and derives its own from diameter_mm).
    # Once per distinct diameter, not per read (it validates the bins on every call).
    diameters = df["diameter_mm"].tolist()
    stratum = {d: size_stratum(d, study.size_bins_mm) for d in set(diameters)}
    df["size_stratum"] = [stratum[d] for d in diameters]
    # From the fetched datetimes: iterating the frame's datetime column would build a pandas Timestamp per read.
    at = names.index("submitted_at")
    df["submitted_at"] = [r[at].isoformat().replace("+00:00", "Z") for r in records]
    case_probability = df["case_pk"].map(probability).astype(float)
    df["model_probability"] = df["shown_probability"].astype(float).fillna(case_probability)
    # None (never served through the API) stays empty, as NaN.
    df["served_seconds"] = df["served_seconds"].astype(float)
    df["not_assessable"] = df["not_assessable"].astype(int)  # 0/1: what R and SAS read without a mapping
    measurements = [_measurements(state) for state in df["viewer_state"]]
    df["n_measurements"] = [len(m) for m in measurements]
    # Compact JSON (text a spreadsheet shows as is; to_csv neutralises what would run as a formula).
    df["measurements"] = [json.dumps(m, separators=(",", ":"), ensure_ascii=False) if m else "" for m in measurements]
    _add_clinical(df, study)
    return df[COLUMNS].reset_index(drop=True)


def _add_clinical(df: pd.DataFrame, study: Study) -> None:
    """The clinical columns, from one query per study (not per read): whole numbers and yes/no as nullable
    integers (yes/no as 1/0, what R and SAS read), decimals as floats, choices and the case text as text."""
    clinical: dict[int, dict] = {}
    text: dict[int, str] = {}
    for pk, values, case_text in Case.objects.filter(study=study).values_list("pk", "clinical", "case_text"):
        clinical[pk] = values if isinstance(values, dict) else {}
        text[pk] = case_text
    cases = df["case_pk"].tolist()
    for c in covariates.COVARIATES:
        values = [clinical.get(pk, {}).get(c.name) for pk in cases]
        if c.kind in ("integer", "yes/no"):
            df[c.name] = pd.array([None if v is None else int(v) for v in values], dtype="Int64")
        elif c.kind == "float":
            df[c.name] = pd.array([None if v is None else float(v) for v in values], dtype="float64")
        else:
            df[c.name] = pd.Series(["" if v is None else str(v) for v in values], index=df.index, dtype=object)
    df[covariates.CASE_TEXT_COLUMN] = pd.Series([text.get(pk, "") for pk in cases], index=df.index, dtype=object)


def _measurements(viewer_state: Any) -> list:
    """The measurements stored with a read (validated by reading.actions.submit_read); [] when none."""
    found = viewer_state.get("measurements") if isinstance(viewer_state, dict) else None
    return found if isinstance(found, list) else []


def _latest_probabilities(study: Study) -> dict[int, float]:
    latest: dict[int, float] = {}
    for case_pk, p in (
        Prediction.objects.filter(case__study=study)
        .order_by("case_id", "created_at", "id")
        .values_list("case_id", "probability")
    ):
        latest[case_pk] = p  # ordered oldest first: the newest wins
    return latest


FLOAT_FORMAT = "%.10g"


def table_sha256(df: pd.DataFrame) -> str:
    """Hash of the table's content, stable across runs (CSV with fixed float format, sorted rows)."""
    canonical = _float_text(df.sort_values(["reader", "modality", "case"])).to_csv(
        index=False, float_format=FLOAT_FORMAT
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def to_csv(df: pd.DataFrame) -> str:
    """reads.csv: opened in spreadsheets, so text cells that would run as formulas are neutralised."""
    return _float_text(safe_frame(df)).to_csv(index=False, float_format=FLOAT_FORMAT)


def _float_text(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its float columns as the text ``to_csv(float_format=FLOAT_FORMAT)`` writes for them (empty for
    NaN), so the CSV's bytes are the same. pandas formats such columns through a Python call and a scalar
    ``notna`` per value: most of the time of a 200 000-read export (``python -m bench.scale``); one list per
    column is a fraction of it."""
    text = {
        column: ["" if v != v else FLOAT_FORMAT % v for v in df[column].tolist()]  # v != v: NaN
        for column in df.columns
        if df[column].dtype.kind == "f"
    }
    return df.assign(**text) if text else df
