"""Probability calibration of a classifier's scores: Platt scaling, and the held-out calibration figures.

* :func:`fit_platt` fits ``p = sigmoid(slope * logit + intercept)`` by maximum likelihood on a calibration split
  (patients neither trained nor tested on). A network trained to a near-zero loss is over-confident; a monotone
  rescaling of its logit leaves the ranking (the AUC) unchanged and makes the probabilities mean what they say.
* :func:`fit_calibration` is what every classifier's training command calls: the parameters to store with the
  model (or none, and the card's reason why).
* :func:`calibration_metrics` reports, on held-out data: the Brier score, the calibration slope and the
  calibration-in-the-large intercept (logistic recalibration of the outcome on ``logit(p)``; 1 and 0 when
  calibrated; a slope below 1 means over-confident), and the expected calibration error over equal-count bins.

numpy and scipy: no scikit-learn penalty hides in the fit (its logistic regression is L2-penalised by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import expit

__all__ = ["apply_platt", "calibration_metrics", "fit_calibration", "fit_platt", "logit"]

_EPS = 1e-6


def logit(p: np.ndarray | Sequence[float]) -> np.ndarray:
    """``log(p / (1 - p))`` with ``p`` clipped to ``[1e-6, 1 - 1e-6]``."""
    q = np.clip(np.asarray(p, dtype=float), _EPS, 1.0 - _EPS)
    return np.log(q / (1.0 - q))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # scipy's logistic: no overflow for a large negative x, and tiny probabilities stay distinct (ranks kept)
    return np.asarray(expit(x), dtype=float)


def _logistic_fit(
    x: np.ndarray, y: np.ndarray, *, offset: np.ndarray | None = None, ridge: float = 1e-4, fit_slope: bool = True
) -> tuple[float, float]:
    """``(intercept, slope)`` of ``y ~ intercept + slope * x (+ offset)`` by Newton's method; a tiny ridge keeps
    it finite when the classes are separable."""
    n = len(y)
    design = np.column_stack([np.ones(n), x]) if fit_slope else np.ones((n, 1))
    off = np.zeros(n) if offset is None else offset
    beta = np.zeros(design.shape[1])
    for _ in range(100):
        p = _sigmoid(design @ beta + off)
        grad = design.T @ (y - p) - ridge * beta
        hess = (design * (p * (1 - p))[:, None]).T @ design + ridge * np.eye(len(beta))
        step = np.linalg.solve(hess, grad)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(beta[0]), float(beta[1]) if fit_slope else 1.0


def fit_platt(logits: Sequence[float] | np.ndarray, truth: Sequence[int] | np.ndarray) -> dict[str, float]:
    """Platt scaling: ``{"slope", "intercept"}`` of ``p = sigmoid(slope * logit + intercept)`` fitted on
    (``logits``, ``truth``) by maximum likelihood."""
    x = np.asarray(logits, dtype=float)
    y = np.asarray(truth, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(set(y.tolist())) != 2:
        raise ValueError("fit_platt needs 1-D logits and truth of the same length with both classes")
    intercept, slope = _logistic_fit(x, y)
    return {"slope": slope, "intercept": intercept}


def fit_calibration(
    logits: Sequence[float] | np.ndarray, truth: Sequence[int] | np.ndarray, n_patients: int, score: str
) -> tuple[dict[str, Any] | None, str]:
    """``(calibration, note)``: the Platt parameters to store with a model (``method``, ``score``, ``slope``,
    ``intercept``, ``fitted_on``), fitted on the raw ``logits`` of the calibration lesions of ``n_patients``
    patients, and the model card's one-line account; ``(None, why)`` when there are no calibration lesions, they
    hold one class, or the fitted slope is not positive (such a map would reverse or erase the model's ranking)."""
    y = np.asarray(truth)
    if y.size == 0:
        return None, "none: no calibration split (--cal-fraction 0)"
    if len(set(y.tolist())) < 2:
        return None, "none: the calibration patients hold one class only (add data or change --seed)"
    fit = fit_platt(logits, y)
    fitted_on = f"{y.size} lesions of {n_patients} calibration patients"
    if fit["slope"] <= 0:
        return None, f"none: Platt slope {fit['slope']:.3g} <= 0 on {fitted_on} (the model does not rank them)"
    calibration = {"method": "platt", "score": score, **fit, "fitted_on": fitted_on}
    return calibration, f"Platt scaling of the {score}, fitted on {fitted_on}"


def apply_platt(logits: float | np.ndarray, calibration: dict[str, Any] | None) -> np.ndarray:
    """Probabilities from logits: ``sigmoid(slope * logit + intercept)``, or ``sigmoid(logit)`` without
    ``calibration``."""
    x = np.asarray(logits, dtype=float)
    if calibration:
        x = float(calibration["slope"]) * x + float(calibration["intercept"])
    return _sigmoid(x)


def calibration_metrics(
    truth: Sequence[int] | np.ndarray, prob: Sequence[float] | np.ndarray, n_bins: int = 5
) -> dict[str, Any]:
    """Held-out calibration of probabilities ``prob`` against ``truth`` (0/1).

    Returns ``brier``; ``calibration_slope`` (of ``truth ~ a + b * logit(prob)``); ``calibration_intercept``
    (calibration-in-the-large: ``a`` with the slope fixed at 1, i.e. ``logit(prob)`` as an offset);
    ``ece`` (expected calibration error over ``n_bins`` equal-count bins of ``prob``: the count-weighted mean of
    ``|mean prob - observed rate|``) and the bins themselves (``mean_prob``, ``observed``, ``n``).
    """
    y = np.asarray(truth, dtype=float)
    p = np.asarray(prob, dtype=float)
    if y.shape != p.shape or y.ndim != 1 or y.size == 0:
        raise ValueError("truth and prob must be 1-D of the same, non-zero length")
    lp = logit(p)
    out: dict[str, Any] = {"n": int(y.size), "brier": float(np.mean((p - y) ** 2))}
    if len(set(y.tolist())) == 2:
        _, out["calibration_slope"] = _logistic_fit(lp, y)
        out["calibration_intercept"], _ = _logistic_fit(lp, y, offset=lp, fit_slope=False)
    order = np.argsort(p, kind="stable")
    bins = [b for b in np.array_split(order, min(n_bins, y.size)) if b.size]
    table = [{"mean_prob": float(p[b].mean()), "observed": float(y[b].mean()), "n": int(b.size)} for b in bins]
    out["ece"] = float(sum(abs(r["mean_prob"] - r["observed"]) * r["n"] for r in table) / y.size)
    out["ece_bins"] = table
    return out
