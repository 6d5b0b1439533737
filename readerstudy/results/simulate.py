"""Simulated readers for demos: Roe-Metz-style latent scores mapped to the 0-100 rating scale.

x = mu * truth + effect[stratum] * truth * aided + R_r + C_k + TR_mr + TC_mk + RC_rk + E_mrk, each term normal with
the Roe-Metz variances; rating = round(100 * logistic(x - mu / 2)). The aided effect per stratum shifts positives'
scores in the aided modality only, so the true AUC gain grows with it.

Aided readers also weigh the DL output they are shown (``dl_probability``, ``dl_reliance`` = w): their log-odds
``x - mu / 2`` become ``(1 - w) * own + w * logit(p_DL)`` (weighted log-odds pooling, the usual model of taking
advice). A confident, correct DL output pulls the rating the right way (help); a confident wrong one pulls it the
wrong way (harm: a missed metastasis the reader would have called, a hemangioma called a metastasis). Cases
without a DL output are read on the reader's own score. Reading time is log-normal, shorter with DL by
``time_ratio``. For demonstrations only: the numbers describe the simulation, not a clinical result.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from readerstudy.analysis.simulate import latent_scores

# The demo's own variance components (larger reader and case terms than the Hillis settings); the model is
# readerstudy.analysis.simulate's.
VARIANCES = {"R": 0.05, "C": 0.6, "TR": 0.02, "TC": 0.1, "RC": 0.2, "E": 0.3}


@dataclass(frozen=True)
class SimulatedCase:
    case: int
    truth: int
    stratum: str


def simulate_ratings(
    rng: np.random.Generator,
    readers: Sequence[int],
    cases: Sequence[SimulatedCase],
    modalities: Sequence[tuple[int, bool]],  # (modality id, shows DL)
    *,
    mu: float = 1.8,
    aided_effect: Mapping[str, float] | None = None,
    median_seconds: float = 25.0,
    time_ratio: float = 0.85,
    dl_probability: Mapping[int, float] | None = None,
    dl_reliance: float = 0.0,
) -> dict[tuple[int, int, int], tuple[int, float]]:
    """(reader, case, modality) -> (rating 0-100, active seconds) for every cell of a fully crossed design.

    ``dl_probability``: case -> the DL probability aided readers are shown; ``dl_reliance`` (0-1): the weight they
    give it (0: the DL output changes nothing)."""
    if not 0.0 <= dl_reliance <= 1.0:
        raise ValueError(f"dl_reliance {dl_reliance}: expected 0 to 1")
    effect = aided_effect or {}
    n_r, n_k, n_m = len(readers), len(cases), len(modalities)
    truth = np.array([c.truth for c in cases], dtype=float)
    shift = np.array([effect.get(c.stratum, 0.0) for c in cases])
    aided = np.array([shows_dl for _, shows_dl in modalities], dtype=float)
    fixed = mu * truth[None, None, :] + (aided[:, None, None] * shift[None, None, :] * truth[None, None, :])
    x = latent_scores(rng, fixed, n_m, n_r, n_k, VARIANCES)
    if dl_probability and dl_reliance > 0:
        p = np.array([dl_probability.get(c.case, np.nan) for c in cases], dtype=float)
        shown = ~np.isnan(p)
        q = np.clip(p, 1e-3, 1 - 1e-3)
        dl_logit = np.log(q / (1 - q))
        for m in np.flatnonzero(aided > 0):
            own = x[m][:, shown] - mu / 2
            x[m][:, shown] = (1 - dl_reliance) * own + dl_reliance * dl_logit[shown][None, :] + mu / 2
    ratings = np.rint(100.0 / (1.0 + np.exp(-(x - mu / 2)))).astype(int)
    log_time = np.log(median_seconds) + np.log(time_ratio) * aided[:, None, None] + rng.normal(0, 0.4, x.shape)
    seconds = np.round(np.exp(log_time), 2)
    return {
        (readers[r], cases[k].case, modalities[m][0]): (int(ratings[m, r, k]), float(seconds[m, r, k]))
        for m in range(n_m)
        for r in range(n_r)
        for k in range(n_k)
    }


def parse_effects(text: str) -> dict[str, float]:
    """'<=10:0.1,10-30:0.6,>30:0.4' -> {'<=10': 0.1, '10-30': 0.6, '>30': 0.4}."""
    effects = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        label, sep, value = part.rpartition(":")
        if not sep or not label:
            raise ValueError(f"aided effect {part!r}: expected STRATUM:VALUE, e.g. 10-30:0.6")
        try:
            effects[label] = float(value)
        except ValueError:
            raise ValueError(f"aided effect {part!r}: {value!r} is not a number") from None
    return effects
