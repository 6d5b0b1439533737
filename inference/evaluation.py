"""Segmentation evaluation of a study's stored predictions against reference masks: the thin layer around
:mod:`inference.pipeline.seg_evaluation` (it finds the series, their grids and the stored labelmaps).

:func:`segmentation_evaluation` returns the plain dict that ``manage.py evaluate_predictions`` prints and
writes as JSON, for the platform's report to show as well. :func:`imported_reference_evaluation` reuses the
per-series results stored by earlier analysis runs (``SegmentationEvaluation``) while what determines them is
unchanged, and hands new ones to the caller's ``store`` (the analysis task passes
``inference.actions.store_segmentation_evaluation``); nothing else is written.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from django.core.files.storage import default_storage

from inference.actions import shown_prediction
from inference.models import Prediction, SegmentationEvaluation
from inference.pipeline.reference_masks import ReferenceMaskError, SeriesGrid, load_masks, series_affine
from inference.pipeline.seg_evaluation import evaluate_case, segmentation_report, summary_rows
from inference.pipeline.seg_metrics import NSD_TOLERANCE_MM
from readerstudy.studies.manifest import id_problem
from readerstudy.studies.models import ImageSeries, Study
from readerstudy.studies.storage import slice_name

__all__ = [
    "METRICS_VERSION",
    "NoReferenceMasks",
    "evaluation_key",
    "imported_reference_evaluation",
    "segmentation_evaluation",
    "series_grid",
]

# Part of every stored result's key: bump it when seg_evaluation's or seg_metrics' numbers change, so that every
# stored result is recomputed by the next run.
METRICS_VERSION = 1
# Keeps a series' new result: (series, key, JSON-safe result, seconds it took).
Store = Callable[[ImageSeries, str, dict[str, Any], float], None]


class NoReferenceMasks(LookupError):
    """No reference mask matches any of the study's series (the message says where it looked)."""


def series_grid(series: ImageSeries) -> SeriesGrid:
    """The series' voxel grid from its first slice's header and the stored slice positions."""
    with default_storage.open(slice_name(series, 0), "rb") as f:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
    pos = series.slice_positions_mm
    dz = (pos[-1] - pos[0]) / (len(pos) - 1) if series.n_slices > 1 else float(ds.get("SliceThickness") or 1.0)
    affine = series_affine(ds.ImageOrientationPatient, ds.ImagePositionPatient, ds.PixelSpacing, dz)
    return SeriesGrid((series.n_slices, series.rows, series.columns), affine)


def _stored_masks(series: ImageSeries, study: Study, grid: SeriesGrid) -> dict[str, np.ndarray] | None:
    case = series.cases.filter(study=study).first()
    prediction = shown_prediction(case) if case is not None else None
    if prediction is None or not prediction.overlay:
        return None
    return _prediction_masks(prediction, series, grid)


def _prediction_masks(
    prediction: Prediction, series: ImageSeries, grid: SeriesGrid, data: bytes | None = None
) -> dict[str, np.ndarray]:
    if data is None:
        with prediction.overlay.open("rb") as f:
            data = f.read()
    labelmap = np.frombuffer(gzip.decompress(data), dtype=np.uint8).reshape(prediction.overlay_shape)
    if labelmap.shape != grid.shape:
        raise ReferenceMaskError(f"stored prediction of {series}: shape {labelmap.shape}, the series {grid.shape}")
    return {"liver": labelmap >= 1, "lesions": labelmap >= 2}  # labelmap: 1 liver, 2 target, 3 other lesions


