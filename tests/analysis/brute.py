"""Slow, obviously-correct O(n_neg x n_pos) reference implementations, for the property tests only."""

import numpy as np


def psi(x: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """psi[i, j] for negative i, positive j of one rating row."""
    neg, pos = x[~truth], x[truth]
    return (pos[None, :] > neg[:, None]) + 0.5 * (pos[None, :] == neg[:, None])


def auc(x: np.ndarray, truth: np.ndarray) -> float:
    return float(psi(x, truth).mean())


def jackknife_cov(x: np.ndarray, truth: np.ndarray, clusters: np.ndarray | None = None) -> np.ndarray:
    """Recompute every AUC with each cluster (case) deleted."""
    clusters = np.arange(truth.size) if clusters is None else clusters
    units = np.unique(clusters)
    theta = np.array([[auc(row[clusters != c], truth[clusters != c]) for c in units] for row in x])
    dev = theta - theta.mean(axis=1, keepdims=True)
    return (units.size - 1) / units.size * dev @ dev.T


def unbiased_cov(x: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Gallas's M1..M4 moments summed explicitly over all pairs of pairs."""
    n0, n1 = int((~truth).sum()), int(truth.sum())
    s = [psi(row, truth) for row in x]
    out = np.empty((len(x), len(x)))
    for a in range(len(x)):
        for b in range(len(x)):
            sa, sb = s[a], s[b]
            m1 = (sa * sb).sum()
            same_neg = (sa.sum(axis=1) * sb.sum(axis=1)).sum() - m1  # same negative, different positive
            same_pos = (sa.sum(axis=0) * sb.sum(axis=0)).sum() - m1  # same positive, different negative
            neither = sa.sum() * sb.sum() - m1 - same_neg - same_pos
            m1 /= n0 * n1
            m3 = same_neg / (n0 * n1 * (n1 - 1))
            m2 = same_pos / (n1 * n0 * (n0 - 1))
            m4 = neither / (n0 * (n0 - 1) * n1 * (n1 - 1))
            out[a, b] = (m1 + (n0 - 1) * m2 + (n1 - 1) * m3 + (1 - n0 - n1) * m4) / (n0 * n1)
    return out


def obuchowski_cov(x: np.ndarray, truth: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Obuchowski (1997) clustered DeLong covariance, written out cluster by cluster."""
    units = np.unique(clusters)
    big_m, big_n = int(truth.sum()), int((~truth).sum())
    i10 = sum(truth[clusters == c].any() for c in units)
    i01 = sum((~truth)[clusters == c].any() for c in units)
    comps = []
    for row in x:
        theta = auc(row, truth)
        v10, v01 = [], []
        for c in units:
            pos = row[(clusters == c) & truth]
            neg = row[(clusters == c) & ~truth]
            all_neg, all_pos = row[~truth], row[truth]
            v10.append(sum(((p > all_neg) + 0.5 * (p == all_neg)).mean() for p in pos) - len(pos) * theta)
            v01.append(sum(((all_pos > q) + 0.5 * (all_pos == q)).mean() for q in neg) - len(neg) * theta)
        comps.append((np.array(v10), np.array(v01)))
    out = np.empty((len(x), len(x)))
    for a, (a10, a01) in enumerate(comps):
        for b, (b10, b01) in enumerate(comps):
            s10 = i10 / ((i10 - 1) * big_m) * (a10 * b10).sum()
            s01 = i01 / ((i01 - 1) * big_n) * (a01 * b01).sum()
            s11 = len(units) / (len(units) - 1) * ((a10 * b01).sum() + (a01 * b10).sum())
            out[a, b] = s10 / big_m + s01 / big_n + s11 / (big_m * big_n)
    return out
