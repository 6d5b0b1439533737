"""The statistical plan of a study, fixed before launch: validation of its fields (hostile values refused).

- ``plan_threshold``: the rating at or above which a read calls the case positive (sensitivity and specificity);
  within the study's rating scale, or None for no binary endpoints.
- ``plan_hypothesis`` and ``plan_margin``: superiority (margin 0) or non-inferiority of the aided modality with a
  margin on the figure-of-merit scale (0 < margin < 0.5).
- ``plan_frrc_convention``: the FRRC error term, max(Cov2 - Cov3, 0) (Iowa, RJafroc) or untruncated (MRMCaov).
- ``plan_effect_size``: the difference the study is sized for (the planned power uses it).
- ``reader_groups``: 1 for fully crossed; G >= 2 for a split-plot study (readers in G groups, each reading its own
  block of cases in every modality).
"""

from __future__ import annotations

import math
from typing import Any

from readerstudy.core.errors import InvalidInput
from readerstudy.studies.models import Study

PLAN_FIELDS = (
    "reader_groups",
    "plan_threshold",
    "plan_hypothesis",
    "plan_margin",
    "plan_frrc_convention",
    "plan_effect_size",
)
READER_GROUPS_MAX = 20
MARGIN_MAX = 0.5


def _number(field: str, value: Any, low: float, high: float, *, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"{field} {value!r}: expected a number")
    if value < low or value >= high or (low_open and value == low):
        bound = "above" if low_open else "at least"
        raise InvalidInput(f"{field} {value!r}: expected {bound} {low:g} and below {high:g}")
    return float(value)


def _choice(field: str, value: Any, choices: list[str]) -> str:
    if value not in choices:
        raise InvalidInput(f"{field} {value!r}: expected {', '.join(choices)}")
    return value


def _reader_groups(value: Any, study: Study) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= READER_GROUPS_MAX:
        raise InvalidInput(f"reader_groups {value!r}: expected 1 (fully crossed) to {READER_GROUPS_MAX}")
    return value


def _threshold(value: Any, study: Study) -> int | None:
    low, high = study.rating_min, study.rating_max
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not low < value <= high):
        raise InvalidInput(
            f"plan_threshold {value!r}: expected a whole rating above {low} and at most {high} "
            "(a read at or above it calls the case positive), or none"
        )
    return value


_CHECKS = {
    "reader_groups": _reader_groups,
    "plan_threshold": _threshold,
    "plan_hypothesis": lambda v, s: _choice("plan_hypothesis", v, Study.Hypothesis.values),
    "plan_margin": lambda v, s: _number("plan_margin", v, 0.0, MARGIN_MAX),
    "plan_frrc_convention": lambda v, s: _choice("plan_frrc_convention", v, Study.FrrcConvention.values),
    "plan_effect_size": lambda v, s: None if v is None else _number("plan_effect_size", v, 0.0, 0.5, low_open=True),
}


def check_plan(changes: dict[str, Any], study: Study) -> dict[str, Any]:
    """The plan fields among ``changes``, validated against the study (its rating scale, the other plan fields)."""
    out = {field: check(changes[field], study) for field, check in _CHECKS.items() if field in changes}
    hypothesis = out.get("plan_hypothesis", study.plan_hypothesis)
    margin = out.get("plan_margin", study.plan_margin)
    if hypothesis == Study.Hypothesis.NON_INFERIORITY and margin <= 0:
        raise InvalidInput("plan_margin: a non-inferiority hypothesis needs a margin above 0")
    if hypothesis == Study.Hypothesis.SUPERIORITY and margin != 0:
        raise InvalidInput("plan_margin: a superiority hypothesis takes no margin (set 0, or choose non-inferiority)")
    return out


def plan_state(study: Study) -> dict[str, Any]:
    """The plan as audit events and reports store it (the pilot by its source and size)."""
    pilot = study.plan_pilot or {}
    variance = pilot.get("variance", {})
    summary = {"source": pilot.get("source"), "readers": variance.get("n_readers"), "cases": variance.get("n_cases")}
    return {**{field: getattr(study, field) for field in PLAN_FIELDS}, "plan_pilot": summary if pilot else None}


# --- the pilot and the planned power -------------------------------------------------------------------------

PILOT_SOURCE_MAX_CHARS = 200


def pilot_record(variance: Any, source: str) -> dict[str, Any]:
    """What ``Study.plan_pilot`` stores: the variance components (every field of PilotVariance) and their source."""
    from dataclasses import asdict

    if not isinstance(source, str) or not source.strip() or len(source) > PILOT_SOURCE_MAX_CHARS:
        raise InvalidInput(f"pilot source: expected a description of 1 to {PILOT_SOURCE_MAX_CHARS} characters")
    fields = asdict(variance)
    fields["modalities"], fields["modality_auc"] = list(fields["modalities"]), list(fields["modality_auc"])
    return {"source": source.strip(), "variance": fields}


def pilot_variance(study: Study) -> Any:
    """The study's stored pilot as a PilotVariance, or None."""
    if not study.plan_pilot:
        return None
    from readerstudy.analysis.power import PilotVariance

    fields = dict(study.plan_pilot["variance"])
    fields["modalities"], fields["modality_auc"] = tuple(fields["modalities"]), tuple(fields["modality_auc"])
    return PilotVariance(**fields)


def planned_power(study: Study, *, readers: int, cases: int, alpha: float = 0.05) -> dict[str, Any] | None:
    """RRRC power of the configured study (its readers, cases, reader groups) for the plan's effect size, from the
    stored pilot; None without an effect size or a pilot, or with fewer than 2 readers or cases."""
    variance = pilot_variance(study)
    effect = study.plan_effect_size
    if variance is None or effect is None or readers < 2 or cases < 2:
        return None
    if study.reader_groups > 1:
        from readerstudy.analysis.splitplot_power import split_plot_power

        if readers < study.reader_groups or cases < study.reader_groups:
            return None
        power = float(split_plot_power(variance, readers, study.reader_groups, cases, effect, "rrrc", alpha)["power"])
    else:
        from readerstudy.analysis.power import power_from_pilot

        power = float(power_from_pilot(variance, readers, cases, effect, analysis="rrrc", alpha=alpha)["rrrc"]["power"])
    return {
        "power": power, "readers": readers, "cases": cases, "effect": effect, "groups": study.reader_groups,
        "alpha": alpha, "source": study.plan_pilot["source"], "analysis": "rrrc",
    }  # fmt: skip
