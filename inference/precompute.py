"""Batch precompute of DL predictions for a study's cases (the thin Django layer around ``inference.pipeline``).

Idempotent: a case whose inputs hash (series files + model hashes + parameters) already has a prediction is
skipped, so a crashed batch resumes where it stopped. Each case is stored in its own transaction; one case's
failure is reported and the batch goes on.
"""

import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from inference.actions import record_prediction
from inference.models import BACKENDS, CLASSIFIERS, Prediction
from readerstudy.studies.models import Case, ImageSeries, Study
from readerstudy.studies.storage import local_series_folder

__all__ = ["BACKENDS", "CLASSIFIERS", "PrecomputeSummary", "load_models", "precompute"]
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


def load_models(backend: str, device: str, classifier: str = "densenet-crops") -> tuple[Any, Any]:
    """The segmentation backend and the classifier; missing weights raise an error naming the files."""
    from inference.pipeline.segment import PhantomUNetBackend, TotalSegmentatorBackend

    models = Path(settings.INFERENCE_MODELS_DIR)
    if classifier not in CLASSIFIERS:  # before a segmentation model is loaded
        raise ValueError(f"classifier {classifier!r}: expected one of {', '.join(CLASSIFIERS)}")
    check_device(device)
    if backend == "phantom-unet":
        segmenter = PhantomUNetBackend(models / "phantom_unet.pt", device=device)
    elif backend == "totalsegmentator":
        segmenter = TotalSegmentatorBackend(device=device)
    else:
        raise ValueError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    return segmenter, load_classifier(classifier, models, device)


def check_device(device: str) -> None:
    """Refuse a device this machine lacks before any model loads (every backend, TotalSegmentator's subprocess and
    the numpy-only radiomics included), with one message for all of them."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: expected cpu or cuda")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but torch sees no CUDA device on this machine")


def load_classifier(classifier: str, models: Path, device: str) -> Any:
    """One of :data:`CLASSIFIERS` from its file in ``models`` (README "DL inference", one paragraph each)."""
    if classifier == "radiomics":
        from inference.pipeline.radiomics import RadiomicsClassifier

        return RadiomicsClassifier(models / "radiomics_classifier.yaml")
    if classifier == "slice-topk":
        from inference.pipeline.slice_classifier import SliceClassifier

        return SliceClassifier(models / "slice_classifier.pt", device=device)
    if classifier == "multi-series":
        from inference.pipeline.multiseries import MultiSeriesClassifier

        return MultiSeriesClassifier(models / "multiseries_classifier.pt", device=device)
    from inference.pipeline.classify import Classifier

    return Classifier(models / "lesion_classifier.pt", device=device)


class SeriesCache:
    """Reads and segments each series once per batch: a patient's lesions share one series."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.name, self.version, self.weights_sha256 = backend.name, backend.version, backend.weights_sha256
        self.device = getattr(backend, "device", "cpu")
        self._volumes: dict[int, Any] = {}
        self._segmentations: dict[tuple, Any] = {}
        self._others: dict[int, tuple[ImageSeries, Any]] = {}
        self._folder: tuple[int, Path, ExitStack] | None = None
        # The lesions and SEG of the current series' cases, shared by the classifiers of a backend comparison.
        self.found: dict[str, Any] = {}

    def folder(self, series: ImageSeries) -> Path:
        """A local folder of the series, kept while its cases run (a download unless the storage is on disk)."""
        if self._folder is None or self._folder[0] != series.pk:
            self.close()  # keep one: series are visited in order
            stack = ExitStack()
            self._folder = (series.pk, stack.enter_context(local_series_folder(series)), stack)
        return self._folder[1]

    def other_volume(self, series: ImageSeries) -> Any:
        """A further series of a case (a multi-series classifier's input), read once per patient."""
        from imaging.series import read_series

        if series.pk not in self._others:
            if any(s.patient_id != series.patient_id for s, _ in self._others.values()):
                self._others = {}  # keep one patient's: cases are visited by primary series
            with local_series_folder(series) as folder:
                self._others[series.pk] = (series, read_series(folder))
        return self._others[series.pk][1]

    def close(self) -> None:
        if self._folder is not None:
            self._folder[2].close()
            self._folder = None

    def volume(self, series: ImageSeries) -> Any:
        from imaging.series import read_series

        if series.pk not in self._volumes:
            self._volumes = {series.pk: read_series(self.folder(series))}  # keep one: series are visited in order
            self.found = {}
        return self._volumes[series.pk]

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
    extra_classifiers: Sequence[Any] = (),
) -> PrecomputeSummary:
    """Predict every case (ordered by series so that each series is read and segmented once).

    ``extra_classifiers`` are further backends to store a prediction of, each case after its segmentation (the
    series' one, cached, and the case's lesions and SEG, found once: a backend comparison costs its classifier's
    time, not another segmentation, lesion search or SEG). They are
    stored before ``classifier``'s, so that ``classifier``'s is the newest: the one aided readers are shown.
    Counts are per prediction; ``on_case`` is called once per case, with the outcome of ``classifier``."""
    summary = PrecomputeSummary()
    started = time.perf_counter()
    cached = SeriesCache(backend)
    try:
        _run(cases, cached, [*extra_classifiers, classifier], actor, force, on_case, summary)
    finally:
        cached.close()  # a downloaded series folder is deleted
    summary.seconds = time.perf_counter() - started
    return summary


