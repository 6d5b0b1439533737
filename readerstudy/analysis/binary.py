"""Sensitivity and specificity at a pre-specified rating threshold as figures of merit (FOMs) of the OR analysis.

A read calls a case positive when its rating >= T. Reader r's sensitivity in modality m is the share of the
positive cases (truth 1) it calls positive, its specificity the share of the negative cases it calls negative.
The OR machinery (``orh.py``) takes any FOM with its covariance matrix; only the covariance is new here.

Each FOM is a mean over the cases of one truth class (the FOM's **cases**: positives for sensitivity, negatives
for specificity); cases of the other class do not enter it. As in MRMCaov (``binary_sens``/``binary_spec``, whose
``mrmc()`` keeps only the FOM's class before estimating the covariance), the covariance is estimated on the FOM's
cases alone. With y_gk = 1[case k called correctly by reader x modality g], S_g = sum_k y_gk over the FOM's cases,
N_g their number, and units u = the FOM's cases, or the patients holding at least one of them when clustered:

- ``jackknife``: theta_g^(-u) = (S_g - s_gu) / (N_g - n_gu), with s_gu and n_gu the sum and count over the
  unit's cases; Cov = ((C-1)/C) sum_u (theta^(-u) - mean)(theta^(-u) - mean)^T over the C units. Deleting a unit
  of the other class would leave every theta unchanged: counting it would only shrink the variance.
- ``delong``: the structural components of a proportion are the indicators themselves, so DeLong's estimator
  is S10 / N with S10 the sample covariance of the y_gk; with clusters it is Obuchowski's (1997) ratio-estimator
  form C/(C-1) sum_u a_gu a_hu / (N_g N_h), a_gu = s_gu - n_gu theta_g.
- ``unbiased``: the sample covariance of the indicators over N is an unbiased estimator of Cov(theta_g, theta_h)
  (the cases are independent draws); the same number as DeLong. Refused for clustered data, as for the AUC.

Unclustered, all three are the same matrix, sum_k (y_gk - ybar_g)(y_hk - ybar_h) / (N (N - 1)) (the tests check
it). Split-plot studies (NaN where a reader's group did not read a case): theta_g is over the cases the group
read; the jackknife runs over all units of the study, leaving theta_g unchanged where the group read none of
the unit (the construction ``splitplot.py`` uses for the AUC); DeLong and unbiased are computed per group's block
and are 0 between groups.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from readerstudy.analysis.covariance import COV_METHODS, gram
from readerstudy.analysis.errors import AnalysisInputError

if TYPE_CHECKING:
    from readerstudy.analysis.data import ReaderStudy
    from readerstudy.analysis.splitplot import SplitPlotStudy

FOMS = ("auc", "sensitivity", "specificity")
BINARY_FOMS = ("sensitivity", "specificity")
_CLASS = {"sensitivity": "positive (truth 1)", "specificity": "negative (truth 0)"}


def check_fom(fom: str, threshold: float | None) -> tuple[str, float | None]:
    """The FOM's name (lower case) and its threshold as a float; refuses a missing or superfluous threshold."""
    name = str(fom).strip().lower()
    if name not in FOMS:
        raise AnalysisInputError(f"figure of merit {fom!r}: expected one of {list(FOMS)}")
    if name == "auc":
        if threshold is not None:
            raise AnalysisInputError(
                f"threshold {threshold!r}: the AUC uses every rating and takes no threshold; a threshold applies "
                f"to the binary figures of merit {list(BINARY_FOMS)}"
            )
        return name, None
    if threshold is None:
        raise AnalysisInputError(f"{name} needs a threshold: the rating at or above which a read calls a case positive")
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise AnalysisInputError(f"threshold {threshold!r}: expected a finite number on the rating scale")
    return name, value


