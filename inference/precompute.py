"""Batch precompute of DL predictions for a study's cases (the thin Django layer around ``inference.pipeline``).

Idempotent: a case whose inputs hash (series files + model hashes + parameters) already has a prediction is
skipped, so a crashed batch resumes where it stopped. Each case is stored in its own transaction; one case's
failure is reported and the batch goes on.
"""

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from inference.actions import record_prediction
from inference.models import BACKENDS, Prediction
from readerstudy.studies.models import Case, Study

__all__ = ["BACKENDS", "PrecomputeSummary", "load_models", "precompute"]
MATCH_TOLERANCE_MM = 10.0


@dataclass
class PrecomputeSummary:
    done: int = 0
    skipped: int = 0
    frozen: int = 0  # cases of launched studies: their predictions were frozen at launch
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)


def load_models(backend: str, device: str) -> tuple[Any, Any]:
    """The segmentation backend and the classifier; missing weights raise an error naming the files."""
    from inference.pipeline.classify import Classifier
    from inference.pipeline.segment import PhantomUNetBackend, TotalSegmentatorBackend

    models = Path(settings.INFERENCE_MODELS_DIR)
    if backend == "phantom-unet":
        segmenter = PhantomUNetBackend(models / "phantom_unet.pt", device=device)
    elif backend == "totalsegmentator":
        segmenter = TotalSegmentatorBackend(device=device)
    else:
        raise ValueError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    return segmenter, Classifier(models / "lesion_classifier.pt", device=device)


class SeriesCache:
    """Reads and segments each series once per batch: a patient's lesions share one series."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.name, self.version, self.weights_sha256 = backend.name, backend.version, backend.weights_sha256
        self.device = getattr(backend, "device", "cpu")
        self._volumes: dict[str, Any] = {}
        self._segmentations: dict[tuple, Any] = {}

    def volume(self, folder: str) -> Any:
        from inference.pipeline.dicom import read_series

        if folder not in self._volumes:
            self._volumes = {folder: read_series(Path(folder))}  # keep one: series are visited in order
        return self._volumes[folder]

    def segment(self, volume: Any, workdir: Path) -> Any:
        key = tuple(volume.file_sha256)
        if key not in self._segmentations:
            self._segmentations = {key: self.backend.segment(volume, workdir)}
        return self._segmentations[key]


def precompute(
    cases: Iterable[Case],
    *,
    backend: Any,
    classifier: Any,
    actor: Any = None,
    force: bool = False,
    on_case: Callable[[Case, str], None] | None = None,
) -> PrecomputeSummary:
    """Predict every case (ordered by series so that each series is read and segmented once)."""
    from inference.pipeline.run import inputs_sha256, predict_case

    summary = PrecomputeSummary()
    started = time.perf_counter()
    cached = SeriesCache(backend)
    for case in sorted(cases, key=lambda c: (c.series_id, c.case_id)):
        series = case.series
        target = (case.lesion_x_mm, case.lesion_y_mm, case.lesion_z_mm)
        bins = case.study.size_bins_mm
        outcome = "done"
        if case.study.status != Study.Status.DRAFT:
            summary.frozen += 1
            if on_case is not None:
                on_case(case, "frozen")
            continue
        try:
            volume = cached.volume(series.path)
            key = inputs_sha256(
                Path(series.path), target, backend=cached, classifier=classifier, bins=bins,
                tolerance_mm=MATCH_TOLERANCE_MM, target_diameter_mm=case.diameter_mm,
                file_hashes=list(volume.file_sha256),
            )  # fmt: skip
            if not force and Prediction.objects.filter(case=case, inputs_sha256=key).exists():
                summary.skipped += 1
                outcome = "skipped"
            else:
                result = predict_case(
                    Path(series.path), target, backend=cached, classifier=classifier, bins=bins,
                    tolerance_mm=MATCH_TOLERANCE_MM, target_diameter_mm=case.diameter_mm, volume=volume,
                )  # fmt: skip
                record_prediction(
                    actor, case,
                    model_name=f"{result.models['segmentation']['name']}+{result.models['classifier']['name']}",
                    model_version=f"{result.models['segmentation']['version']}+{result.models['classifier']['version']}",
                    weights_sha256=_combined_sha(result.models),
                    inputs_sha256=result.inputs_sha256,
                    probability=result.probability,
                    labelmap=result.labelmap,
                    labels=result.labelmap_labels,
                    lesions=result.lesions,
                    seg_bytes=result.seg_bytes,
                    runtime_seconds=result.runtime_seconds,
                    device=result.device,
                    replace=force,
                )  # fmt: skip
                for stage, seconds in result.timings.items():
                    summary.stage_seconds[stage] = summary.stage_seconds.get(stage, 0.0) + seconds
                summary.done += 1
        except Exception as exc:
            summary.failed += 1
            summary.errors.append(f"{case.case_id} ({series.path}): {type(exc).__name__}: {exc}")
            outcome = "failed"
        if on_case is not None:
            on_case(case, outcome)
    summary.seconds = time.perf_counter() - started
    return summary


def _combined_sha(models: dict) -> str:
    import hashlib

    return hashlib.sha256("".join(m["sha256"] for m in models.values()).encode()).hexdigest()
