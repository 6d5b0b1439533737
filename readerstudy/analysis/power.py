"""Power and sample size of a two-modality MRMC study from a pilot (Hillis, Obuchowski & Berbaum 2011).

The pilot's reads give the Obuchowski-Rockette (OR) variance components of the empirical AUC; the pivotal study
with J readers and K cases is assumed to have the same components, with the case-driven ones scaled by K*/K
(K* = the pilot's cases). The reference is RJafroc 2.1.3 ``SsPowerGivenJK`` / ``SsSampleSizeKGivenJ`` with
``method = "OR"`` (Hillis et al. 2011, Acad Radiol 18:129, eqs. 9-10 and table 2; Hillis & Schartz 2018).

Pilot components (two modalities, J* readers, K* cases; see ``orh.ORComponents``): MS(TR), Var, Cov1, Cov2,
Cov3 from the AUC covariance (jackknife, DeLong or unbiased; clustered pilots delete or group whole patients), and

    var(TR) = max(MS(TR) - Var + Cov1 + max(Cov2 - Cov3, 0), 0)        (Hillis 2011 eq. 9, then truncated at 0)

With s = K*/K, c = max(Cov2 - Cov3, 0), an effect d (AUC difference) and alpha:

    RRRC  D = var(TR) + s (Var - Cov1 + (J - 1) c)
          ddf = D^2 (J - 1) / (var(TR) + s (Var - Cov1 - c))^2           (Hillis 2011 eq. 10)
          power = P(F'(1, ddf; ncp) > F_{1-alpha}(1, ddf))
    FRRC  D = s (Var - Cov1 + (J - 1) c),  power = P(chi2'(1; ncp) > chi2_{1-alpha}(1))   (F(1, inf); ddf None)
    RRFC  D = var(TR) + s (Var - Cov1 - c),  ddf = J - 1,  power as RRRC
    ncp = J d^2 / (2 D)

The power of the F tests (RRRC, RRFC) is computed as R's ``pf(fcrit, 1, ddf, ncp, lower.tail = FALSE)`` does,
and so as RJafroc reports it: the AS 226 / R84 series of the non-central beta (R's ``pnbeta``), started at the
Poisson weight floor(c - 7 sqrt(c)) (c = ncp/2) and stopped once its error bound is below 1e-9. That truncation
puts the power up to 1e-9 above the exact value; matching the field's reference to its last digit is worth more
than digits beyond 1e-9 that no plan uses. The exact value (``scipy.special.ncfdtr``, checked against mpmath in the
tests) is reported beside it as ``power_exact``. FRRC's chi-square power comes from ``scipy.special.chndtr``
(R's ``pchisq(ncp=)`` agrees with it to 1e-15 here). ncp, ddf and the critical value agree with RJafroc to 1e-15.

Sample size: the smallest integer K >= 2 whose power reaches the target, scanning K = 2, 3, ... as
``SsSampleSizeKGivenJ`` does (which stops at 2001 cases; here every K to 4096, then 0.1% steps to 10^7). For
RRRC and RRFC the power tends to a limit below 1 as K grows (D -> var(TR), ddf -> J - 1), and with few readers
RRRC's power can even peak above that limit and fall (ddf falls faster than ncp grows); a target that no K
reaches gives None with the largest power found. RJafroc stops when the power exceeds the target for RRRC and
when it reaches it otherwise; here reaching it is enough for all three (equality has probability zero).

Clustered pilots: K counts cases (lesions) with the pilot's mix of lesions per patient, so the number of
patients scales by the same factor K*/K. Strata: each stratum's components come from its own cases (cases
without a stratum join every stratum, as in ``analyse``); K is the pivotal study's total with the pilot's
stratum mix, so a stratum holding K*_s pilot cases gets K K*_s/K* cases and its scale factor is again K*/K.
Holm over m strata: any hypothesis with p <= alpha/m is rejected by Holm's first step, so the power at alpha/m
(Bonferroni) is a lower bound of the Holm power, and the unadjusted power at alpha an upper bound. Strata are
planned on the lower bound (the sample size guarantees the target whatever the other strata show); a
simulation would need the joint distribution of the strata's statistics (they share the negative cases and
the readers), which a pilot estimates poorly.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from readerstudy.analysis.covariance import COV_METHODS, auc_covariance
from readerstudy.analysis.data import ReaderStudy, build_study, case_strata, check_both_classes, read_ratings
from readerstudy.analysis.errors import AnalysisInputError
from readerstudy.analysis.orh import ANALYSES, ORComponents

MAX_CASES = 10_000_000  # where the sample-size search gives up (RJafroc stops at 2001)
_DENSE_CASES = 4096  # the sample-size search tries every K up to here, then a grid of 0.1% steps
_GRID_STEP = 0.001
R_PF_ERRMAX = 1e-9  # R's pnbeta(): the series stops when its remaining error bound is below this
R_PF_ITRMAX = 10_000  # and after at most this many terms past its starting point
_R_PF_CHISQ_DF2 = 1e8  # R's pnf(): above this ddf the F is its chi-square limit

Source: TypeAlias = pd.DataFrame | str | os.PathLike


def _special() -> Any:
    """scipy.special, imported on first use (scipy.stats is never needed here and costs far more)."""
    import scipy.special

    return scipy.special


@dataclass(frozen=True)
class PilotVariance:
    """OR variance components of a two-modality pilot (what the power formulas need, see the module docstring)."""

    n_readers: int
    n_cases: int
    n_positive: int
    n_negative: int
    n_clusters: int | None
    modalities: tuple[str, str]
    modality_auc: tuple[float, float]
    cov_method: str
    ms_tr: float
    var_error: float
    cov1: float
    cov2: float
    cov3: float
    var_r: float  # the untruncated ANOVA estimate, as analyse() reports it; two-modality power does not use it

    @property
    def var_tr(self) -> float:
        """Hillis 2011 eq. 9: MS(TR) - Var + Cov1 + max(Cov2 - Cov3, 0), before the truncation at 0."""
        return self.ms_tr - self.var_error + self.cov1 + max(self.cov2 - self.cov3, 0.0)

    @property
    def observed_effect(self) -> float:
        """|AUC difference| of the two modalities in the pilot (for reference: plan with a clinical effect)."""
        return abs(self.modality_auc[1] - self.modality_auc[0])

    def as_dict(self) -> dict:
        return {
            "n_readers": self.n_readers,
            "n_cases": self.n_cases,
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
            "n_clusters": self.n_clusters,
            "cov_method": self.cov_method,
            "modalities": list(self.modalities),
            "modality_auc": dict(zip(self.modalities, self.modality_auc, strict=True)),
            "observed_effect": self.observed_effect,
            "var_components": {
                "var_r": self.var_r,
                "var_tr": self.var_tr,
                "var_tr_used": max(self.var_tr, 0.0),
                "cov1": self.cov1,
                "cov2": self.cov2,
                "cov3": self.cov3,
                "var_error": self.var_error,
                "ms_tr": self.ms_tr,
            },
        }


def _two_modalities(study: ReaderStudy, modalities: Sequence[str] | None) -> ReaderStudy:
    if modalities is None:
        if len(study.modalities) != 2:
            raise AnalysisInputError(
                f"the pilot has {len(study.modalities)} modalities {study.modalities}; power is computed for "
                "two: name them (modalities=(A, B))"
            )
        return study
    names = [str(m) for m in modalities]
    unknown = [m for m in names if m not in study.modalities]
    if len(names) != 2 or names[0] == names[1] or unknown:
        raise AnalysisInputError(
            f"modalities {names}: expected two different modalities of the pilot {study.modalities}"
        )
    index = [study.modalities.index(m) for m in names]
    return replace(study, modalities=names, ratings=study.ratings[index])


def study_variance(
    study: ReaderStudy, cov: str = "jackknife", modalities: Sequence[str] | None = None, what: str = "the pilot"
) -> PilotVariance:
    """The OR variance components of an already validated :class:`ReaderStudy` (two modalities)."""
    if cov not in COV_METHODS:
        raise AnalysisInputError(f"covariance method {cov!r}: expected one of {list(COV_METHODS)}")
    study = _two_modalities(study, modalities)
    check_both_classes(study, what)
    n_m, n_r, n_k = study.ratings.shape
    if n_r < 2:
        raise AnalysisInputError(f"{what} has {n_r} reader; the variance components need at least 2 readers")
    auc, covariance = auc_covariance(study.ratings.reshape(n_m * n_r, n_k), study.truth, cov, study.clusters)
    comps = ORComponents(auc.reshape(n_m, n_r), covariance)
    return PilotVariance(
        n_readers=n_r,
        n_cases=n_k,
        n_positive=study.n_positive,
        n_negative=study.n_negative,
        n_clusters=study.n_clusters,
        modalities=(study.modalities[0], study.modalities[1]),
        modality_auc=(float(comps.modality_auc[0]), float(comps.modality_auc[1])),
        cov_method=cov,
        ms_tr=comps.ms_tr,
        var_error=comps.var_error,
        cov1=comps.cov1,
        cov2=comps.cov2,
        cov3=comps.cov3,
        var_r=comps.var_components()["var_r"],
    )


def pilot_variance(
    source: Source, cov: str = "jackknife", cluster: str | None = None, modalities: Sequence[str] | None = None
) -> PilotVariance:
    """OR variance components of a pilot: a long ratings table (DataFrame or CSV path) as :func:`analyse` reads."""
    return study_variance(build_study(read_ratings(source, cluster), cluster), cov, modalities)


# --- the formulas, vectorised over readers, cases and effect --------------------------------------------------


def or_power(
    v: PilotVariance,
    readers: Any,
    cases: Any,
    effect: Any,
    analysis: str = "rrrc",
    alpha: float = 0.05,
) -> dict[str, np.ndarray]:
    """Power, ncp, ddf (inf for FRRC), critical value and denominator D, broadcast over readers x cases x effect.

    ``cases`` may be float (a stratum's share of a total) or inf (the limit of many cases). A D <= 0 (possible
    for RRFC when Var - Cov1 < Cov2 - Cov3) gives NaN."""
    j = np.asarray(readers, dtype=float)
    k = np.asarray(cases, dtype=float)
    d = np.asarray(effect, dtype=float)
    scale = v.n_cases / k
    between = max(v.cov2 - v.cov3, 0.0)
    within = v.var_error - v.cov1
    var_tr = max(v.var_tr, 0.0)
    shape = np.broadcast_shapes(j.shape, k.shape, d.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        if analysis == "frrc":
            den = scale * (within + (j - 1) * between)
            ddf = np.full(shape, math.inf)
        elif analysis == "rrrc":
            den = var_tr + scale * (within + (j - 1) * between)
            ddf = den**2 * (j - 1) / (var_tr + scale * (within - between)) ** 2
        elif analysis == "rrfc":
            den = var_tr + scale * (within - between)
            ddf = j - 1
        else:
            raise AnalysisInputError(f"analysis {analysis!r}: expected one of {list(ANALYSES)}")
        den = np.broadcast_to(np.where(den > 0, den, math.nan), shape)
        ddf = np.broadcast_to(np.where(np.isnan(den), math.nan, ddf), shape)
        ncp = j * d**2 / (2 * den)
    fcrit, power, exact = _f_power(ncp, ddf, alpha)
    return {"power": power, "power_exact": exact, "ncp": ncp, "ddf": ddf, "fcrit": fcrit, "denominator": den}


def r_noncentral_f_sf(f: Any, df1: float, df2: Any, ncp: Any) -> np.ndarray:
    """P(F'(df1, df2; ncp) > f) as R's ``pf(f, df1, df2, ncp, lower.tail = FALSE)`` computes it (pnf -> pnbeta2).

    The AS 226 / R84 series of the non-central beta (R's ``pnbeta_raw``, errmax 1e-9, itrmax 10 000),
    vectorised: every element runs the same recursion and leaves it when its own error bound stops it. Where
    df2 > 1e8 R uses the chi-square limit, and so does this. NaN where an input is not finite or ncp < 0."""
    sp = _special()
    f, df2, ncp = (np.asarray(v, dtype=float) for v in np.broadcast_arrays(f, df2, ncp))
    out = np.full(f.shape, math.nan)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(f) & np.isfinite(df2) & np.isfinite(ncp) & (ncp >= 0) & (df2 > 0)
        chisq = ok & (df2 > _R_PF_CHISQ_DF2)
        out[chisq] = 1.0 - sp.chndtr(f[chisq] * df1, df1, ncp[chisq])
        ok &= ~chisq
        out[ok & (f <= 0)] = 1.0
        ok &= f > 0
    idx = np.flatnonzero(ok)
    fi, b, c = f.ravel()[idx], df2.ravel()[idx] / 2, ncp.ravel()[idx] / 2
    a = df1 / 2
    y = df1 / (2 * b) * fi
    x, o_x = y / (1 + y), 1 / (1 + y)
    x0 = np.floor(np.maximum(c - 7 * np.sqrt(c), 0.0))
    a0 = a + x0
    temp = sp.betainc(a0, b, x)
    lbeta = sp.gammaln(a0) + sp.gammaln(b) - sp.gammaln(a0 + b)
    gx = np.exp(a0 * np.log(x) + b * np.where(x < 0.5, np.log1p(-x), np.log(o_x)) - lbeta - np.log(a0))
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(a0 > a, np.exp(-c + x0 * np.log(c) - sp.gammaln(x0 + 1)), np.exp(-c))
    sumq = 1.0 - q
    ans = q * temp
    j = x0.copy()
    live = np.arange(idx.size)
    while live.size:  # a do-while, as in R: every element takes at least one step
        jl = j[live] + 1
        j[live] = jl
        temp[live] -= gx[live]
        gx[live] *= x[live] * (a + b[live] + jl - 1) / (a + jl)
        q[live] *= c[live] / jl
        sumq[live] -= q[live]
        ans[live] += temp[live] * q[live]
        errbd = (temp[live] - gx[live]) * sumq[live]
        live = live[(errbd > R_PF_ERRMAX) & (jl < R_PF_ITRMAX + x0[live])]
    out.ravel()[idx] = 1.0 - np.minimum(ans, 1.0)
    return out


def _f_power(ncp: np.ndarray, ddf: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Critical value, R's P(F'(1, ddf; ncp) > it) and the exact one; ddf = inf is the chi-square(1) limit."""
    sp = _special()
    ncp, ddf = np.broadcast_arrays(np.asarray(ncp, dtype=float), np.asarray(ddf, dtype=float))
    finite = np.isfinite(ddf)
    safe_ddf = np.where(finite, ddf, 1.0)  # a placeholder where ddf is inf (chi-square below) or NaN (masked)
    chi_crit = float(sp.chdtri(1.0, alpha))
    fcrit = np.where(finite, sp.fdtri(1.0, safe_ddf, 1.0 - alpha), chi_crit)
    fcrit = np.where(np.isnan(ddf), math.nan, fcrit)
    with np.errstate(invalid="ignore"):
        cdf = sp.ncfdtr(1.0, safe_ddf, ncp, fcrit)
        lost = np.isnan(cdf) & np.isfinite(ncp) & finite
        if lost.any():
            # ncfdtr gives NaN where the CDF underflows (ncp above ~1200). The CDF falls as ncp grows, so its
            # value at ncp/2 bounds it; below 1e-16 the power is 1 to double precision.
            bound = sp.ncfdtr(1.0, safe_ddf, ncp / 2, fcrit)
            cdf = np.where(lost & (bound < 1e-16), 0.0, cdf)
        power_f = 1.0 - cdf
        power_chi = 1.0 - sp.chndtr(chi_crit, 1.0, ncp)
        power_r = r_noncentral_f_sf(np.where(finite, fcrit, math.nan), 1.0, safe_ddf, ncp)
    undefined = np.isnan(ddf) | np.isnan(ncp)
    certain = np.isinf(ncp)  # no error variance left: certain rejection

    def finish(power_of_f: np.ndarray) -> np.ndarray:
        power = np.where(finite, power_of_f, power_chi)
        return np.where(undefined, math.nan, np.where(certain, 1.0, power))

    return fcrit, finish(power_r), finish(power_f)


# --- checks ---------------------------------------------------------------------------------------------------


def _analyses(analysis: str | Iterable[str]) -> tuple[str, ...]:
    names = analysis.split(",") if isinstance(analysis, str) else list(analysis)
    names = [str(a).strip().lower() for a in names]
    unknown = [a for a in names if a not in ANALYSES]
    if unknown or not names:
        raise AnalysisInputError(f"analysis {names}: expected one or more of {list(ANALYSES)}")
    return tuple(dict.fromkeys(names))


def _count(value: object, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < least:
        raise AnalysisInputError(f"{name} {value!r}: expected a whole number >= {least}")
    return int(value)


def _counts(values: Iterable[object], name: str, least: int) -> list[int]:
    out = [_count(v, name, least) for v in values]
    if not out:
        raise AnalysisInputError(f"{name}: expected at least one value")
    return out


def _real(value: object) -> float:
    """A Python or numpy number as float; NaN for anything else (a bool, a string, None)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return math.nan
    return float(value)


def _fraction(value: object, name: str) -> float:
    x = _real(value)
    if not 0 < x < 1:
        raise AnalysisInputError(f"{name} {value!r}: expected a number between 0 and 1 (exclusive)")
    return x


def _effect(value: object, name: str = "effect") -> float:
    x = _real(value)
    if not abs(x) < 1:
        raise AnalysisInputError(f"{name} {value!r}: expected an AUC difference, a finite number between -1 and 1")
    return x


# --- results as plain dicts -----------------------------------------------------------------------------------


def _num(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _entry(arrays: dict[str, np.ndarray], analysis: str, index: Any = ()) -> dict:
    """One point of :func:`or_power`'s arrays as JSON-ready numbers (ddf None for FRRC, None where undefined)."""
    keys = ("power", "power_exact", "ncp", "ddf", "fcrit", "denominator")
    out: dict[str, Any] = {k: _num(arrays[k][index]) for k in keys}
    if analysis == "frrc":
        out["ddf"] = None
    if out["power"] is None:
        out["error"] = "the pilot's variance components leave no positive error variance for this analysis"
    return out


def _limit_power(v: PilotVariance, readers: int, effect: float, analysis: str, alpha: float) -> float:
    """Power as K grows without bound: D -> var(TR) (0 for FRRC) and ddf -> J - 1 (RRRC, RRFC)."""
    var_tr = 0.0 if analysis == "frrc" else max(v.var_tr, 0.0)
    if effect == 0:
        return alpha
    if var_tr == 0:
        return 1.0
    ncp = np.array(readers * effect**2 / (2 * var_tr))
    return float(_f_power(ncp, np.array(readers - 1.0), alpha)[1])


def _search_points() -> tuple[np.ndarray, np.ndarray]:
    """Every K in 2.._DENSE_CASES, then a geometric grid (steps of 0.1%) up to MAX_CASES."""
    dense = np.arange(2, _DENSE_CASES + 1)
    steps = math.ceil(math.log(MAX_CASES / _DENSE_CASES) / math.log1p(_GRID_STEP))
    grid = np.unique(np.round(_DENSE_CASES * (1 + _GRID_STEP) ** np.arange(1, steps + 1)).astype(np.int64))
    return dense, grid[grid <= MAX_CASES]


def _smallest_cases(
    v: PilotVariance, readers: int, effect: float, analysis: str, alpha: float, target: float, share: float = 1.0
) -> dict:
    """The smallest total K >= 2 whose power reaches ``target`` (a stratum holds ``share`` of the K cases).

    The power need not rise with K all the way (RRRC with few readers: ddf falls towards J - 1 and the power
    can peak above its K -> inf limit), so every K is tried up to _DENSE_CASES (in blocks of 128, 384, 1536 and
    the rest, stopping at the first block that reaches the target), then a 0.1% grid up to MAX_CASES, refined to
    every K below the first grid point that reaches the target."""
    out: dict[str, Any] = {"cases": None, "target_power": target}
    out["power_limit"] = _limit_power(v, readers, effect, analysis, alpha)
    dense, grid = _search_points()
    best = out["power_limit"]
    for ks in (dense[:128], dense[128:512], dense[512:2048], dense[2048:], grid):
        arrays = or_power(v, readers, ks * share, effect, analysis, alpha)
        power = arrays["power"]
        reached = np.flatnonzero(power >= target)
        if reached.size:
            i = int(reached[0])
            if ks is grid:  # the first K past the previous grid point that reaches the target
                between = np.arange((ks[i - 1] if i else dense[-1]) + 1, ks[i] + 1)
                arrays = or_power(v, readers, between * share, effect, analysis, alpha)
                ks, i = between, int(np.flatnonzero(arrays["power"] >= target)[0])
            return {**_entry(arrays, analysis, i), **out, "cases": int(ks[i])}
        if np.isfinite(power).any():
            best = max(best, float(np.nanmax(power)))
    out["max_power"] = best
    out["error"] = (
        f"{analysis.upper()} cannot reach power {target:g} with {readers} readers and effect {effect:g}: "
        f"its power reaches at most {best:.4f} (up to {MAX_CASES} cases; {out['power_limit']:.4f} as cases grow "
        "without bound, where reader variability var(TR) remains); add readers"
    )
    return out


# --- strata ---------------------------------------------------------------------------------------------------


def _strata_variances(
    df: pd.DataFrame,
    study: ReaderStudy,
    column: str,
    cov: str,
    modalities: Sequence[str] | None,
) -> dict[str, PilotVariance | str]:
    """Each stratum's components (cases without a stratum join every stratum), or the reason it has none."""
    labels, case_stratum = case_strata(df, column)
    out: dict[str, PilotVariance | str] = {}
    for code, label in enumerate(labels):
        keep = (case_stratum == code) | (case_stratum == -1)
        try:
            out[label] = study_variance(study.subset(keep), cov, modalities, what=f"stratum {column}={label!r}")
        except AnalysisInputError as exc:
            out[label] = str(exc)
    return out


def _holm_note(m: int, alpha: float) -> dict:
    return {
        "strata": m,
        "alpha": alpha / m if m else None,
        "approach": "each stratum at alpha/m: Holm's first step, a lower bound of its Holm power "
        "(power_unadjusted, at alpha, is the upper bound)",
    }


# --- the public API -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pilot:
    overall: PilotVariance
    strata: dict[str, PilotVariance | str] | None
    column: str | None


def _pilot(
    source: Source | PilotVariance,
    cov: str,
    cluster: str | None,
    stratum: str | None,
    modalities: Sequence[str] | None,
) -> _Pilot:
    if isinstance(source, PilotVariance):
        if stratum is not None:
            raise AnalysisInputError("strata need the pilot's reads, not its variance components")
        return _Pilot(source, None, None)
    if cov not in COV_METHODS:
        raise AnalysisInputError(f"covariance method {cov!r}: expected one of {list(COV_METHODS)}")
    df = read_ratings(source, cluster, stratum)
    study = build_study(df, cluster)
    overall = study_variance(study, cov, modalities)
    strata = None if stratum is None else _strata_variances(df, study, stratum, cov, modalities)
    return _Pilot(overall, strata, stratum)


def _stratum_effects(pilot: _Pilot, effect: float, stratum_effects: Mapping[str, float] | None) -> dict[str, float]:
    labels = list(pilot.strata or {})
    given = dict(stratum_effects or {})
    unknown = [s for s in given if s not in labels]
    if unknown:
        raise AnalysisInputError(f"stratum_effects for {unknown}: the pilot's strata are {labels}")
    return {s: _effect(given.get(s, effect), f"effect of stratum {s!r}") for s in labels}


def _header(pilot: _Pilot, readers: int, effect: float, alpha: float, names: tuple[str, ...]) -> dict:
    return {
        "pilot": pilot.overall.as_dict(),
        "readers": readers,
        "effect": effect,
        "alpha": alpha,
        "analyses": list(names),
    }


def _strata_power(
    pilot: _Pilot, names: tuple[str, ...], readers: int, cases: int, effects: dict[str, float], alpha: float
) -> dict:
    strata = pilot.strata or {}
    m = sum(isinstance(v, PilotVariance) for v in strata.values())
    out: dict[str, dict] = {}
    for label, v in strata.items():
        if not isinstance(v, PilotVariance):
            out[label] = {"error": v}
            continue
        share = v.n_cases / pilot.overall.n_cases
        row: dict[str, Any] = {"pilot": v.as_dict(), "share": share, "cases": cases * share, "effect": effects[label]}
        for name in names:
            held = or_power(v, readers, cases * share, effects[label], name, alpha / m)
            free = or_power(v, readers, cases * share, effects[label], name, alpha)
            row[name] = _entry(held, name) | {"power_unadjusted": _num(free["power"])}
        out[label] = row
    return {"stratum_column": pilot.column, "strata": out, "holm": _holm_note(m, alpha)}


def _strata_cases(
    pilot: _Pilot, names: tuple[str, ...], readers: int, target: float, effects: dict[str, float], alpha: float
) -> dict:
    strata = pilot.strata or {}
    m = sum(isinstance(v, PilotVariance) for v in strata.values())
    out: dict[str, dict] = {}
    holm = _holm_note(m, alpha) | {"cases": {}}
    for label, v in strata.items():
        if not isinstance(v, PilotVariance):
            out[label] = {"error": v}
            continue
        share = v.n_cases / pilot.overall.n_cases
        out[label] = {"pilot": v.as_dict(), "share": share, "effect": effects[label]}
        for name in names:
            out[label][name] = _smallest_cases(v, readers, effects[label], name, alpha / m, target, share)
    for name in names:
        needed = [s[name]["cases"] for s in out.values() if "error" not in s]
        holm["cases"][name] = None if not needed or None in needed else max(needed)
    return {"stratum_column": pilot.column, "strata": out, "holm": holm}


def _power(
    pilot: _Pilot,
    names: tuple[str, ...],
    readers: int,
    cases: int,
    effect: float,
    alpha: float,
    stratum_effects: Mapping[str, float] | None,
) -> dict:
    effects = _stratum_effects(pilot, effect, stratum_effects)
    out = _header(pilot, readers, effect, alpha, names) | {"cases": cases}
    for name in names:
        out[name] = _entry(or_power(pilot.overall, readers, cases, effect, name, alpha), name) | {"cases": cases}
    if pilot.strata is not None:
        out |= _strata_power(pilot, names, readers, cases, effects, alpha)
    return out


def _cases(
    pilot: _Pilot,
    names: tuple[str, ...],
    readers: int,
    target: float,
    effect: float,
    alpha: float,
    stratum_effects: Mapping[str, float] | None,
) -> dict:
    effects = _stratum_effects(pilot, effect, stratum_effects)
    out = _header(pilot, readers, effect, alpha, names) | {"target_power": target}
    for name in names:
        out[name] = _smallest_cases(pilot.overall, readers, effect, name, alpha, target)
    if pilot.strata is not None:
        out |= _strata_cases(pilot, names, readers, target, effects, alpha)
    return out


def _grid(
    v: PilotVariance, names: tuple[str, ...], readers: list[int], cases: list[int], effect: float, alpha: float
) -> dict:
    out: dict[str, Any] = {"pilot": v.as_dict(), "readers": readers, "cases": cases, "effect": effect}
    out |= {"alpha": alpha, "analyses": list(names)}
    j, k = np.array(readers, dtype=float)[:, None], np.array(cases, dtype=float)[None, :]
    for name in names:
        arrays = or_power(v, j, k, effect, name, alpha)
        out[name] = {key: [[_num(x) for x in row] for row in arrays[key]] for key in ("power", "ncp", "fcrit")}
        out[name]["ddf"] = None if name == "frrc" else [[_num(x) for x in row] for row in arrays["ddf"]]
    return out


def power_from_pilot(
    source: Source | PilotVariance,
    readers: int,
    cases: int,
    effect: float,
    analysis: str | Sequence[str] = ANALYSES,
    cov: str = "jackknife",
    cluster: str | None = None,
    stratum: str | None = None,
    alpha: float = 0.05,
    modalities: Sequence[str] | None = None,
    stratum_effects: Mapping[str, float] | None = None,
) -> dict:
    """Power of a pivotal study with ``readers`` x ``cases`` to detect an AUC difference ``effect``.

    ``source``: the pilot's reads (DataFrame or CSV path, the long format of :func:`analyse`) or a
    :class:`PilotVariance`. Returns ``{"pilot", "readers", "cases", "effect", "alpha", "analyses", "rrrc":
    {"power", "ncp", "ddf", "fcrit", "denominator", "cases"}, ...}`` (ddf None for FRRC). With ``stratum``
    also ``strata`` (per stratum: ``pilot``, ``share``, ``cases`` (its share of K), ``effect`` and per analysis
    the power at alpha/m with ``power_unadjusted`` at alpha) and ``holm``."""
    names = _analyses(analysis)
    readers, cases = _count(readers, "readers", 2), _count(cases, "cases", 2)
    effect, alpha = _effect(effect), _fraction(alpha, "alpha")
    pilot = _pilot(source, cov, cluster, stratum, modalities)
    return _power(pilot, names, readers, cases, effect, alpha, stratum_effects)


def cases_for_power(
    source: Source | PilotVariance,
    readers: int,
    target_power: float,
    effect: float,
    analysis: str | Sequence[str] = ANALYSES,
    cov: str = "jackknife",
    cluster: str | None = None,
    stratum: str | None = None,
    alpha: float = 0.05,
    modalities: Sequence[str] | None = None,
    stratum_effects: Mapping[str, float] | None = None,
) -> dict:
    """The smallest number of cases K for which ``readers`` readers reach ``target_power`` (per analysis).

    Per analysis: ``cases`` (None when unreachable, with ``error`` saying why), ``power``, ``ncp``, ``ddf``,
    ``fcrit`` at that K, ``target_power`` and ``max_power`` (the limit as K grows). With ``stratum``: per
    stratum the total K for which that stratum reaches the target at alpha/m, and under ``holm.cases`` the
    largest of them per analysis (every stratum reaches the target)."""
    names = _analyses(analysis)
    readers = _count(readers, "readers", 2)
    target, effect, alpha = _fraction(target_power, "target power"), _effect(effect), _fraction(alpha, "alpha")
    pilot = _pilot(source, cov, cluster, stratum, modalities)
    return _cases(pilot, names, readers, target, effect, alpha, stratum_effects)


def power_grid(
    source: Source | PilotVariance,
    readers: Sequence[int],
    cases: Sequence[int],
    effect: float,
    analysis: str | Sequence[str] = ANALYSES,
    cov: str = "jackknife",
    cluster: str | None = None,
    alpha: float = 0.05,
    modalities: Sequence[str] | None = None,
) -> dict:
    """Power for every readers x cases pair: per analysis ``power``, ``ncp``, ``ddf``, ``fcrit`` as lists of rows
    (one row per number of readers, one column per number of cases; ddf None for FRRC)."""
    names = _analyses(analysis)
    js, ks = _counts(readers, "readers", 2), _counts(cases, "cases", 2)
    effect, alpha = _effect(effect), _fraction(alpha, "alpha")
    return _grid(_pilot(source, cov, cluster, None, modalities).overall, names, js, ks, effect, alpha)


# --- command line ---------------------------------------------------------------------------------------------


def _f(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=True)]
    return ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in (header, *rows)]


def _pilot_lines(p: dict, title: str) -> list[str]:
    vc = p["var_components"]
    clusters = f" in {p['n_clusters']} clusters" if p["n_clusters"] is not None else ""
    return [
        f"{title}: {p['n_readers']} readers x {p['n_cases']} cases{clusters} ({p['n_positive']} positive), "
        f"modalities {' vs '.join(p['modalities'])}, {p['cov_method']} covariance, observed effect "
        f"{_f(p['observed_effect'])}",
        "  OR components: "
        + ", ".join(f"{k} {vc[k]:.6g}" for k in ("var_tr_used", "var_error", "cov1", "cov2", "cov3")),
    ]


def _analysis_rows(result: dict, names: list[str], extra: str | None = None) -> list[list[str]]:
    rows = []
    for name in names:
        r = result[name]
        cases = r.get("cases", result.get("cases"))
        cells = [name.upper(), "-" if cases is None else f"{cases:.0f}", _f(r.get("power"))]
        cells += [_f(r.get("ncp"), 3), "inf" if name == "frrc" else _f(r.get("ddf"), 3), _f(r.get("fcrit"), 3)]
        if extra:
            cells.append(_f(r.get(extra)))
        rows.append(cells)
    return rows


def _strata_lines(result: dict, names: list[str]) -> list[str]:
    holm = result["holm"]
    planning = "target" not in result and "target_power" not in result
    lines = [
        "",
        f"Strata by {result['stratum_column']}: Holm over {holm['strata']}, each at alpha/{holm['strata']} = "
        f"{_f(holm['alpha'])} (a lower bound of its Holm power)"
        + ("; 'at alpha' is the unadjusted power, an upper bound" if planning else ""),
    ]
    for label, s in result["strata"].items():
        if "error" in s:
            lines.append(f"== stratum {label}: {s['error']}")
            continue
        lines += ["", *_pilot_lines(s["pilot"], f"== stratum {label}")]
        if planning:
            header = ["analysis", "stratum cases", "power", "ncp", "ddf", "F crit", "at alpha"]
            lines += _table(header, _analysis_rows(s, names, "power_unadjusted"))
        else:
            lines += _table(["analysis", "total cases", "power", "ncp", "ddf", "F crit"], _analysis_rows(s, names))
        lines += [f"  {s[n]['error']}" for n in names if "error" in s[n]]
    if "cases" in holm:
        needed = (f"{n.upper()} {'-' if holm['cases'][n] is None else holm['cases'][n]}" for n in names)
        lines.append("Total cases for every stratum to reach the target: " + ", ".join(needed))
    return lines


def format_power(result: dict, grid: dict | None = None) -> str:
    """Readable tables of a :func:`power_from_pilot` or :func:`cases_for_power` result (and a grid)."""
    names = result["analyses"]
    lines = _pilot_lines(result["pilot"], "Pilot")
    aim = f"target power {result['target_power']:g}" if "target_power" in result else f"{result['cases']} cases"
    lines += ["", f"{result['readers']} readers, {aim}, effect {result['effect']:g}, alpha {result['alpha']:g}"]
    lines += _table(["analysis", "cases", "power", "ncp", "ddf", "F crit"], _analysis_rows(result, names))
    lines += [f"  {result[n]['error']}" for n in names if "error" in result[n]]
    if "strata" in result:
        lines += _strata_lines(result, names)
    if grid is not None:
        for name in names:
            lines += ["", f"{name.upper()} power (rows: readers, columns: cases)"]
            rows = [
                [str(j), *(_f(p) for p in row)] for j, row in zip(grid["readers"], grid[name]["power"], strict=True)
            ]
            lines += _table(["readers", *(str(k) for k in grid["cases"])], rows)
    return "\n".join(lines)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected whole numbers separated by commas") from None
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r}: expected whole numbers separated by commas")
    return values


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m readerstudy.analysis.power",
        description="Power and sample size of a two-modality MRMC study from a pilot's reads "
        "(OR variance components, Hillis et al. 2011; RJafroc SsPowerGivenJK / SsSampleSizeKGivenJ).",
    )
    parser.add_argument("pilot", help="the pilot's ratings CSV (reader, modality, case, truth, rating)")
    parser.add_argument("--readers", type=int, required=True, help="readers J in the pivotal study")
    aim = parser.add_mutually_exclusive_group(required=True)
    aim.add_argument("--cases", type=int, help="cases K in the pivotal study: compute the power")
    aim.add_argument("--target-power", type=float, help="compute the smallest K reaching this power")
    parser.add_argument("--effect", type=float, required=True, help="AUC difference to detect, e.g. 0.05")
    parser.add_argument("--analysis", default=",".join(ANALYSES), help="rrrc, frrc or rrfc (comma-separated; all)")
    parser.add_argument("--cov", choices=COV_METHODS, default="jackknife", help="AUC covariance method")
    parser.add_argument("--cluster-column", help="column naming each case's patient (clustered lesions)")
    parser.add_argument("--stratify-column", help="column of strata planned apart (Holm across them)")
    parser.add_argument("--grid-readers", type=_int_list, help="power grid: readers, e.g. 4,6,8")
    parser.add_argument("--grid-cases", type=_int_list, help="power grid: cases, e.g. 100,200,300")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    parser.add_argument("--json", metavar="OUT.json", help="also write the result as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        names = _analyses(args.analysis)
        readers, alpha, effect = (
            _count(args.readers, "--readers", 2),
            _fraction(args.alpha, "--alpha"),
            _effect(args.effect),
        )
        if args.cases is not None:
            _count(args.cases, "--cases", 2)
        else:
            _fraction(args.target_power, "--target-power")
        grid_readers = _counts(args.grid_readers or [readers], "--grid-readers", 2)
        if args.grid_cases is None and args.grid_readers is not None and args.cases is None:
            raise AnalysisInputError("--grid-readers with --target-power needs --grid-cases too")
        grid_cases = (
            _counts(args.grid_cases or [args.cases], "--grid-cases", 2) if args.grid_cases or args.grid_readers else []
        )
        pilot = _pilot(args.pilot, args.cov, args.cluster_column, args.stratify_column, None)
        if args.cases is not None:
            result = _power(pilot, names, readers, args.cases, effect, alpha, None)
        else:
            result = _cases(pilot, names, readers, args.target_power, effect, alpha, None)
        grid = _grid(pilot.overall, names, grid_readers, grid_cases, effect, alpha) if grid_cases else None
    except AnalysisInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if grid is not None:
        result["grid"] = {k: grid[k] for k in ("readers", "cases", *names)}
    print(format_power(result, grid))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2, allow_nan=False)
            fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
