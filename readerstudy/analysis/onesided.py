"""One-sided superiority and non-inferiority tests of a modality difference, with the margin.

For each difference d = theta_A - theta_B (A the first-listed modality of the pair) with its standard error se
and degrees of freedom df from the two-sided analysis (RRRC: t with Hillis ddf; FRRC: z, df = inf; RRFC: t with
(t-1)(r-1) df), the null hypothesis is

- superiority of A: H0: theta_A - theta_B <= 0 (null bound delta0 = 0, no margin);
- non-inferiority of A with margin M > 0: H0: theta_A - theta_B <= -M (delta0 = -M).

The test statistic is T = (d - delta0) / se, the one-sided p-value P(T_df > T) (normal for FRRC), and the
one-sided (1 - alpha) lower confidence bound L = d - t_{1-alpha, df} se. H0 is rejected at level alpha exactly
when p < alpha, i.e. when L > delta0. ``alpha`` is the analysis' alpha: with alpha = 0.025 the lower bound is the
lower end of the two-sided 95% interval, the usual non-inferiority convention.
"""

from __future__ import annotations

import math
from typing import Any

from readerstudy.analysis import dist
from readerstudy.analysis.errors import AnalysisInputError

HYPOTHESES = ("superiority", "non-inferiority")
_SPELLINGS = {"superiority": "superiority", "non-inferiority": "non-inferiority", "non_inferiority": "non-inferiority"}


def check_hypothesis(hypothesis: str | None, margin: float | None) -> tuple[str | None, float]:
    """The hypothesis' canonical name (None: no one-sided test) and its margin (0 for superiority)."""
    if hypothesis is None:
        if margin is not None:
            raise AnalysisInputError(
                f"margin {margin!r} without a hypothesis: a margin belongs to hypothesis='non-inferiority'"
            )
        return None, 0.0
    name = _SPELLINGS.get(str(hypothesis).strip().lower())
    if name is None:
        raise AnalysisInputError(f"hypothesis {hypothesis!r}: expected one of {list(HYPOTHESES)}")
    try:
        value = 0.0 if margin is None else float(margin)
    except (TypeError, ValueError):
        value = math.nan
    if name == "superiority":
        if value != 0.0:
            raise AnalysisInputError(
                f"margin {margin!r}: superiority tests H0: theta_A - theta_B <= 0 and takes no margin "
                "(leave it out or 0, or choose non-inferiority)"
            )
        return name, 0.0
    if not 0.0 < value < 1.0:
        raise AnalysisInputError(
            f"margin {margin!r}: non-inferiority needs a margin 0 < M < 1 on the figure-of-merit scale "
            "(H0: theta_A - theta_B <= -M)"
        )
    return name, value


def one_sided(difference: dict[str, Any], hypothesis: str, margin: float, alpha: float) -> dict[str, Any]:
    """The ``one_sided`` entry of one difference (a plain dict with estimate, se, df and t or z)."""
    stat_key = "z" if "z" in difference else "t"
    estimate, se = difference["estimate"], difference["se"]
    df = math.inf if difference["df"] is None else difference["df"]
    null_bound = -margin if hypothesis == "non-inferiority" else 0.0
    out: dict[str, Any] = {
        "hypothesis": hypothesis,
        "margin": margin,
        "null_bound": null_bound,
        "alpha": alpha,
        stat_key: None,
        "df": difference["df"],
        "p": None,
        "lower_bound": None,
        "rejected": None,
    }
    if estimate is None or se is None or se <= 0 or math.isnan(df):
        return out
    stat = (estimate - null_bound) / se
    p = dist.t_sf(stat, df)
    out.update(
        {stat_key: stat, "p": p, "lower_bound": estimate - dist.t_ppf(1 - alpha, df) * se, "rejected": p < alpha}
    )
    return out


def add_one_sided(result: dict[str, Any], hypothesis: str | None, margin: float, alpha: float) -> dict[str, Any]:
    """Add ``one_sided`` to every difference of ``result``'s RRRC, FRRC and RRFC (no-op without a hypothesis)."""
    if hypothesis is not None:
        for name in ("rrrc", "frrc", "rrfc"):
            for difference in result.get(name, {}).get("differences", []):
                difference["one_sided"] = one_sided(difference, hypothesis, margin, alpha)
    return result
