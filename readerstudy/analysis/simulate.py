"""Roe-Metz (1997) simulated MRMC rating data: the one reader model behind the demo, the benchmark and the tests.

X_mrk = mu * truth_k + R_r + C_k + (TR)_mr + (TC)_mk + (RC)_rk + E_mrk. :func:`latent_scores` draws the six
random effects (always in that order, so a seed fixes every score); :func:`roe_metz` is the analysis-level
simulation, every effect drawn independently for the two truth states (as in Roe & Metz), mu for positives only,
``delta`` added to modality 0's positives (0 = the null hypothesis of equal modality AUCs). The demo's readers
(:mod:`readerstudy.results.simulate`) map the same latent scores to the 0-100 rating scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas and the data module only where a study is built or tabled
    import pandas as pd

    from readerstudy.analysis.data import ReaderStudy

# variance components (reader, reader x modality, case, case x modality, reader x case, error); the case terms
# sum to 1, the reader terms are small, as in the Roe-Metz / Hillis (2005) simulation settings
ROE_METZ_VARIANCES = {"R": 0.011, "TR": 0.011, "C": 0.1, "TC": 0.1, "RC": 0.2, "E": 0.6}


def latent_scores(
    rng: np.random.Generator,
    base: np.ndarray | float,
    n_modalities: int,
    n_readers: int,
    n_cases: int,
    variances: Mapping[str, float],
) -> np.ndarray:
    """``base`` plus the six Roe-Metz effects, shape ``(modalities, readers, cases)``.

    The effects are drawn and added in the order R, C, TR, TC, RC, E, one after the other onto ``base``: callers
    rely on that order for reproducible scores from a seed.
    """
    m, r, k = n_modalities, n_readers, n_cases
    sd = {key: np.sqrt(val) for key, val in variances.items()}
    x = base + rng.normal(0, sd["R"], (1, r, 1))
    x = x + rng.normal(0, sd["C"], (1, 1, k))
    x = x + rng.normal(0, sd["TR"], (m, r, 1))
    x = x + rng.normal(0, sd["TC"], (m, 1, k))
    x = x + rng.normal(0, sd["RC"], (1, r, k))
    return x + rng.normal(0, sd["E"], (m, r, k))


def roe_metz(
    n_readers: int,
    n_modalities: int,
    n_neg: int,
    n_pos: int,
    rng: np.random.Generator,
    mu: float = 1.5,
    delta: float = 0.0,
    variances: Mapping[str, float] | None = None,
) -> ReaderStudy:
    """One simulated fully crossed study (continuous ratings)."""
    from readerstudy.analysis.data import ReaderStudy

    v = {**ROE_METZ_VARIANCES, **(variances or {})}
    m, r, k = n_modalities, n_readers, n_neg + n_pos
    truth = np.arange(k) >= n_neg
    ratings = np.empty((m, r, k))
    for state, cases in ((False, ~truth), (True, truth)):
        x = latent_scores(rng, 0.0, m, r, int(cases.sum()), v)
        if state:
            x += mu
            x[0] += delta
        ratings[:, :, cases] = x
    return ReaderStudy(
        [str(i + 1) for i in range(m)], [str(j + 1) for j in range(r)], np.arange(k, dtype=object), truth, ratings
    )


def to_long(study: ReaderStudy) -> pd.DataFrame:
    """The long table ``reader, modality, case, truth, rating`` of a study."""
    import pandas as pd

    m, r, k = study.ratings.shape
    mi, ri, ki = np.meshgrid(np.arange(m), np.arange(r), np.arange(k), indexing="ij")
    return pd.DataFrame({
        "reader": ri.ravel() + 1, "modality": mi.ravel() + 1, "case": ki.ravel(),
        "truth": study.truth[ki.ravel()].astype(int), "rating": study.ratings.ravel(),
    })  # fmt: skip
