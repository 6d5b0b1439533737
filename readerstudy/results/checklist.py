"""A reporting checklist filled from the study's own records, for CLAIM (Checklist for Artificial Intelligence in
Medical Imaging), STARD-AI and the FDA's guidance on clinical performance assessment of CADe devices.

Each row names the item, the guidelines that ask for it, the value and where the value came from (a model field
or a key of the run's stored result). The values come from the run: ``result["records"]`` (the study's set-up,
readers, practice, reference standard and DL model as the run found them, ``records.study_records``), its counts,
flow and reading times. A value the records lack says "not recorded"; items are named by their content, not by
item numbers, which differ between versions of the checklists.
"""

from __future__ import annotations

from statistics import median
from typing import Any

from readerstudy.results.labels import stratum_display, stratum_key
from readerstudy.results.report import reading_time_rows

NOT_RECORDED = "not recorded"
ALL = "CLAIM · STARD-AI · FDA CADe"


def _row(item: str, guidelines: str, value: str | None, source: str) -> dict[str, str]:
    return {"item": item, "guidelines": guidelines, "value": value or NOT_RECORDED, "source": source}


def _readers(readers: list[dict]) -> str | None:
    if not readers:
        return None
    parts = []
    for r in readers:
        years = r.get("years_experience")
        parts.append(
            f"{r['reader']}: {r.get('specialty') or 'specialty ' + NOT_RECORDED}, "
            f"{f'{years} years of experience' if years is not None else 'experience ' + NOT_RECORDED}, "
            f"training: {r.get('training') or NOT_RECORDED}"
        )
    years = [r["years_experience"] for r in readers if r.get("years_experience") is not None]
    spread = f"; experience median {median(years):g} years (range {min(years)}–{max(years)})" if years else ""
    return f"{len(readers)} readers{spread}. " + "; ".join(parts)


def _practice(practice: dict | None) -> str | None:
    if practice is None:
        return None
    if not practice.get("cases"):
        return "no practice session (no practice cases imported)"
    return (
        f"practice session of {practice['cases']} practice cases (truth shown after each rating, never analysed): "
        f"offered to {practice['sessions']} readers, started by {practice['sessions_started']}, "
        f"{practice['reads']} practice reads"
    )


def _washout(study: dict) -> str | None:
    if not study:
        return None
    if study.get("design") == "sequential":
        return "not applicable: sequential design (the unaided rating is locked before the aided one is given)"
    return f"{study['washout_days']} days between a reader's sessions (the server refuses a session before it)"


def _design(study: dict, mrmc: dict) -> str | None:
    if not study:
        return None
    groups = study.get("reader_groups", 1)
    layout = "fully crossed" if groups == 1 else f"split-plot, {groups} reader groups"
    modalities = ", ".join(f"{m['key']} ({'DL shown' if m['shows_dl'] else 'no DL'})" for m in study["modalities"])
    detected = f"; design found in the reads: {mrmc['design']}" if mrmc.get("design") else ""
    return f"{study['design_display']}, {layout}; modalities {modalities}{detected}"


def _windows(study: dict) -> str | None:
    presets = study.get("window_presets") if study else None
    if not presets:
        return None
    default = study.get("default_preset")
    shown = [
        f"{p['key']}: {p['name']} W{p['width']:g}/L{p['level']:g}{' (first shown)' if p['key'] == default else ''}"
        for p in presets
    ]
    return "; ".join(shown)


def _overlay(study: dict) -> str | None:
    if not study:
        return None
    hidden = study.get("overlay_hidden_labels") or []
    shown = f"{study['overlay_mode']} (in the modalities that show DL)"
    return shown + (f"; hidden by default: {', '.join(hidden)}" if hidden else "")


def _case_mix(summary: dict) -> str | None:
    strata = summary.get("strata") if summary else None
    if not strata:
        return None
    parts = [f"all lesions: {summary['n_cases']}, {summary['n_positive']} positive "
             f"({_percent(summary['n_positive'], summary['n_cases'])})"]  # fmt: skip
    for label, n in sorted(strata.items(), key=lambda item: stratum_key(item[0])):
        prevalence = _percent(n["positive"], n["cases"]) if n["cases"] else "no cases"
        parts.append(f"{stratum_display(label)}: {n['cases']}, {n['positive']} positive ({prevalence})")
    return "; ".join(parts)


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "–"


def _truth(sources: dict | None) -> str | None:
    if not sources:
        return None
    counts = sorted(sources.items())
    return "; ".join(f"{source}: {n['positive']} positive, {n['negative']} negative" for source, n in counts)


def _reading_time(reading: dict) -> str | None:
    described = reading_time_rows(reading) if reading else []
    if not described:
        return None
    parts = []
    for m, d in described:
        parts.append(f"{m}: median {d['median']:.1f} s (IQR {d['q1']:.1f}–{d['q3']:.1f}; {d['n']} reads)")
    if reading.get("error"):
        parts.append(f"mixed model not fitted: {reading['error']}")
    elif reading.get("ratio") is not None:
        lo, hi = reading["ci"]
        parts.append(f"ratio {reading['comparison']}/{reading['reference']} {reading['ratio']:.3f} ({lo:.3f}–{hi:.3f})")
    return "; ".join(parts)