def segmentation_evaluation(
    study: Study,
    masks: Path,
    *,
    pred_masks: Path | None = None,
    tolerance_mm: float = NSD_TOLERANCE_MM,
    topology: bool = True,
    warn: Callable[[str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Every series of ``study`` with a reference mask under ``masks`` (see
    :mod:`inference.pipeline.reference_masks`), compared with its stored prediction (liver, lesions) and with
    the structures found under ``pred_masks`` (same layouts; they replace the stored ones, e.g. vessels from
    TotalSegmentator's ``liver_vessels``). Raises :class:`NoReferenceMasks` when none matches.

    ``warn`` receives a line per skipped series; ``progress(done, total)`` is called after each series.
    """
    say = warn or (lambda _line: None)
    series_list = list(ImageSeries.objects.filter(cases__study=study).distinct().select_related("patient"))
    cases: dict[str, dict[str, Any]] = {}
    for done, series in enumerate(series_list, start=1):
        name = series.patient.pseudonym
        problem = id_problem(name)
        if problem is not None:  # a pseudonym from before ids were checked: not a safe file name under MASKS
            say(f"patient skipped: pseudonym {problem}; its mask cannot be looked up safely")
        else:
            grid = series_grid(series)
            reference = load_masks(masks, name, grid)
            predicted = _stored_masks(series, study, grid) or {}
            if pred_masks is not None:
                predicted.update(load_masks(pred_masks, name, grid) or {})
            if reference is None:
                pass
            elif not predicted:
                say(f"{name}: no stored prediction with an overlay and no predicted masks: skipped")
            else:
                key = name if name not in cases else f"{name} {series.pk}"
                cases[key] = evaluate_case(
                    predicted,
                    reference,
                    grid.spacing_mm,
                    bins=study.size_bins_mm,
                    tolerance_mm=tolerance_mm,
                    topology=topology,
                )
        if progress is not None:
            progress(done, len(series_list))
    if not cases:
        raise NoReferenceMasks(f"no reference masks in {masks} match the study's patients")
    report = segmentation_report(cases, bins=study.size_bins_mm, tolerance_mm=tolerance_mm)
    liver = [c["structures"]["liver"]["dice"] for c in cases.values() if "liver" in c["structures"]]
    return {"n_series": len(cases), "liver_dice_mean": float(np.mean(liver)) if liver else None, **report}


def _imported_reference(series: ImageSeries, grid: SeriesGrid, stored: bytes) -> dict[str, np.ndarray]:
    """The series' reference masks as the import stored them (studies.reference_masks: arrays on its grid)."""
    data = np.load(io.BytesIO(stored), allow_pickle=False)
    out = {}
    for key, kind in (("liver_mask", "liver"), ("lesion_labels", "lesions"), ("vessel_mask", "vessels")):
        if key in data.files:
            arr = np.asarray(data[key])
            if arr.shape != grid.shape:
                raise ReferenceMaskError(f"stored reference of {series}: {key} {arr.shape}, the series {grid.shape}")
            out[kind] = arr if kind == "lesions" else arr.astype(bool)
    return out


def evaluation_key(
    *,
    series: ImageSeries,
    prediction: Prediction,
    overlay_sha256: str,
    mask_sha256: str,
    bins: Any,
    tolerance_mm: float,
    topology: bool,
) -> str:
    """sha256 of everything a series' result depends on: the shown prediction (id, labelmap bytes and shape), the
    stored reference mask's bytes, the series (its grid: stored series are never rewritten), the size bins, the
    metric settings and :data:`METRICS_VERSION`."""
    identity = {
        "metrics_version": METRICS_VERSION,
        "series": series.pk,
        "prediction": prediction.pk,
        "overlay_sha256": overlay_sha256,
        "overlay_shape": [int(n) for n in prediction.overlay_shape],
        "mask_sha256": mask_sha256,
        "size_bins_mm": [float(b) for b in bins],
        "tolerance_mm": float(tolerance_mm),
        "topology": bool(topology),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _encode(value: Any) -> Any:
    """JSON-safe and lossless: a non-finite float (a missed lesion's HD95 is infinite) as ``{"$float": "inf"}``."""
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": repr(value)}
    if isinstance(value, np.generic):
        return _encode(value.item())
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$float"} and value["$float"] in ("inf", "-inf", "nan"):
            return float(value["$float"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def imported_reference_evaluation(
    study: Study, *, tolerance_mm: float = NSD_TOLERANCE_MM, topology: bool = True, store: Store | None = None
) -> dict[str, Any] | None:
    """The study's stored predictions (the prediction aided readers are shown, per series) against the reference
    masks imported with its cases, or None when no series has one.

    Returns the :func:`~inference.pipeline.seg_evaluation.segmentation_report` of the series that have both, with
    ``rows`` (:func:`~inference.pipeline.seg_evaluation.summary_rows`), ``reference`` (the imported files'
    formats and hashes) and ``models`` (each prediction model's name, version and weights hash, with its number
    of series); series with a reference mask but no prediction are counted in ``n_without_prediction``.

    A series whose stored result (``SegmentationEvaluation``) has the current :func:`evaluation_key` is not
    recomputed (``n_reused`` counts them); each computed one is passed to ``store`` when given.
    """
    series_list = list(
        ImageSeries.objects.filter(cases__study=study, cases__practice=False)
        .exclude(reference_mask="")
        .distinct()
        .select_related("patient")
        .order_by("pk")
    )
    if not series_list:
        return None
    cases: dict[str, dict[str, Any]] = {}
    models: dict[tuple[str, str, str], int] = {}
    formats: dict[str, int] = {}
    missing = reused = 0
    stored = {e.series_id: e for e in SegmentationEvaluation.objects.filter(series__in=series_list)}
    for series in series_list:
        case = series.cases.filter(study=study).order_by("pk").first()
        prediction = shown_prediction(case) if case is not None else None
        if prediction is None or not prediction.overlay:
            missing += 1
            continue
        # The files are small next to the metrics: hashing what is read keys the result on the bytes themselves.
        with prediction.overlay.open("rb") as f:
            overlay = f.read()
        with default_storage.open(series.reference_mask, "rb") as f:
            mask = f.read()
        key = evaluation_key(
            series=series,
            prediction=prediction,
            overlay_sha256=hashlib.sha256(overlay).hexdigest(),
            mask_sha256=hashlib.sha256(mask).hexdigest(),
            bins=study.size_bins_mm,
            tolerance_mm=tolerance_mm,
            topology=topology,
        )
        name = f"{series.patient.pseudonym} {series.pk}"
        previous = stored.get(series.pk)
        if previous is not None and previous.key == key:
            cases[name] = _decode(previous.result)
            reused += 1
        else:
            grid = series_grid(series)
            predicted = _prediction_masks(prediction, series, grid, overlay)
            reference = _imported_reference(series, grid, mask)
            started = time.perf_counter()
            cases[name] = evaluate_case(
                predicted, reference, grid.spacing_mm, bins=study.size_bins_mm, tolerance_mm=tolerance_mm,
                topology=topology,
            )  # fmt: skip
            if store is not None:
                store(series, key, _encode(cases[name]), time.perf_counter() - started)
        identity = (prediction.model_name, prediction.model_version, prediction.weights_sha256)
        models[identity] = models.get(identity, 0) + 1
        fmt = str(series.reference_mask_info.get("format") or "unknown")
        formats[fmt] = formats.get(fmt, 0) + 1
    out: dict[str, Any] = {
        "n_with_reference": len(series_list),
        "n_without_prediction": missing,
        "n_reused": reused,  # series whose stored result was still current
        "reference": {
            "source": "reference masks imported with the cases (manifest column reference_mask)",
            "formats": formats,
            "files": {
                f"{s.patient.pseudonym} {s.pk}": s.reference_mask_info.get("file_sha256", "") for s in series_list
            },
        },
        "models": [
            {"model_name": n, "model_version": v, "weights_sha256": h, "n_series": k}
            for (n, v, h), k in sorted(models.items())
        ],
    }
    if not cases:
        return {**out, "error": "no series with a reference mask has a stored prediction with an overlay"}
    report = segmentation_report(cases, bins=study.size_bins_mm, tolerance_mm=tolerance_mm)
    return {**out, **report, "rows": summary_rows(report)}
