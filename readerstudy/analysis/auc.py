"""Empirical (Mann-Whitney) AUC from DeLong placement values, one sort per reader x modality.

All functions take ``x`` of shape (G, K): G = modality x reader rows, K cases, and ``truth`` (K,) bool.
psi(pos, neg) = 1 if pos > neg, 1/2 if tied, 0 otherwise; AUC = mean psi over all positive-negative pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Placements:
    """Per-case pair sums from which AUC, jackknife, DeLong and U-statistics all follow.

    ``pair_sum[g, k]`` = sum of psi over the pairs that case k takes part in (for a positive case: against
    every negative, i.e. n_neg * V10; for a negative case: against every positive, i.e. n_pos * V01).
    ``tied_pairs[g]`` = number of positive-negative pairs with equal ratings.
    ``rank[g, k]`` = dense rank of case k's rating (ties share a rank), for sorting by rating again.
    """

    truth: np.ndarray
    pair_sum: np.ndarray
    tied_pairs: np.ndarray
    rank: np.ndarray

    @property
    def n_pos(self) -> int:
        return int(self.truth.sum())

    @property
    def n_neg(self) -> int:
        return int(self.truth.size - self.truth.sum())

    @property
    def auc(self) -> np.ndarray:
        return self.pair_sum[:, self.truth].sum(axis=1) / (self.n_pos * self.n_neg)

    @property
    def v10(self) -> np.ndarray:
        """Placement of each positive case among the negatives, (G, n_pos)."""
        return self.pair_sum[:, self.truth] / self.n_neg

    @property
    def v01(self) -> np.ndarray:
        """Placement of each negative case among the positives, (G, n_neg)."""
        return self.pair_sum[:, ~self.truth] / self.n_pos


def below_and_tied(key: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each element: opposite-class elements strictly below it and tied with it, and its dense rank.

    One argsort per row; tie groups found on the sorted keys, class counts from cumulative sums.
    """
    g, k = key.shape
    order = np.argsort(key, axis=1)
    ks = np.take_along_axis(key, order, axis=1)
    pos = truth[order]
    new_group = np.ones((g, k), dtype=bool)
    new_group[:, 1:] = ks[:, 1:] != ks[:, :-1]
    idx = np.broadcast_to(np.arange(k), (g, k))
    start = np.maximum.accumulate(np.where(new_group, idx, 0), axis=1)
    last = np.ones((g, k), dtype=bool)
    last[:, :-1] = new_group[:, 1:]
    end = np.minimum.accumulate(np.where(last, idx, k)[:, ::-1], axis=1)[:, ::-1] + 1  # exclusive
    cum_pos = np.cumsum(pos, axis=1)
    pos_below = np.take_along_axis(cum_pos, start, axis=1) - np.take_along_axis(pos, start, axis=1)
    pos_tied = np.take_along_axis(cum_pos, end - 1, axis=1) - pos_below
    neg_below = start - pos_below
    neg_tied = (end - start) - pos_tied
    other_below = np.where(pos, neg_below, pos_below)
    other_tied = np.where(pos, neg_tied, pos_tied)
    dense = np.cumsum(new_group, axis=1) - 1

    inverse = np.empty_like(order)  # sorted position of each case
    np.put_along_axis(inverse, order, idx, axis=1)
    below, tied, rank = (np.take_along_axis(a, inverse, axis=1) for a in (other_below, other_tied, dense))
    return below, tied, rank


def placements(x: np.ndarray, truth: np.ndarray) -> Placements:
    """Placement values of every case for every row of ``x`` (O(K log K) per row)."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    truth = np.asarray(truth, dtype=bool)
    below, tied, rank = below_and_tied(x, truth)
    n_pos = int(truth.sum())
    # positive: #neg below + 1/2 #neg tied; negative: #pos above + 1/2 #pos tied
    pair_sum = np.where(truth, below + 0.5 * tied, n_pos - below - 0.5 * tied)
    tied_pairs = tied[:, truth].sum(axis=1)
    return Placements(truth, pair_sum, tied_pairs, rank)


def empirical_auc(x: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC of each row of ``x`` (ties count 1/2)."""
    return placements(x, truth).auc
