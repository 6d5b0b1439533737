"""The study's own records that a report cites (reporting checklists, the flow of cases), read when a run is made
and stored with its result, so the report and its JSON stand on the run alone.

Read-only queries; the task stores what they return through ``results.actions.finish_analysis``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
from django.db.models import Count

from inference.models import Prediction
from readerstudy.reading.models import Read, ReadingSession
from readerstudy.studies.models import Case, Membership, Study, Truth


def imported_cases(study: Study) -> pd.DataFrame:
    """Every imported case, practice cases too: ``case, practice, diameter_mm, truth`` (for flow.case_flow)."""
    rows = (
        Case.objects.filter(study=study)
        .order_by("case_id")
        .values_list("case_id", "practice", "diameter_mm", "truth__label")
    )
    df = pd.DataFrame.from_records(list(rows), columns=["case", "practice", "diameter_mm", "truth_label"])
    df["truth"] = (df["truth_label"] == Truth.POSITIVE_LABEL).astype(int)
    return df.drop(columns="truth_label")


def reader_profiles(study: Study) -> list[dict[str, Any]]:
    """What a paper reports about its readers, one row each, under the labels the analysis uses (user names)."""
    return [
        {"reader": username, "specialty": specialty, "years_experience": years, "training": training}
        for username, specialty, years, training in Membership.objects.filter(study=study, role=Membership.Role.READER)
        .order_by("user__username")
        .values_list("user__username", "specialty", "years_experience", "training")
    ]


def _practice(study: Study) -> dict[str, int]:
    sessions = ReadingSession.objects.filter(study=study, practice=True)
    return {
        "cases": Case.objects.filter(study=study, practice=True).count(),
        "sessions": sessions.count(),
        "sessions_started": sessions.filter(started_at__isnull=False).count(),
        "reads": Read.objects.filter(study=study, item__session__practice=True).count(),
    }


def _truth_sources(study: Study, analysed: set[str]) -> dict[str, dict[str, int]]:
    """Reference standard of the analysed cases: source -> positive / negative counts."""
    out: dict[str, dict[str, int]] = {}
    for case_id, label, source in Truth.objects.filter(case__study=study).values_list(
        "case__case_id", "label", "source"
    ):
        if case_id not in analysed:
            continue
        counts = out.setdefault(Truth.Source(source).label, {"positive": 0, "negative": 0})
        counts["positive" if label == Truth.POSITIVE_LABEL else "negative"] += 1
    return dict(sorted(out.items()))


def _models(study: Study, analysed: set[str]) -> list[dict[str, Any]]:
    """The DL model(s) whose outputs the analysed cases had: name, version, weights hash, cases."""
    rows = (
        Prediction.objects.filter(case__study=study, case__case_id__in=analysed)
        .values("model_name", "model_version", "weights_sha256")
        .annotate(cases=Count("case", distinct=True))
        .order_by("model_name", "model_version", "weights_sha256")
    )
    return [dict(r) for r in rows]


def backend_predictions(study: Study, cases: Iterable[str]) -> list[dict[str, Any]]:
    """Every classifier backend's stored predictions on ``cases`` (case ids): one entry per model identity (name,
    version, weights hash), in name order, with ``predictions`` case id -> probability. A backend is a precompute
    run's segmentation + classifier (Prediction.model_name, e.g. "phantom-unet+radiomics-l1-logistic-demo"); where
    it predicted a case twice (a forced recompute on other inputs), its newest prediction counts, as for readers."""
    wanted = {str(c) for c in cases}
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    rows = (
        Prediction.objects.filter(case__study=study)
        .order_by("created_at", "id")  # oldest first: the newest of a case wins below
        .values_list("model_name", "model_version", "weights_sha256", "case__case_id", "probability")
    )
    for name, version, sha, case_id, probability in rows:
        if case_id not in wanted:
            continue
        entry = out.setdefault(
            (name, version, sha),
            {"model_name": name, "model_version": version, "weights_sha256": sha, "predictions": {}},
        )
        entry["predictions"][case_id] = float(probability)
    return [out[key] for key in sorted(out)]


def segmentation(study: Study) -> dict[str, Any]:
    """The stored predictions' segmentation against the reference masks imported with the cases
    (inference.evaluation.imported_reference_evaluation), JSON-safe; ``{"n_with_reference": 0}`` when none were
    imported, ``{"error": ...}`` when a stored mask or prediction cannot be read."""
    from inference.actions import store_segmentation_evaluation
    from inference.evaluation import imported_reference_evaluation
    from inference.pipeline.reference_masks import ReferenceMaskError
    from inference.pipeline.seg_evaluation import nan_to_none

    try:  # reuses the results of earlier runs that are still current, stores the ones it computes
        out = imported_reference_evaluation(study, store=store_segmentation_evaluation)
    except (ReferenceMaskError, OSError, ValueError) as exc:
        return {"error": f"the segmentation evaluation failed ({exc})"}
    return {"n_with_reference": 0} if out is None else nan_to_none(out)


def study_records(study: Study, analysed_cases: Iterable[str]) -> dict[str, Any]:
    """The study's set-up, readers, practice, reference standard and DL model, as the run found them."""
    analysed = {str(c) for c in analysed_cases}
    modalities = study.modalities.order_by("order")
    return {
        "study": {
            "design": study.design,
            "design_display": study.get_design_display(),
            "reader_groups": study.reader_groups,
            "washout_days": study.washout_days,
            "patient_grouping": study.get_patient_grouping_display(),
            "rating_scale": [study.rating_min, study.rating_max],
            "question": study.question,
            "hanging_layout": study.get_hanging_layout_display(),
            "window_presets": study.window_presets,
            "default_preset": study.default_preset,
            "overlay_mode": study.get_overlay_mode_display(),
            "overlay_hidden_labels": study.overlay_hidden_labels,
            "modalities": [{"key": m.key, "label": m.label, "shows_dl": m.shows_dl} for m in modalities],
            "launched_at": study.launched_at.isoformat() if study.launched_at else None,
            "closed_at": study.closed_at.isoformat() if study.closed_at else None,
        },
        "readers": reader_profiles(study),
        "practice": _practice(study),
        "truth_sources": _truth_sources(study, analysed),
        "dl_models": _models(study, analysed),
    }
