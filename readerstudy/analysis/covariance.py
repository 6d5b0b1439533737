"""Covariance of the reader x modality AUCs: jackknife, DeLong (Obuchowski 1997 when clustered), unbiased.

Rows g of the (G, K) rating matrix are modality-major (g = m * n_readers + r), as are the rows and columns
of the returned G x G matrices. ``clusters`` (K,) gives each case's patient code 0..C-1; None means every
case is its own cluster, which reduces each clustered formula to the classical one.
"""

from __future__ import annotations

import numpy as np

from readerstudy.analysis.auc import Placements, below_and_tied, placements
from readerstudy.analysis.errors import AnalysisInputError
from readerstudy.analysis.unbiased import unbiased_cov

COV_METHODS = ("jackknife", "delong", "unbiased")


def cluster_sums(values: np.ndarray, clusters: np.ndarray, n_clusters: int) -> np.ndarray:
    """Sum of each row of ``values`` (G, K) over the cases of each cluster -> (G, C)."""
    return np.stack([np.bincount(clusters, weights=row, minlength=n_clusters) for row in values])


def _clusters(p: Placements, clusters: np.ndarray | None) -> tuple[np.ndarray, int]:
    if clusters is None:
        return np.arange(p.truth.size), p.truth.size
    return clusters, int(clusters.max()) + 1


def within_cluster_psi(p: Placements, clusters: np.ndarray, n_clusters: int) -> np.ndarray:
    """Sum of psi over the positive-negative pairs inside each cluster, (G, C).

    Sorting by (cluster, rating) and counting negatives below each positive counts every negative of the
    earlier clusters too; those are subtracted.
    """
    key = clusters.astype(np.int64) * (int(p.rank.max()) + 1) + p.rank
    below, tied, _ = below_and_tied(key, p.truth)
    neg_per_cluster = np.bincount(clusters, weights=~p.truth, minlength=n_clusters)
    neg_in_earlier = np.concatenate(([0.0], np.cumsum(neg_per_cluster)[:-1]))
    within = np.where(p.truth, below - neg_in_earlier[clusters] + 0.5 * tied, 0.0)
    return cluster_sums(within, clusters, n_clusters)


def gram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b.T for a few long rows (G x K, K >> G) in one thread: OpenBLAS's threads, which gain nothing on a
    20 x 20 result, spin for up to a second when the machine is busy (measured on 2 cores under load)."""
    return np.einsum("ik,jk->ij", a, b)


def jackknife_pseudo_aucs(p: Placements, clusters: np.ndarray | None = None) -> np.ndarray:
    """AUCs with one cluster (case) left out, (G, C), in closed form from the placement values.

    Leaving out cluster c removes every pair with a case in c:
    theta_(-c) = (T - sum_{k in c} pair_sum_k + within_c) / ((n_pos - m_c) (n_neg - n_c)),
    where T is the total psi and within_c the psi of pairs inside c (counted twice in the sum).
    """
    clusters, n_c = _clusters(p, clusters)
    total = p.pair_sum[:, p.truth].sum(axis=1)
    removed = cluster_sums(p.pair_sum, clusters, n_c)
    if clusters.size != n_c:  # pairs within a cluster exist only when clusters hold several cases
        removed -= within_cluster_psi(p, clusters, n_c)
    pos_left = p.n_pos - np.bincount(clusters, weights=p.truth, minlength=n_c)
    neg_left = p.n_neg - np.bincount(clusters, weights=~p.truth, minlength=n_c)
    if (pos_left == 0).any() or (neg_left == 0).any():
        raise AnalysisInputError(
            "the jackknife needs at least two clusters (cases) holding positive cases and two holding negative cases"
        )
    return (total[:, None] - removed) / (pos_left * neg_left)


def jackknife_cov(p: Placements, clusters: np.ndarray | None = None) -> np.ndarray:
    """((C-1)/C) * sum_c (theta_(-c) - mean)(theta_(-c) - mean)^T over the C clusters (cases)."""
    theta = jackknife_pseudo_aucs(p, clusters)
    n_c = theta.shape[1]
    dev = theta - theta.mean(axis=1, keepdims=True)
    return (n_c - 1) / n_c * gram(dev, dev)


def delong_cov(p: Placements, clusters: np.ndarray | None = None) -> np.ndarray:
    """DeLong et al. (1988) covariance; with clusters the Obuchowski (1997) form.

    With V10_c, V01_c the placement sums of cluster c and m_c, n_c its positive/negative counts:
    S10 = I10/((I10-1) M) sum_c a_c a_c^T with a_c = V10_c - m_c theta (I10 clusters with positives, M positives),
    S01 likewise, S11 = I/(I-1) sum_c a_c b_c^T; cov = S10/M + S01/N + (S11 + S11^T)/(M N).
    Unclustered (one case per cluster) this is exactly S10/M + S01/N of DeLong.
    """
    clusters, n_c = _clusters(p, clusters)
    auc = p.auc[:, None]
    m_c = np.bincount(clusters, weights=p.truth, minlength=n_c)
    n_neg_c = np.bincount(clusters, weights=~p.truth, minlength=n_c)
    a = cluster_sums(np.where(p.truth, p.pair_sum, 0.0), clusters, n_c) / p.n_neg - m_c * auc
    b = cluster_sums(np.where(p.truth, 0.0, p.pair_sum), clusters, n_c) / p.n_pos - n_neg_c * auc
    i10, i01 = int((m_c > 0).sum()), int((n_neg_c > 0).sum())
    if i10 < 2 or i01 < 2:
        raise AnalysisInputError(
            "DeLong covariance needs at least two clusters (cases) with positive cases and two with negative cases"
        )
    big_m, big_n = p.n_pos, p.n_neg
    s10 = i10 / ((i10 - 1) * big_m) * gram(a, a)
    s01 = i01 / ((i01 - 1) * big_n) * gram(b, b)
    s11 = n_c / (n_c - 1) * gram(a, b)
    return s10 / big_m + s01 / big_n + (s11 + s11.T) / (big_m * big_n)


def auc_covariance(
    x: np.ndarray, truth: np.ndarray, method: str = "jackknife", clusters: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (G,) and their G x G covariance for rating rows ``x`` (G, K)."""
    if method not in COV_METHODS:
        raise AnalysisInputError(f"covariance method {method!r}: expected one of {list(COV_METHODS)}")
    p = placements(x, truth)
    if method == "jackknife":
        return p.auc, jackknife_cov(p, clusters)
    if method == "delong":
        return p.auc, delong_cov(p, clusters)
    if clusters is not None and np.unique(clusters).size != clusters.size:
        raise AnalysisInputError(
            "the unbiased covariance is defined for unclustered data only; "
            "use --cov jackknife or delong with a cluster column"
        )
    return p.auc, unbiased_cov(x, p)