def _flow(flow: dict | None) -> str | None:
    if not flow:
        return None
    return (
        f"imported {flow['imported']['total']}, practice excluded {flow['practice']['total']}, "
        + (f"not read {flow['not_read']['total']}, " if flow["not_read"]["total"] else "")
        + f"not assessable excluded {flow['not_assessable']['total']}, analysed {flow['analysed']['total']} "
        "(per stratum in the flow diagram)"
    )


def _missing(excluded: dict) -> str | None:
    if not excluded:
        return None
    if not excluded.get("n_cases"):
        return "no read marked not assessable; nothing left out"
    reasons = ", ".join(f"{k}: {v}" for k, v in (excluded.get("reasons") or {}).items())
    n, reads = excluded["n_cases"], excluded["n_not_assessable_reads"]
    return (
        f"{n} lesion{'' if n == 1 else 's'} with a not-assessable read left out for every reader and modality "
        f"(complete-case analysis; {reads} such read{'' if reads == 1 else 's'}; reasons {reasons})"
    )


def _models(models: list[dict] | None) -> str | None:
    if not models:
        return None
    return "; ".join(
        f"{m['model_name']} {m['model_version']} (weights sha256 {m['weights_sha256'][:12]}…, {m['cases']} cases)"
        for m in models
    )


def _plan(plan: dict) -> str | None:
    if not plan:
        return None
    hypothesis = plan.get("plan_hypothesis")
    text = "superiority" if hypothesis == "superiority" else f"non-inferiority, margin {plan.get('plan_margin'):g}"
    threshold = plan.get("plan_threshold")
    binary = f"binary endpoints at rating ≥ {threshold}" if threshold is not None else "no binary endpoints"
    return f"primary endpoint: AUC, RRRC; hypothesis {text}; {binary}; FRRC {plan.get('plan_frrc_convention')}"


def _sample_size(plan: dict) -> str | None:
    if not plan or plan.get("plan_effect_size") is None:
        return None
    return f"sized for an AUC difference of {plan['plan_effect_size']:g}"


def checklist_rows(result: dict) -> list[dict[str, Any]]:
    """The checklist of one run: item, guidelines, value ("not recorded" when missing) and source."""
    records = result.get("records") or {}
    study = records.get("study") or {}
    summary = result.get("summary") or {}
    plan = result.get("plan") or {}
    return [
        _row("Number of readers", ALL, str(summary["n_readers"]) if summary else None, "run result: summary.n_readers"),
        _row("Readers' specialty, experience and training", ALL, _readers(records.get("readers") or []),
             "Membership (role reader): specialty, years_experience, training"),
        _row("Reader training before the study", "STARD-AI · FDA CADe", _practice(records.get("practice")),
             "Case.practice, ReadingSession.practice (started_at), reads of practice items"),
        _row("Study design and reading conditions", ALL, _design(study, result.get("mrmc") or {}),
             "Study.design, Study.reader_groups, Modality.shows_dl; run result: mrmc.design"),
        _row("Washout between sessions", "FDA CADe", _washout(study), "Study.washout_days, Study.design"),
        _row("Hanging layout", "FDA CADe", study.get("hanging_layout"), "Study.hanging_layout"),
        _row("Window presets", "FDA CADe", _windows(study), "Study.window_presets, Study.default_preset"),
        _row("DL output shown (overlay mode)", "CLAIM · FDA CADe", _overlay(study),
             "Study.overlay_mode, Study.overlay_hidden_labels"),
        _row("DL model (name, version, weights)", "CLAIM · STARD-AI", _models(records.get("dl_models")),
             "Prediction: model_name, model_version, weights_sha256 of the analysed cases"),
        _row("Case mix and prevalence per stratum", ALL, _case_mix(summary), "run result: summary.strata"),
        _row("Reference standard", ALL, _truth(records.get("truth_sources")),
             "Truth.source and Truth.label of the analysed cases"),
        _row("Flow of cases (inclusions, exclusions)", "CLAIM · STARD-AI", _flow(result.get("flow")),
             "run result: flow (Case, Case.practice, reads, complete-case exclusions)"),
        _row("Missing data (not-assessable reads)", "CLAIM · STARD-AI", _missing(result.get("excluded") or {}),
             "Read.not_assessable, Read.not_assessable_reason; run result: excluded"),
        _row("Reading time", "FDA CADe", _reading_time(result.get("reading_time") or {}),
             "Read.active_seconds; run result: reading_time"),
        _row("Statistical plan (endpoint, hypothesis, threshold)", ALL, _plan(plan),
             "Study.plan_hypothesis, plan_margin, plan_threshold, plan_frrc_convention"),
        _row("Sample size", "CLAIM · STARD-AI · FDA CADe", _sample_size(plan), "Study.plan_effect_size"),
    ]  # fmt: skip
