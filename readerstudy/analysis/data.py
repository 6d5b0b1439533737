"""Long ratings table -> validated reader x modality x case array.

Input columns: ``reader, modality, case, truth (0/1), rating`` plus optional cluster (patient) and stratum
columns. Levels (readers, modalities) are sorted by their CSV value (numerically when all are numbers) and
reported as strings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from readerstudy.analysis.errors import AnalysisInputError

REQUIRED = ("reader", "modality", "case", "truth", "rating")
_MAX_LISTED = 10  # how many offending rows/cells an error message names


@dataclass(frozen=True)
class ReaderStudy:
    """A fully crossed study: ``ratings[m, r, k]`` is reader r's rating of case k in modality m."""

    modalities: list[str]
    readers: list[str]
    cases: np.ndarray  # case ids, as given
    truth: np.ndarray  # (K,) bool, True = diseased / positive
    ratings: np.ndarray  # (M, R, K) float
    clusters: np.ndarray | None = None  # (K,) int codes of the patient of each case, or None

    @property
    def n_positive(self) -> int:
        return int(self.truth.sum())

    @property
    def n_negative(self) -> int:
        return int(self.truth.size - self.truth.sum())

    @property
    def n_clusters(self) -> int | None:
        return None if self.clusters is None else int(np.unique(self.clusters).size)

    def subset(self, keep: np.ndarray) -> ReaderStudy:
        """The same readers and modalities on the cases where ``keep`` is True."""
        clusters = None if self.clusters is None else np.unique(self.clusters[keep], return_inverse=True)[1]
        return ReaderStudy(
            self.modalities, self.readers, self.cases[keep], self.truth[keep], self.ratings[:, :, keep], clusters
        )


