"""Data dictionary of the analysis-ready long table (one row per reader x modality x case).

It ships with every CSV export, so a statistician can use the table without the web app. No Django here.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

import pandas as pd

from readerstudy.csvsafe import safe_cell
from readerstudy.studies.covariates import CASE_TEXT_COLUMN, CASE_TEXT_MAX, COVARIATES

DATA_DICTIONARY: list[dict] = [
    {
        "column": "reader",
        "type": "string",
        "units": "",
        "meaning": "Pseudonymous account name of the reader (radiologist). One reader reads every case in every "
        "modality (fully crossed design).",
    },
    {
        "column": "modality",
        "type": "string",
        "units": "",
        "meaning": "Reading condition: 'unaided' = the reader saw the CT only; 'aided' = the reader also saw the "
        "deep-learning model's overlay and probability.",
    },
    {
        "column": "case",
        "type": "string",
        "units": "",
        "meaning": "Pseudonymous lesion identifier (e.g. 'P001-L2'). The unit of analysis: one case = one lesion, "
        "rated once per reader and modality.",
    },
    {
        "column": "patient",
        "type": "string",
        "units": "",
        "meaning": "Pseudonymous patient identifier. Lesions of the same patient are correlated; clustered analyses "
        "resample (jackknife) or group (DeLong) whole patients.",
    },
    {
        "column": "truth",
        "type": "integer (0 or 1)",
        "units": "",
        "meaning": "Reference standard: 1 = colorectal liver metastasis (CRLM, positive), 0 = hemangioma (negative).",
    },
    {
        "column": "truth_label",
        "type": "string ('crlm' or 'hemangioma')",
        "units": "",
        "meaning": "The reference standard as a label; 'crlm' if and only if truth = 1.",
    },
    {
        "column": "rating",
        "type": "integer 0-100, or empty",
        "units": "points on the study's confidence scale",
        "meaning": "Reader's confidence that the lesion is a CRLM: 0 = certainly hemangioma, 100 = certainly "
        "metastasis. Higher means more suspicion, as ROC analysis expects. Empty when the reader marked the "
        "lesion not assessable (not_assessable = 1).",
    },
    {
        "column": "diameter_mm",
        "type": "float > 0",
        "units": "mm",
        "meaning": "Reference maximum axial diameter of the lesion (from the case manifest, not measured by the "
        "reader).",
    },
    {
        "column": "size_stratum",
        "type": "string ('<=10', '10-30' or '>30' with the default bins)",
        "units": "mm",
        "meaning": "Lesion-size bin of diameter_mm under the study's size bins at export time. Bins are closed "
        "on the right, so an edge belongs to the lower bin: 10.0 mm is '<=10', 10.01 mm and 30.0 mm are '10-30', "
        "30.01 mm is '>30'.",
    },
    {
        "column": "session",
        "type": "integer >= 1",
        "units": "",
        "meaning": "1-based index of the reader's reading session in which the case was read.",
    },
    {
        "column": "position",
        "type": "integer >= 0",
        "units": "",
        "meaning": "0-based position of the case in the session's stored (randomised) reading order.",
    },
    {
        "column": "active_seconds",
        "type": "float >= 0",
        "units": "s",
        "meaning": "Reading time measured in the browser, paused while the tab was hidden.",
    },
    {
        "column": "submitted_at",
        "type": "string, ISO 8601 date-time in UTC (e.g. 2025-03-01T10:15:00.123456Z)",
        "units": "",
        "meaning": "When the server received the rating.",
    },
    {
        "column": "model_probability",
        "type": "float in [0, 1], or empty",
        "units": "probability",
        "meaning": "The deep-learning model's probability that the lesion is a CRLM: in aided reads the one the "
        "reader was shown (stored with the read); predictions are frozen at launch, so it is the same in both "
        "modalities. Empty when the case has no prediction.",
    },
    {
        "column": "served_seconds",
        "type": "float >= 0, or empty",
        "units": "s",
        "meaning": "Server time from the moment the reading page first received the case to the submission "
        "(includes pauses, unlike active_seconds). Empty when the item was never served through the reading page.",
    },
    {
        "column": "not_assessable",
        "type": "integer (0 or 1)",
        "units": "",
        "meaning": "1 = the reader marked the lesion not assessable and gave no rating (see not_assessable_reason). "
        "The analysis is complete-case: a case with any not-assessable read is left out of the AUC analysis for "
        "every reader and modality (the design stays fully crossed); the run's report lists how many and which.",
    },
    {
        "column": "not_assessable_reason",
        "type": "string (one of the study's reasons), or empty",
        "units": "",
        "meaning": "Why the lesion could not be rated, e.g. 'Lesion not visible'; empty when it was rated.",
    },
    {
        "column": "comment",
        "type": "string, at most 2000 characters, or empty",
        "units": "",
        "meaning": "The reader's free-text comment on the read (plain text; may contain line breaks).",
    },
    {
        "column": "n_measurements",
        "type": "integer >= 0",
        "units": "",
        "meaning": "Number of measurements (length, ellipse, probe) the reader had on screen when submitting.",
    },
    {
        "column": "measurements",
        "type": "string: compact JSON list, or empty",
        "units": "mm, mm², HU as named in each field",
        "meaning": "The reader's measurements at submission, each an object with 'tool' (length, ellipse or "
        "probe), 'series_role' (the series measured), 'slice_index' (0-based) and the tool's numbers (e.g. "
        "length_mm, points in patient coordinates, mean HU). Empty when there were none.",
    },
]
# The clinical covariates from the case manifest (one entry per covariate of the registry, so a new covariate is
# documented where it is declared), then the case text.
DATA_DICTIONARY += [
    {
        "column": c.name,
        "type": c.dictionary_type(),
        "units": c.unit,
        "meaning": f"{c.description} From the case manifest (column {c.name}); the same on every read of the case; "
        "empty when not recorded."
        + (f" Codes: {', '.join(f'{code} = {label}' for code, label in c.choices)}." if c.choices else ""),
    }
    for c in COVARIATES
]
DATA_DICTIONARY.append(
    {
        "column": CASE_TEXT_COLUMN,
        "type": f"string, at most {CASE_TEXT_MAX} characters, or empty",
        "units": "",
        "meaning": "Free-text clinical history of the case from the case manifest (plain text; may contain line "
        "breaks). Readers saw it (with the covariates) only if the study showed clinical information.",
    }
)

COLUMNS: list[str] = [entry["column"] for entry in DATA_DICTIONARY]


def dictionary_csv() -> str:
    """The data dictionary as CSV text with the header ``column,type,units,meaning``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["column", "type", "units", "meaning"], lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: safe_cell(v) for k, v in entry.items()} for entry in DATA_DICTIONARY)
    return buffer.getvalue()


def check_columns(df: pd.DataFrame, required: Iterable[str] = COLUMNS) -> None:
    """Raise ValueError naming the columns of ``required`` (default: all documented ones) that ``df`` lacks."""
    required = list(required)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"missing column(s) {missing}; the long table needs {required}, found {list(df.columns)}")
