"""Obuchowski-Rockette analysis with Hillis (2007, 2008) degrees of freedom.

Input: the t x r matrix of reader AUCs (modality x reader) and their covariance (modality-major, G = t*r).
RRRC: random readers and cases; FRRC: fixed readers, random cases; RRFC: random readers, fixed cases.
Formulas follow the OR-DBM MRMC 2.51 (Iowa) output, MRMCaov and RJafroc; where those disagree (FRRC with
Cov2 < Cov3) ``frrc_truncate`` picks the convention, see the README.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np

from readerstudy.analysis import dist

ANALYSES = ("rrrc", "frrc", "rrfc")


def _div(a: float, b: float) -> float:
    """a / b, NaN where b is 0 (reported as null)."""
    return a / b if b != 0 else math.nan


def _pos(a: float) -> float:
    """max(a, 0); an undefined (NaN) covariance only occurs where its coefficient is 0 (one reader)."""
    return a if a > 0 else 0.0


def _sqrt(a: float) -> float:
    return math.sqrt(a) if a >= 0 else math.nan


def t_test(estimate: float, se: float, df: float, alpha: float) -> dict:
    """Two-sided t test and CI; df = inf gives the normal (z) version."""
    stat = _div(estimate, se)
    half = dist.t_ppf(1 - alpha / 2, df) * se
    return {
        "estimate": estimate,
        "se": se,
        "df": None if math.isinf(df) else df,
        "t": stat,
        "ci": [estimate - half, estimate + half],
        "p": 2 * dist.t_sf(abs(stat), df) if not math.isnan(stat) else math.nan,
    }


def z_test(estimate: float, se: float, alpha: float) -> dict:
    out = t_test(estimate, se, math.inf, alpha)
    out["z"] = out.pop("t")
    return out


def auc_ci(auc: float, se: float, df: float, alpha: float) -> dict:
    """Single-modality AUC with its CI clipped to [0, 1] (as MRMCaov does; AUC cannot leave it)."""
    out = t_test(auc, se, df, alpha)
    lo, hi = out["ci"]
    return {"auc": auc, "se": se, "df": out["df"], "ci": [min(max(lo, 0.0), 1.0), min(max(hi, 0.0), 1.0)]}


def _f_sf(f: float, df1: float, df2: float) -> float:
    if math.isnan(f) or math.isnan(df2):
        return math.nan
    return dist.f_sf(f, df1, df2)  # F(df1, inf) = chi2(df1) / df1


class ORComponents:
    """Mean squares of the reader AUCs and the OR error covariances Cov1-Cov3."""

    def __init__(self, auc: np.ndarray, cov: np.ndarray) -> None:
        self.auc = np.asarray(auc, dtype=float)
        self.t, self.r = self.auc.shape
        t, r = self.t, self.r
        self.modality_auc = self.auc.mean(axis=1)
        reader_auc = self.auc.mean(axis=0)
        grand = self.auc.mean()
        resid = self.auc - self.modality_auc[:, None] - reader_auc[None, :] + grand
        self.ms_t = r * float(((self.modality_auc - grand) ** 2).sum()) / (t - 1) if t > 1 else math.nan
        self.ms_r = t * float(((reader_auc - grand) ** 2).sum()) / (r - 1) if r > 1 else math.nan
        self.ms_tr = float((resid**2).sum()) / ((t - 1) * (r - 1)) if t > 1 and r > 1 else math.nan
        self.ms_t_by_reader = (
            ((self.auc - reader_auc[None, :]) ** 2).sum(axis=0) / (t - 1) if t > 1 else np.full(r, math.nan)
        )
        self.ms_r_by_modality = (
            ((self.auc - self.modality_auc[:, None]) ** 2).sum(axis=1) / (r - 1) if r > 1 else np.full(t, math.nan)
        )

        g = np.arange(t * r)
        modality, reader = g // r, g % r
        same_m = modality[:, None] == modality[None, :]
        same_r = reader[:, None] == reader[None, :]
        cov = np.asarray(cov, dtype=float)

        def mean(mask: np.ndarray) -> float:
            return float(cov[mask].mean()) if mask.any() else math.nan

        self.var_error = float(np.diag(cov).mean())
        self.cov1 = mean(same_r & ~same_m)  # same reader, different modality
        self.cov2 = mean(same_m & ~same_r)  # different reader, same modality
        self.cov3 = mean(~same_m & ~same_r)  # different reader and modality
        self.var_by_modality = [mean(same_m & same_r & (modality[:, None] == i)) for i in range(t)]
        self.cov2_by_modality = [mean(same_m & ~same_r & (modality[:, None] == i)) for i in range(t)]
        self.var_by_reader = [mean(same_m & same_r & (reader[:, None] == j)) for j in range(r)]
        self.cov1_by_reader = [mean(same_r & ~same_m & (reader[:, None] == j)) for j in range(r)]

    def var_components(self) -> dict:
        """OR variance components (untruncated ANOVA estimates: they can be negative) and r1-r3."""
        var_tr = self.ms_tr - self.var_error + self.cov1 + self.cov2 - self.cov3
        var_r = (self.ms_r - self.ms_tr) / self.t - self.cov1 + self.cov3
        return {
            "var_r": var_r,
            "var_tr": var_tr,
            "cov1": self.cov1,
            "cov2": self.cov2,
            "cov3": self.cov3,
            "var_error": self.var_error,
            "r1": _div(self.cov1, self.var_error),
            "r2": _div(self.cov2, self.var_error),
            "r3": _div(self.cov3, self.var_error),
        }

    def anova(self) -> dict:
        return {
            "ms_t": self.ms_t,
            "ms_r": self.ms_r,
            "ms_tr": self.ms_tr,
            "ms_r_by_modality": [float(v) for v in self.ms_r_by_modality],
            "ms_t_by_reader": [float(v) for v in self.ms_t_by_reader],
        }


def _pairs(c: ORComponents, modalities: list[str]) -> list[tuple[list[str], float]]:
    """(["A", "B"], AUC_A - AUC_B) for every pair, first-listed minus second, modalities in sorted order."""
    return [
        ([modalities[i], modalities[k]], float(c.modality_auc[i] - c.modality_auc[k]))
        for i, k in combinations(range(c.t), 2)
    ]


def rrrc(c: ORComponents, modalities: list[str], alpha: float = 0.05) -> dict:
    """Random readers, random cases: Hillis (2008) F test with ddf_H, and single-modality ddf_H_single."""
    t, r = c.t, c.r
    denominator = c.ms_tr + r * _pos(c.cov2 - c.cov3)
    f = _div(c.ms_t, denominator)
    df2 = _div(denominator**2, c.ms_tr**2 / ((t - 1) * (r - 1))) if t > 1 else math.nan
    if t > 1 and c.ms_tr == 0:
        df2 = math.inf
    se = _sqrt(2 / r * denominator)
    differences = [{"modalities": names, **t_test(est, se, df2, alpha)} for names, est in _pairs(c, modalities)]
    single = {}
    for i, name in enumerate(modalities):
        ms_r, cov2 = float(c.ms_r_by_modality[i]), _pos(c.cov2_by_modality[i])
        den_i = ms_r + r * cov2
        df_i = math.inf if ms_r == 0 else den_i**2 / (ms_r**2 / (r - 1))
        single[name] = {
            **auc_ci(float(c.modality_auc[i]), _sqrt(den_i / r), df_i, alpha),
            "ms_r": ms_r,
            "cov2": c.cov2_by_modality[i],
        }
    return {
        "f": f,
        "df1": t - 1,
        "df2": df2,
        "p": _f_sf(f, t - 1, df2),
        "denominator": denominator,
        "differences": differences,
        "single": single,
    }


def frrc(
    c: ORComponents, modalities: list[str], readers: list[str], alpha: float = 0.05, truncate: bool = True
) -> dict:
    """Fixed readers, random cases: chi-square test, z-based differences, per-reader differences.

    ``truncate`` uses max(Cov2 - Cov3, 0) in the error term like the Iowa program and RJafroc (default);
    False uses Cov2 - Cov3 as is, like MRMCaov.
    """
    t, r = c.t, c.r
    cov23 = c.cov2 - c.cov3
    between_readers = (_pos(cov23) if truncate else cov23) if r > 1 else 0.0
    denominator = c.var_error - c.cov1 + (r - 1) * between_readers
    chisq = _div((t - 1) * c.ms_t, denominator)
    p = dist.chi2_sf(chisq, t - 1) if t > 1 and not math.isnan(chisq) else math.nan
    se = _sqrt(2 / r * denominator)
    differences = [{"modalities": names, **z_test(est, se, alpha)} for names, est in _pairs(c, modalities)]
    single = {}
    for i, name in enumerate(modalities):
        var_i = c.var_by_modality[i] + (r - 1) * _pos(c.cov2_by_modality[i])
        single[name] = {
            **auc_ci(float(c.modality_auc[i]), _sqrt(var_i / r), math.inf, alpha),
            "var_error": c.var_by_modality[i],
            "cov2": c.cov2_by_modality[i],
        }
    per_reader = []
    for j, reader in enumerate(readers):
        se_j = _sqrt(2 * (c.var_by_reader[j] - c.cov1_by_reader[j]))
        for i, k in combinations(range(t), 2):
            est = float(c.auc[i, j] - c.auc[k, j])
            per_reader.append(
                {
                    "reader": reader,
                    "modalities": [modalities[i], modalities[k]],
                    **z_test(est, se_j, alpha),
                    "var_error": c.var_by_reader[j],
                    "cov1": c.cov1_by_reader[j],
                }
            )
    return {
        "chisq": chisq,
        "df": t - 1,
        "p": p,
        "denominator": denominator,
        "truncated": truncate,
        "differences": differences,
        "single": single,
        "per_reader": per_reader,
    }


def rrfc(c: ORComponents, modalities: list[str], alpha: float = 0.05) -> dict:
    """Random readers, fixed cases: the conventional modality x reader ANOVA (covariances unused)."""
    t, r = c.t, c.r
    df2 = (t - 1) * (r - 1)
    f = _div(c.ms_t, c.ms_tr)
    se = _sqrt(2 / r * c.ms_tr)
    differences = [{"modalities": names, **t_test(est, se, df2, alpha)} for names, est in _pairs(c, modalities)]
    single = {
        name: {
            **auc_ci(float(c.modality_auc[i]), _sqrt(float(c.ms_r_by_modality[i]) / r), r - 1, alpha),
            "ms_r": float(c.ms_r_by_modality[i]),
        }
        for i, name in enumerate(modalities)
    }
    return {
        "f": f,
        "df1": t - 1,
        "df2": df2,
        "p": _f_sf(f, t - 1, df2) if t > 1 else math.nan,
        "denominator": c.ms_tr,
        "differences": differences,
        "single": single,
    }