def _run(
    cases: Iterable[Case],
    cached: SeriesCache,
    classifiers: Sequence[Any],
    actor: Any,
    force: bool,
    on_case: Callable[[Case, str], None] | None,
    summary: PrecomputeSummary,
) -> None:
    for case in sorted(cases, key=lambda c: (c.series_id, c.case_id)):
        if case.study.status != Study.Status.DRAFT:
            summary.frozen += 1
            if on_case is not None:
                on_case(case, "frozen")
            continue
        outcome = "done"
        for classifier in classifiers:  # the shown one last
            outcome = _predict(case, cached, classifier, actor, force, summary)
        if on_case is not None:
            on_case(case, outcome)


def _predict(case: Case, cached: SeriesCache, classifier: Any, actor: Any, force: bool,
             summary: PrecomputeSummary) -> str:  # fmt: skip
    """One case with one classifier: stored, skipped (unchanged inputs) or failed (in ``summary.errors``)."""
    from inference.pipeline.run import PIPELINE_VERSION, inputs_sha256, predict_case

    series = case.series
    target = (case.lesion_x_mm, case.lesion_y_mm, case.lesion_z_mm)
    outcome = "done"
    try:
        volume = cached.volume(series)
        primary_role, others = _other_series(case, cached, classifier)
        key = inputs_sha256(
            cached.folder(series), target, backend=cached, classifier=classifier,
            tolerance_mm=MATCH_TOLERANCE_MM, target_diameter_mm=case.diameter_mm,
            file_hashes=list(volume.file_sha256),
            other_series={role: v.file_sha256 for role, v in others.items()} or None,
        )  # fmt: skip
        if not force and Prediction.objects.filter(case=case, inputs_sha256=key).exists():
            summary.skipped += 1
            outcome = "skipped"
        else:
            result = predict_case(
                cached.folder(series), target, backend=cached, classifier=classifier,
                tolerance_mm=MATCH_TOLERANCE_MM, target_diameter_mm=case.diameter_mm, volume=volume,
                series=others, primary_role=primary_role, found=cached.found,
            )  # fmt: skip
            record_prediction(
                actor, case,
                model_name=f"{result.models['segmentation']['name']}+{result.models['classifier']['name']}",
                model_version=_model_version(result.models, PIPELINE_VERSION),
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
        summary.errors.append(f"{case.case_id} ({series.storage_prefix}): {type(exc).__name__}: {exc}")
        outcome = "failed"
    return outcome


def _other_series(case: Case, cached: SeriesCache, classifier: Any) -> tuple[str, dict[str, Any]]:
    """The primary series' role and, for a classifier that reads several series, the case's others it needs by
    role (read); a missing one raises MissingSeriesError naming the case and the phase."""
    from readerstudy.studies.models import CaseSeries
    from readerstudy.studies.roles import DEFAULT_SERIES_ROLE

    if not getattr(classifier, "uses_series", False):
        return DEFAULT_SERIES_ROLE, {}
    from inference.pipeline.multiseries import check_series

    rows = {row.role: row for row in CaseSeries.objects.filter(case=case).select_related("series")}
    primary = next((row.role for row in rows.values() if row.position == 0), DEFAULT_SERIES_ROLE)
    check_series([primary, *(r for r in rows if r != primary)], classifier.roles, case.case_id)
    needed = [role for role in classifier.roles if role != primary]
    return primary, {role: cached.other_volume(rows[role].series) for role in needed}


def _model_version(models: dict, pipeline: str) -> str:
    # The pipeline's version too: its parameters changed (size bins left them in version 2) while the weights
    # did not, and a prediction should say which pipeline made it.
    return f"{models['segmentation']['version']}+{models['classifier']['version']} (pipeline {pipeline})"


def _combined_sha(models: dict) -> str:
    import hashlib

    return hashlib.sha256("".join(m["sha256"] for m in models.values()).encode()).hexdigest()
