"""A standalone model (e.g. an AI's probabilities): its AUC, and its comparison with the readers.

Model vs readers (one modality) is the single-treatment OR method of RJafroc's
``StSignificanceTestingCadVsRad(method = "1T-RRRC")`` (Chakraborty 2017; Hillis 2007 single-test df):
the model is a fixed extra "reader", its AUC's covariance with the readers' AUCs is estimated by the chosen
method (jackknife, DeLong or unbiased) on the same cases, and the reader-minus-model differences
D_j = AUC_j - AUC_model are analysed like one modality in RRRC:

    se = sqrt(MS_R(D)/r + max(Cov2(D), 0)),  df = (MS_R(D) + r max(Cov2(D), 0))^2 / (MS_R(D)^2 / (r-1)).

This equals the two-modality RRRC difference when the model's scores are entered as a second modality
read identically by every reader. The fixed-reader (FRRC-like) z test of the same difference is also given.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import numpy as np
import pandas as pd

from readerstudy.analysis.api import plain
from readerstudy.analysis.auc import placements
from readerstudy.analysis.covariance import auc_covariance, delong_cov
from readerstudy.analysis.data import build_study, read_ratings
from readerstudy.analysis.errors import AnalysisInputError
from readerstudy.analysis.orh import auc_ci, t_test, z_test


def _numeric(values: np.ndarray, what: str) -> np.ndarray:
    numeric = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(numeric))
    if bad.size:
        raise AnalysisInputError(f"{what}: expected finite numbers, found {values[bad[0]]!r} at position {bad[0]}")
    return numeric


def model_auc(truth: np.ndarray, scores: np.ndarray, clusters: np.ndarray | None = None, alpha: float = 0.05) -> dict:
    """AUC of a model's scores with a DeLong CI (Obuchowski's clustered DeLong when patients are given)."""
    scores = _numeric(np.asarray(scores), "model scores")
    truth_num = _numeric(np.asarray(truth), "truth")
    if truth_num.shape != scores.shape or not np.isin(truth_num, (0, 1)).all():
        raise AnalysisInputError("truth: expected one 0/1 value per model score")
    truth_b = truth_num == 1
    if truth_b.all() or not truth_b.any():
        raise AnalysisInputError("the model's cases are all of one truth class; expected both")
    codes = None
    if clusters is not None:
        if len(clusters) != scores.size:
            raise AnalysisInputError("clusters: expected one patient per model score")
        codes = pd.factorize(pd.Series(clusters), sort=True)[0]
    p = placements(scores[None, :], truth_b)
    var = float(delong_cov(p, codes)[0, 0])
    out = auc_ci(float(p.auc[0]), math.sqrt(max(var, 0.0)), math.inf, alpha)
    out.pop("df")
    return plain(
        {
            **out,
            "n_positive": p.n_pos,
            "n_negative": p.n_neg,
            "n_clusters": None if codes is None else int(codes.max()) + 1,
            "method": "DeLong" if codes is None else "clustered DeLong (Obuchowski 1997)",
        }
    )


def compare_model_to_readers(
    ratings: pd.DataFrame | str | os.PathLike,
    model: Mapping | pd.Series,
    modality: str | None = None,
    cov: str = "jackknife",
    cluster: str | None = None,
    alpha: float = 0.05,
) -> dict:
    """Mean reader AUC minus model AUC in one modality (method in the module docstring).

    ``model`` maps case id -> model score (a dict or a Series indexed by case) for every case read.
    """
    df = read_ratings(ratings, cluster)
    names = df["modality"].astype(str)
    if modality is None:
        if names.nunique() != 1:
            raise AnalysisInputError(f"modality: the table has {sorted(names.unique())}; name the one to compare")
        modality = names.iloc[0]
    if not (names == str(modality)).any():
        raise AnalysisInputError(f"modality {modality!r}: not in the table ({sorted(names.unique())})")
    study = build_study(df[names == str(modality)].reset_index(drop=True), cluster)
    n_r = len(study.readers)
    if n_r < 2:
        raise AnalysisInputError("comparing a model with random readers needs at least 2 readers")

    model = pd.Series(model)
    lookup = {str(k): v for k, v in model.items()}
    missing = [c for c in study.cases if str(c) not in lookup]
    if missing:
        raise AnalysisInputError(f"model scores missing for {len(missing)} case(s), e.g. {missing[:10]}")
    scores = _numeric(np.array([lookup[str(c)] for c in study.cases], dtype=object), "model scores")

    x = np.vstack([study.ratings[0], scores[None, :]])
    auc, c = auc_covariance(x, study.truth, cov, study.clusters)
    d = auc[:n_r] - auc[n_r]
    cov_d = c[:n_r, :n_r] - c[:n_r, n_r][:, None] - c[n_r, :n_r][None, :] + c[n_r, n_r]
    ms_r = float(np.var(d, ddof=1))
    var_error = float(np.diag(cov_d).mean())
    cov2 = float(cov_d[~np.eye(n_r, dtype=bool)].mean())
    den = ms_r + n_r * max(cov2, 0.0)
    df_h = math.inf if ms_r == 0 else den**2 / (ms_r**2 / (n_r - 1))
    estimate = float(d.mean())
    fixed_var = (var_error + (n_r - 1) * cov2) / n_r
    return plain(
        {
            "modality": str(modality),
            "cov_method": cov,
            "n_readers": n_r,
            "n_cases": study.truth.size,
            "reader_auc": dict(zip(study.readers, auc[:n_r], strict=True)),
            "reader_mean_auc": float(auc[:n_r].mean()),
            "model_auc": float(auc[n_r]),
            "ms_r": ms_r,
            "cov2": cov2,
            "var_error": var_error,
            "random_readers": t_test(estimate, math.sqrt(den / n_r), df_h, alpha),
            "fixed_readers": z_test(estimate, math.sqrt(fixed_var) if fixed_var >= 0 else math.nan, alpha),
            "method": "single-treatment OR (RJafroc 1T-RRRC): mean reader AUC minus model AUC, Hillis df",
        }
    )
