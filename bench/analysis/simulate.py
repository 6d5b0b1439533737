"""Roe-Metz (1997) simulated MRMC rating data, for the benchmark and the null-rejection check.

X_mrk = mu * truth_k + R_r + C_k + (TR)_mr + (TC)_mk + (RC)_rk + E_mrk, every effect drawn independently
for the two truth states (as in Roe & Metz), mu for positives only; ``delta`` is added to modality 0's
positives (0 = the null hypothesis of equal modality AUCs).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from readerstudy.analysis.data import ReaderStudy

# variance components (reader, reader x modality, case, case x modality, reader x case, error); the case terms
# sum to 1, the reader terms are small, as in the Roe-Metz / Hillis (2005) simulation settings
ROE_METZ_VARIANCES = {"R": 0.011, "TR": 0.011, "C": 0.1, "TC": 0.1, "RC": 0.2, "E": 0.6}


def roe_metz(n_readers: int, n_modalities: int, n_neg: int, n_pos: int, rng: np.random.Generator,
             mu: float = 1.5, delta: float = 0.0, variances: dict | None = None) -> ReaderStudy:
    """One simulated fully crossed study (continuous ratings)."""
    v = {**ROE_METZ_VARIANCES, **(variances or {})}
    m, r, k = n_modalities, n_readers, n_neg + n_pos
    truth = np.arange(k) >= n_neg
    ratings = np.empty((m, r, k))
    for state, cases in ((False, ~truth), (True, truth)):
        n = int(cases.sum())
        sd = {key: np.sqrt(val) for key, val in v.items()}
        x = (rng.normal(0, sd["R"], (1, r, 1)) + rng.normal(0, sd["C"], (1, 1, n))
             + rng.normal(0, sd["TR"], (m, r, 1)) + rng.normal(0, sd["TC"], (m, 1, n))
             + rng.normal(0, sd["RC"], (1, r, n)) + rng.normal(0, sd["E"], (m, r, n)))
        if state:
            x += mu
            x[0] += delta
        ratings[:, :, cases] = x
    return ReaderStudy([str(i + 1) for i in range(m)], [str(j + 1) for j in range(r)],
                       np.arange(k, dtype=object), truth, ratings)


def to_long(study: ReaderStudy) -> pd.DataFrame:
    """The long table ``reader, modality, case, truth, rating`` of a study."""
    m, r, k = study.ratings.shape
    mi, ri, ki = np.meshgrid(np.arange(m), np.arange(r), np.arange(k), indexing="ij")
    return pd.DataFrame({
        "reader": ri.ravel() + 1, "modality": mi.ravel() + 1, "case": ki.ravel(),
        "truth": study.truth[ki.ravel()].astype(int), "rating": study.ratings.ravel(),
    })
