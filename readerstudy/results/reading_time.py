"""Reading time by modality: a linear mixed model on log(active_seconds) with crossed reader and case effects.

Model (REML, statsmodels MixedLM in its variance-components form, one group holding every read):

    log(seconds) = b0 + b1 [modality = comparison] + u_reader + v_case + e,
    u ~ N(0, s2_reader), v ~ N(0, s2_case), e ~ N(0, s2)

Why the log: reading times are right-skewed and effects on them are multiplicative (a reader who is slow is
slow by a factor), so on the log scale the errors are closer to normal and exp(b1) is the ratio of geometric
mean times, comparison / reference, with a Wald 95% CI exp(b1 +- 1.96 se). Readers and cases are random
because both are samples, and every reader reads every case in both modalities (crossed, not nested).
Medians and IQRs by modality are reported as well, untransformed. Data problems never raise: the result
then carries an ``"error"`` message (and whatever descriptive numbers could be computed).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

MIN_READS_PER_MODALITY = 10
# statsmodels' MixedLM builds dense reads x (readers + cases) design matrices and its REML fit grows much faster
# than linearly in them (bench.scale: minutes at 10 000 reads of 250 cases, a day projected at 200 000 reads):
# beyond this many cells the model is not fitted and the result says why; a study of 20 readers x 300 lesions x
# 2 modalities (12 000 reads, 3.8 M cells) is still fitted.
MAX_DESIGN_CELLS = 4_000_000


def _describe(seconds: pd.Series) -> dict:
    q1, median, q3 = np.percentile(seconds, [25, 50, 75])
    return {
        "n": int(seconds.size),
        "median": float(median),
        "q1": float(q1),
        "q3": float(q3),
        "geometric_mean": float(np.exp(np.log(seconds).mean())),
    }


def reading_time_model(
    df: pd.DataFrame, comparison: str = "aided", reference: str = "unaided", alpha: float = 0.05
) -> dict:
    """Geometric-mean ratio of reading time, ``comparison`` / ``reference``, from the crossed mixed model.

    ``df`` needs ``reader, modality, case, active_seconds``. Reads with a missing, non-finite or zero time are
    left out (a log needs a positive time) and counted in ``n_excluded``. Returns a JSON-ready dict:
    ``ratio``, ``ci`` [lo, hi], ``p``, ``log_ratio``, ``log_ratio_se``, ``variance`` (reader, case,
    residual; log scale), counts, ``descriptive`` (per modality: n, median, q1, q3, geometric_mean in
    seconds), ``model`` (a description) and ``warnings``; or ``{"error": ..., ...}``.
    """
    needed = ["reader", "modality", "case", "active_seconds"]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        return {"error": f"reading time: missing column(s) {missing}"}
    data = df[needed].copy()
    for col in ("reader", "modality", "case"):
        data[col] = data[col].astype(str)
    data["seconds"] = pd.to_numeric(data["active_seconds"], errors="coerce")
    usable = np.isfinite(data["seconds"]) & (data["seconds"] > 0)
    n_excluded = int((~usable).sum())
    data = data[usable & data["modality"].isin([comparison, reference])]

    out: dict = {
        "comparison": comparison,
        "reference": reference,
        "n_excluded": n_excluded,
        "descriptive": {
            m: _describe(data.loc[data["modality"] == m, "seconds"])
            for m in (reference, comparison)
            if (data["modality"] == m).any()
        },
    }
    counts = data["modality"].value_counts()
    short = [m for m in (reference, comparison) if counts.get(m, 0) < MIN_READS_PER_MODALITY]
    if short:
        found = sorted(df["modality"].astype(str).unique())
        return {**out, "error": f"reading time: too few reads with a positive time in {short} (need "
                f"{MIN_READS_PER_MODALITY} per modality; modalities found: {found})"}  # fmt: skip
    n_readers, n_cases = data["reader"].nunique(), data["case"].nunique()
    if n_readers < 2 or n_cases < 2:
        return {**out, "error": f"reading time: {n_readers} reader(s) and {n_cases} case(s); the crossed model "
                "needs at least 2 of each"}  # fmt: skip

    cells = len(data) * (n_readers + n_cases)
    if cells > MAX_DESIGN_CELLS:
        return {**out, "error": f"reading time: the mixed model is not fitted for {len(data)} reads of {n_readers} "
                f"readers and {n_cases} cases (its dense design would hold {cells:,} cells, over "
                f"{MAX_DESIGN_CELLS:,}; bench.scale); the medians and geometric means above are exact"}  # fmt: skip

    import statsmodels.formula.api as smf

    data = data.assign(
        log_seconds=np.log(data["seconds"]),
        treated=(data["modality"] == comparison).astype(float),
        group=1,  # one group: reader and case effects are crossed variance components within it
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = smf.mixedlm(
                "log_seconds ~ treated", data, groups="group", re_formula="0",
                vc_formula={"reader": "0 + C(reader)", "case": "0 + C(case)"},
            )  # fmt: skip
            fit = model.fit(reml=True)
            b = float(fit.fe_params["treated"])
            se = float(fit.bse_fe["treated"])  # NaN (with a warning) when the Hessian is singular
        except Exception as exc:  # statsmodels/patsy raise many types on degenerate data; report, never raise
            return {**out, "error": f"reading time: the mixed model could not be fitted ({type(exc).__name__}: {exc})"}
    messages = sorted({str(w.message).splitlines()[0] for w in caught})
    if not fit.converged or not (math.isfinite(b) and math.isfinite(se) and se > 0):
        error = "reading time: the mixed model did not converge (or gave no standard error)"
        return {**out, "error": error, "warnings": messages}
    from scipy.stats import norm

    z = float(norm.ppf(1 - alpha / 2))
    variance = dict(zip(model.exog_vc.names, (float(v) for v in fit.vcomp), strict=True))
    return {
        **out,
        "model": "log(active_seconds) ~ modality + (1 | reader) + (1 | case); REML, statsmodels MixedLM "
        "(crossed variance components)",
        "n_reads": len(data),
        "n_readers": int(n_readers),
        "n_cases": int(n_cases),
        "ratio": math.exp(b),
        "ci": [math.exp(b - z * se), math.exp(b + z * se)],
        "p": float(2 * norm.sf(abs(b / se))),
        "log_ratio": b,
        "log_ratio_se": se,
        "variance": {"reader": variance["reader"], "case": variance["case"], "residual": float(fit.scale)},
        "converged": True,
        "warnings": messages,
    }
