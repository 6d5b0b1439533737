"""Power of a split-plot study from a fully crossed pilot (G groups of J/G readers, each group reading K/G cases).

The pilot's OR components (``power.PilotVariance``: MS(TR), Var, Cov1, Cov2, Cov3 at K* cases) describe one
reader pair sharing cases. In the split-plot study (Obuchowski 2009; Obuchowski, Gallas & Hillis 2012) every
reader rates the K/G cases of their group's block in both modalities, so with s = K* G / K:

- Var, Cov1 (one reader) and Cov2, Cov3 within a group scale by s, as in a fully crossed study of K/G cases;
- Cov2 and Cov3 between groups are 0 (no shared case).

The analysis (``splitplot.py``) averages Cov2 and Cov3 over all reader pairs; of the J - 1 other readers of a
reader, n - 1 = J/G - 1 share its block, so the expected all-pair Cov2 - Cov3 is w s (Cov2 - Cov3) with
w = (J/G - 1) / (J - 1). With c = max(Cov2 - Cov3, 0) and var(TR) from the pilot (``PilotVariance.var_tr``,
truncated at 0), the fully crossed formulas of ``power.or_power`` become

    RRRC  D = var(TR) + s (Var - Cov1 + (J/G - 1) c)
          ddf = D^2 (J - 1) / (var(TR) + s (Var - Cov1 - w c))^2      (E MS(TR) in the denominator, Hillis 2011)
    FRRC  D = s (Var - Cov1 + (J/G - 1) c),  ddf = inf
    RRFC  D = var(TR) + s (Var - Cov1 - w c),  ddf = J - 1
    ncp = J d^2 / (2 D), power = P(F'(1, ddf; ncp) > F_{1-alpha}(1, ddf))

which is ``or_power`` for J readers and K/G cases with Cov2 replaced by Cov3 + w c (and MS(TR) moved so that
var(TR) is unchanged): :func:`split_plot_power` computes it that way. G = 1 is the fully crossed power. Against
a fully crossed study of the same K cases, the between-reader term (J - 1) c shrinks to (J/G - 1) c while the
case-driven terms grow G-fold: more cases per read buys power where readers disagree more than cases do.
:func:`simulate_split_plot` draws Roe-Metz split-plot studies; the tests check the predicted power against the
rejection rate of the split-plot analysis.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from readerstudy.analysis.errors import AnalysisInputError
from readerstudy.analysis.power import PilotVariance, or_power
from readerstudy.analysis.simulate import roe_metz
from readerstudy.analysis.splitplot import SplitPlotStudy


def split_plot_variance(v: PilotVariance, readers: int, groups: int) -> PilotVariance:
    """The pilot's components with Cov2 - Cov3 diluted to w max(Cov2 - Cov3, 0), w = (J/G - 1)/(J - 1).

    MS(TR) moves by the same amount as max(Cov2 - Cov3, 0) so that var(TR) stays the pilot's."""
    if readers < 2 or groups < 1 or readers % groups:
        raise AnalysisInputError(
            f"{readers} readers in {groups} groups: expected at least 2 readers, split evenly over 1 or more groups"
        )
    between = max(v.cov2 - v.cov3, 0.0)
    diluted = (readers // groups - 1) / (readers - 1) * between
    return replace(v, cov2=v.cov3 + diluted, ms_tr=v.ms_tr + between - diluted)


def split_plot_power(
    v: PilotVariance,
    readers: int,
    groups: int,
    cases: Any,
    effect: Any,
    analysis: str = "rrrc",
    alpha: float = 0.05,
) -> dict[str, np.ndarray]:
    """Power of ``groups`` groups of readers/groups readers, each group reading its own cases/groups cases.

    ``cases`` is the study's total K (numbers or arrays, broadcast with ``effect``); returns what
    ``power.or_power`` returns (power, ncp, ddf, fcrit, denominator), see the module docstring."""
    diluted = split_plot_variance(v, readers, groups)  # checks readers and groups
    return or_power(diluted, readers, np.asarray(cases, dtype=float) / groups, effect, analysis, alpha)


def simulate_split_plot(
    groups: int,
    readers_per_group: int,
    n_neg: int,
    n_pos: int,
    rng: np.random.Generator,
    mu: float = 1.5,
    delta: float = 0.0,
    variances: Mapping[str, float] | None = None,
) -> SplitPlotStudy:
    """A Roe-Metz split-plot study: each group an independent :func:`simulate.roe_metz` study of its readers on
    its own ``n_neg`` + ``n_pos`` cases (two modalities, ``delta`` added to modality 1's positives)."""
    blocks = [roe_metz(readers_per_group, 2, n_neg, n_pos, rng, mu, delta, variances) for _ in range(groups)]
    n_r, n_k = groups * readers_per_group, n_neg + n_pos
    ratings = np.full((2, n_r, groups * n_k), np.nan)
    for g, block in enumerate(blocks):
        ratings[:, g * readers_per_group : (g + 1) * readers_per_group, g * n_k : (g + 1) * n_k] = block.ratings
    return SplitPlotStudy(
        ["1", "2"],
        [str(r + 1) for r in range(n_r)],
        np.arange(groups * n_k, dtype=object),
        np.concatenate([b.truth for b in blocks]),
        ratings,
        np.repeat(np.arange(groups), readers_per_group),
        np.repeat(np.arange(groups), n_k),
    )