def correct_calls(x: np.ndarray, truth: np.ndarray, fom: str, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The FOM's cases (K,) bool, and y (G, n) = 1.0 where a read got a FOM case right, NaN where it is unread."""
    cases = truth if fom == "sensitivity" else ~truth
    x = x[:, cases]
    right = x >= threshold if fom == "sensitivity" else x < threshold
    return cases, np.where(np.isnan(x), np.nan, right.astype(float))


def _unit_sums(y: np.ndarray, units: np.ndarray, n_units: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum of y and number of read cases (G, C) per unit."""
    read = ~np.isnan(y)
    filled = np.where(read, y, 0.0)
    s = np.stack([np.bincount(units, weights=row, minlength=n_units) for row in filled])
    n = np.stack([np.bincount(units, weights=row, minlength=n_units) for row in read.astype(float)])
    return s, n


def binary_covariance(
    x: np.ndarray,
    truth: np.ndarray,
    fom: str,
    threshold: float,
    method: str = "jackknife",
    clusters: np.ndarray | None = None,
    what: str = "the data set",
) -> tuple[np.ndarray, np.ndarray]:
    """Sensitivity or specificity of each row of ``x`` (G, K; NaN = not read) and their G x G covariance."""
    cases, y = correct_calls(np.asarray(x, dtype=float), np.asarray(truth, dtype=bool), fom, threshold)
    if clusters is None:
        units, n_units = np.arange(y.shape[1]), y.shape[1]
    else:
        codes, units = np.unique(clusters[cases], return_inverse=True)
        n_units = codes.size
    if method == "unbiased" and n_units != y.shape[1]:
        raise AnalysisInputError(
            "the unbiased covariance is defined for unclustered data only; "
            "use --cov jackknife or delong with a cluster column"
        )
    s, n = _unit_sums(y, units, n_units)
    total, count = s.sum(axis=1), n.sum(axis=1)
    unit = "patients" if clusters is not None else "cases"
    if (count == 0).any() or n_units < 2:
        raise AnalysisInputError(
            f"{what}: {fom} needs {_CLASS[fom]} cases rated by every reader in every modality, in at least two "
            f"{unit}; found {n_units} {unit} holding such cases"
        )
    theta = total / count
    if method == "jackknife":
        left = count[:, None] - n
        if (left == 0).any():
            raise AnalysisInputError(
                f"{what}: the jackknife of {fom} needs every reader's {_CLASS[fom]} cases in at least two {unit}"
            )
        dev = (total[:, None] - s) / left
        dev -= dev.mean(axis=1, keepdims=True)
        return theta, (n_units - 1) / n_units * gram(dev, dev)
    a = s - n * theta[:, None]
    return theta, n_units / (n_units - 1) * gram(a, a) / np.outer(count, count)


def fom_covariance(
    study: ReaderStudy | SplitPlotStudy, fom: str, threshold: float | None, method: str, what: str = "the data set"
) -> tuple[np.ndarray, np.ndarray]:
    """FOM values (G,) and covariance (G x G, modality-major rows m * R + r) of a fully crossed or split-plot study."""
    from readerstudy.analysis.splitplot import SplitPlotStudy

    fom, threshold = check_fom(fom, threshold)
    if threshold is None:
        raise AnalysisInputError(f"figure of merit {fom!r}: fom_covariance is for {list(BINARY_FOMS)}")
    if method not in COV_METHODS:
        raise AnalysisInputError(f"covariance method {method!r}: expected one of {list(COV_METHODS)}")
    n_m, n_r, n_k = study.ratings.shape
    x = study.ratings.reshape(n_m * n_r, n_k)
    if not isinstance(study, SplitPlotStudy) or method == "jackknife":
        return binary_covariance(x, study.truth, fom, threshold, method, study.clusters, what)
    values = np.empty(n_m * n_r)
    cov = np.zeros((n_m * n_r, n_m * n_r))
    for g in range(study.n_groups):  # DeLong / unbiased: within each block, 0 between blocks (no shared case)
        block = study.block(g)
        if study.clusters is not None:
            spread = np.isin(study.clusters[study.case_group != g], study.clusters[study.case_group == g])
            if spread.any():
                raise AnalysisInputError(
                    f"{method} covariance of a split-plot study: patients with cases in the blocks of more than "
                    "one reader group; use the jackknife, which deletes whole patients across groups"
                )
        rows = (np.arange(n_m)[:, None] * n_r + np.flatnonzero(study.reader_group == g)[None, :]).ravel()
        block_what = f"{what}, the block of reader group {g + 1}"
        values[rows], cov[np.ix_(rows, rows)] = binary_covariance(
            block.ratings.reshape(rows.size, -1), block.truth, fom, threshold, method, block.clusters, block_what
        )
    return values, cov


_RENAMED = ("auc", "auc_se", "modality_auc")


def name_by_fom(out: dict[str, Any], fom: str, threshold: float | None) -> dict[str, Any]:
    """``out`` with ``fom``/``threshold`` added and, for a binary FOM, the AUC-named keys named by the FOM.

    ``auc`` -> ``sensitivity``, ``auc_se`` -> ``sensitivity_se``, ``modality_auc`` -> ``modality_sensitivity``,
    and each ``single`` entry's ``auc`` -> ``sensitivity`` (likewise for specificity). The AUC keeps its keys.
    """
    if fom != "auc":
        out = {k.replace("auc", fom) if k in _RENAMED else k: v for k, v in out.items()}
        for name in ("rrrc", "frrc", "rrfc"):
            single = out.get(name, {}).get("single", {})
            for modality, entry in single.items():
                single[modality] = {fom if k == "auc" else k: v for k, v in entry.items()}
    out["fom"] = fom
    out["threshold"] = threshold
    return out
