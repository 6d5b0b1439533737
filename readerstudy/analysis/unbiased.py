"""Gallas (2006) unbiased U-statistic covariance of AUCs, without forming any n_neg x n_pos matrix.

With psi^A_ij the kernel of AUC A for negative i / positive j, the unbiased estimator (MRMCaov
``unbiased()``, iMRMC "U-stat") is

    V_AB = (M1 + (N0-1) M2 + (N1-1) M3 + (1-N0-N1) M4) / (N0 N1)

with M1..M4 the unbiased means of psi^A psi^B over pairs sharing both cases / only the positive / only the
negative / neither. Writing a_i, b_j for the row/column sums of psi (the placement sums), centering
(a~ = a - N1 theta, b~ = b - N0 theta) and simplifying, every theta^A theta^B term cancels and

    V_AB = (sum_i a~^A_i a~^B_i + sum_j b~^A_j b~^B_j - Q~_AB) / (N0 N1 (N0-1) (N1-1)),
    Q~_AB = sum_ij psi^A_ij psi^B_ij - N0 N1 theta_A theta_B.

Only sum_ij psi^A psi^B needs more than placement values: with psi = (1[<] + 1[<=]) / 2 it is a quarter of
four bivariate dominance counts #{(i, j): x^A_i rel y^A_j and x^B_i rel y^B_j}, each counted in
O(K log^2 K) by a bottom-up merge over the cases ordered by reader A (no Fenwick tree needed in numpy).
"""

from __future__ import annotations

import numpy as np

from readerstudy.analysis.auc import Placements
from readerstudy.analysis.errors import AnalysisInputError


def _dominance_counts(a_key: np.ndarray, b_keys: np.ndarray, src: np.ndarray) -> np.ndarray:
    """For each row of ``b_keys``: #{(i src, j not src): a_i < a_j and b_i < b_j}.

    Keys are integers that never tie between a source and a target. Merge levels h = 1, 2, 4, ...: in the
    cases ordered by ``a_key``, blocks of 2h split into a left and right half; every (left source, right
    target) pair has a_i < a_j, so sorting each block by b and counting left sources before each right
    target counts each dominated pair exactly once over all levels.
    """
    order = np.argsort(a_key, kind="stable")
    src = src[order]
    b = b_keys[:, order].astype(np.int64)
    n = src.size
    span = int(b.max()) + 1
    position = np.arange(n)
    counts = np.zeros(b.shape[0])
    h = 1
    while h < n:
        block = position // (2 * h)
        left = (position // h) % 2 == 0
        by_b = np.argsort(block * span + b, axis=1)
        left_src = (src & left)[by_b]
        right_target = (~src & ~left)[by_b]
        before = np.cumsum(left_src, axis=1) - left_src
        block_start = np.take_along_axis(before, block[by_b] * (2 * h), axis=1)
        counts += ((before - block_start) * right_target).sum(axis=1)
        h *= 2
    return counts


def _keys(rank: np.ndarray, negative: np.ndarray, strict: bool) -> np.ndarray:
    """Integer keys where 'negative key < positive key' means x_neg < x_pos (strict) or <= (not strict)."""
    return 2 * rank + (negative if strict else ~negative)


def psi_products(rank: np.ndarray, truth: np.ndarray, g: int, tied_pairs: np.ndarray) -> np.ndarray:
    """sum_ij psi^g_ij psi^h_ij for h = g..G-1 (rows of ``rank``, dense ranks of the ratings)."""
    negative = ~truth
    later = rank[g:]
    n_later = later.shape[0]
    tied = np.flatnonzero(tied_pairs[g:] > 0)  # without positive-negative ties, < and <= count alike
    b_keys = np.concatenate([_keys(later, negative, True), _keys(later[tied], negative, False)])
    relations = (True, False) if tied_pairs[g] > 0 else (True,)
    total = np.zeros(n_later)
    for strict in relations:
        counts = _dominance_counts(_keys(rank[g], negative, strict), b_keys, negative)
        non_strict = counts[:n_later].copy()
        non_strict[tied] = counts[n_later:]
        total += (counts[:n_later] + non_strict) / 2
    return total / len(relations)


def unbiased_cov(x: np.ndarray, p: Placements) -> np.ndarray:
    """Gallas's unbiased covariance matrix of the AUCs of the rows of ``x`` (unclustered cases)."""
    n0, n1 = p.n_neg, p.n_pos
    if n0 < 2 or n1 < 2:
        raise AnalysisInputError("the unbiased covariance needs at least 2 positive and 2 negative cases")
    auc = p.auc
    b = p.pair_sum[:, p.truth] - n0 * auc[:, None]
    a = p.pair_sum[:, ~p.truth] - n1 * auc[:, None]
    n_rows = auc.size
    q = np.empty((n_rows, n_rows))
    for g in range(n_rows):
        q[g, g:] = psi_products(p.rank, p.truth, g, p.tied_pairs)
        q[g:, g] = q[g, g:]
    q_centered = q - n0 * n1 * np.outer(auc, auc)
    return (a @ a.T + b @ b.T - q_centered) / (n0 * n1 * (n0 - 1) * (n1 - 1))