def _show(value: object) -> str:
    """repr of a cell value as the user wrote it (numpy scalars as plain Python values)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _rows(mask: np.ndarray, values: pd.Series) -> str:
    """'row 3 ('abc'), row 7 (nan)' for the first offending rows (row = 0-based position in the table)."""
    where = np.flatnonzero(mask)
    shown = ", ".join(f"row {i} ({_show(values.iloc[i])})" for i in where[:_MAX_LISTED])
    more = f" and {where.size - _MAX_LISTED} more" if where.size > _MAX_LISTED else ""
    return shown + more


def read_ratings(
    source: pd.DataFrame | str | os.PathLike, cluster: str | None = None, stratum: str | None = None
) -> pd.DataFrame:
    """Read a CSV path (or take a DataFrame) and check that the needed columns are there."""
    if isinstance(source, pd.DataFrame):
        df = source
    else:
        try:
            df = pd.read_csv(source)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise AnalysisInputError(f"cannot read ratings CSV {os.fspath(source)!r}: {exc}") from exc
    wanted = [*REQUIRED, *(c for c in (cluster, stratum) if c is not None)]
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise AnalysisInputError(f"missing column(s) {missing}; expected columns {wanted}, found {list(df.columns)}")
    if df.empty:
        raise AnalysisInputError("the ratings table has no rows")
    return df.reset_index(drop=True)


def sorted_levels(values: pd.Series) -> list:
    """Distinct values in natural order (numbers numerically, otherwise by their string)."""
    uniq = pd.unique(values)
    try:
        return sorted(uniq)
    except TypeError:
        return sorted(uniq, key=str)


def _codes(values: pd.Series, column: str) -> tuple[np.ndarray, list]:
    if values.isna().any():
        raise AnalysisInputError(f"column {column!r}: empty value at {_rows(values.isna().to_numpy(), values)}")
    levels = sorted_levels(values)
    codes = pd.Categorical(values, categories=levels).codes.astype(np.int64)
    return codes, levels


def _parse_truth(values: pd.Series) -> np.ndarray:
    numeric = pd.to_numeric(values, errors="coerce")
    bad = ~numeric.isin([0, 1]).to_numpy()
    if bad.any():
        raise AnalysisInputError(f"column 'truth': expected 0 or 1, found {_rows(bad, values)}")
    return numeric.to_numpy(dtype=float) == 1


def _parse_rating(values: pd.Series) -> np.ndarray:
    numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(numeric)
    if bad.any():
        raise AnalysisInputError(f"column 'rating': expected a finite number, found {_rows(bad, values)}")
    return numeric


def _per_case(
    case_code: np.ndarray, n_cases: int, values: np.ndarray, column: str, case_levels: list, original: pd.Series
) -> np.ndarray:
    """The one value a column takes for each case; raises when rows of one case disagree."""
    first_row = np.full(n_cases, -1)
    first_row[case_code[::-1]] = np.arange(case_code.size)[::-1]  # earliest row of each case
    per_case = values[first_row]
    differs = per_case[case_code] != values
    if differs.any():
        i = int(np.flatnonzero(differs)[0])
        k = case_code[i]
        raise AnalysisInputError(
            f"column {column!r}: case {_show(case_levels[k])} has {_show(original.iloc[first_row[k]])} in row "
            f"{first_row[k]} but {_show(original.iloc[i])} in row {i}; expected one value per case"
        )
    return per_case


def build_study(df: pd.DataFrame, cluster: str | None = None, missing_ok: bool = False) -> ReaderStudy:
    """Validate a ratings table (see :func:`read_ratings`) and shape it into a :class:`ReaderStudy`.

    ``missing_ok``: cells nobody rated are NaN instead of an error (the split-plot detection starts from
    that array, see ``splitplot.py``); the result is then not a fully crossed study yet.
    """
    reader, readers = _codes(df["reader"], "reader")
    modality, modalities = _codes(df["modality"], "modality")
    case, cases = _codes(df["case"], "case")
    truth_rows = _parse_truth(df["truth"])
    rating = _parse_rating(df["rating"])
    n_m, n_r, n_k = len(modalities), len(readers), len(cases)

    truth = _per_case(case, n_k, truth_rows, "truth", cases, df["truth"])
    clusters = None
    if cluster is not None:
        cluster_rows, _ = _codes(df[cluster], cluster)
        clusters = np.unique(_per_case(case, n_k, cluster_rows, cluster, cases, df[cluster]), return_inverse=True)[1]

    cell = (modality * n_r + reader) * n_k + case
    counts = np.bincount(cell, minlength=n_m * n_r * n_k)
    if (counts > 1).any():
        dup = np.flatnonzero(counts > 1)
        raise AnalysisInputError(
            f"{dup.size} reader x modality x case cell(s) rated more than once, e.g. "
            + "; ".join(_cell(c, modalities, readers, cases) for c in dup[:_MAX_LISTED])
            + "; expected one rating per cell"
        )
    if not missing_ok and (counts == 0).any():
        gap = np.flatnonzero(counts == 0)
        raise AnalysisInputError(
            f"not fully crossed: {gap.size} reader x modality x case cell(s) missing, e.g. "
            + "; ".join(_cell(c, modalities, readers, cases) for c in gap[:_MAX_LISTED])
            + "; expected every reader to rate every case in every modality"
        )

    ratings = np.full(n_m * n_r * n_k, np.nan)
    ratings[cell] = rating
    study = ReaderStudy(
        [str(m) for m in modalities],
        [str(r) for r in readers],
        np.asarray(cases, dtype=object),
        truth,
        ratings.reshape(n_m, n_r, n_k),
        clusters,
    )
    check_both_classes(study, "the data set")
    return study


def _cell(flat: int, modalities: list, readers: list, cases: list) -> str:
    rest, k = divmod(int(flat), len(cases))
    m, r = divmod(rest, len(readers))
    return f"reader {_show(readers[r])} x modality {_show(modalities[m])} x case {_show(cases[k])}"


def check_both_classes(study: ReaderStudy, what: str) -> None:
    """AUC needs positive and negative cases (and, when clustered, clusters to delete)."""
    if study.n_positive == 0 or study.n_negative == 0:
        only = "positive (truth 1)" if study.n_negative == 0 else "negative (truth 0)"
        raise AnalysisInputError(f"{what} has only {only} cases ({study.truth.size}); expected both truth classes")


def case_strata(df: pd.DataFrame, column: str) -> tuple[list[str], np.ndarray]:
    """Stratum labels and each case's stratum code (cases in sorted order); -1 = no stratum given.

    Cases without a stratum (typically the negatives of a lesion-size analysis) join every stratum.
    """
    case, cases = _codes(df["case"], "case")
    values = df[column]
    given = values.notna() & (values.astype(str).str.strip() != "")
    levels = sorted_levels(values[given])
    codes = np.where(given, pd.Categorical(values.where(given), categories=levels).codes, -1).astype(np.int64)
    per_case = _per_case(case, len(cases), codes, column, cases, values)
    return [str(v) for v in levels], per_case
