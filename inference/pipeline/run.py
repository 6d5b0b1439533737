"""One case end to end: series folder + target centre -> :class:`CasePrediction`.

Stages (each timed): read (DICOM -> volume), segment (liver + lesions), lesions (instances, sizes, matching the
target), classify (CRLM probability of the matched lesion), seg (labelmap + DICOM SEG).

If no lesion matches the target, the classifier runs on crops at the manifest centre (with the manifest's
reference diameter, else 10 mm) and :attr:`CasePrediction.probability_source` says so: a reader study needs a
probability for every case, and the overlay then shows no target lesion.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from imaging.series import Volume, list_dicom_files, read_series
from inference.pipeline.lesions import find_lesions, match_targets
from inference.pipeline.seg import LABELMAP_LABELS, make_dicom_seg, make_labelmap
from inference.pipeline.segment import SegmentationBackend, file_sha256

__all__ = [
    "PIPELINE_VERSION",
    "CasePrediction",
    "FoundLesions",
    "LesionClassifier",
    "inputs_sha256",
    "predict_case",
    "segmentation_sha256",
]

# Part of every inputs hash and of the stored model_version. 2: the size bins left the inputs and the lesion
# records (no "stratum" per lesion), so predictions of version 1 hash differently and are named "pipeline 1".
PIPELINE_VERSION = "2"
FALLBACK_DIAMETER_MM = 10.0


class LesionClassifier(Protocol):
    """A classifier backend (inference.pipeline.classify.Classifier, .slice_classifier.SliceClassifier,
    .radiomics.RadiomicsClassifier, .multiseries.MultiSeriesClassifier). One with ``uses_mask = True`` is also given
    the matched lesion's ``mask``; one with ``uses_series = True`` every series of the case by role (``series``,
    the primary one included) and the primary series' role (``primary_role``)."""

    name: str
    version: str
    weights_sha256: str

    def predict(
        self,
        hu: np.ndarray,
        spacing_mm: Sequence[float],
        centre_index: Sequence[float] | np.ndarray,
        diameter_mm: float,
        *,
        z_range: tuple[int, int] | None = None,
    ) -> tuple[float, np.ndarray]: ...


@dataclass
class CasePrediction:
    """Everything the Django side stores for one case (see ``inference.models.Prediction``)."""

    probability: float
    probability_source: str  # "matched lesion" or "manifest centre (no lesion matched)"
    target_matched: bool
    labelmap: np.ndarray  # uint8 [slices, rows, columns], series slice order
    labelmap_labels: list[dict[str, Any]]
    lesions: list[dict[str, Any]]
    seg_bytes: bytes
    timings: dict[str, float]
    device: str
    models: dict[str, dict[str, str]]
    inputs_sha256: str
    slice_sop_instance_uids: list[str]
    notes: list[str] = field(default_factory=list)
    crop_logits: list[float] = field(default_factory=list)

    @property
    def runtime_seconds(self) -> float:
        return float(sum(self.timings.values()))

    @property
    def target(self) -> dict[str, Any] | None:
        return next((le for le in self.lesions if le["is_target"]), None)

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable fields (no arrays or bytes)."""
        return {
            "probability": self.probability,
            "probability_source": self.probability_source,
            "target_matched": self.target_matched,
            "labelmap_shape": list(self.labelmap.shape),
            "labelmap_labels": self.labelmap_labels,
            "lesions": self.lesions,
            "seg_bytes": len(self.seg_bytes),
            "timings": self.timings,
            "device": self.device,
            "models": self.models,
            "inputs_sha256": self.inputs_sha256,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class FoundLesions:
    """What a case's segmentation gives every classifier alike: lesions, instance labels, the target's index, the
    labelmap and the DICOM SEG (a backend comparison classifies these again; it need not find or write them again).
    """

    lesions: list[Any]
    instances: np.ndarray
    target_index: int | None
    labelmap: np.ndarray
    seg_bytes: bytes
    seconds: dict[str, float]


def _find_lesions(
    vol: Volume,
    target_lps_mm: Sequence[float],
    *,
    backend: SegmentationBackend,
    tolerance_mm: float,
    workdir: Path | None,
    seg_key: str,
) -> FoundLesions:
    """Segment, find the lesions, match the target, make the labelmap and the SEG (timed by stage)."""
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="segment-") as tmp:
            seg = backend.segment(vol, Path(tmp))
    else:
        seg = backend.segment(vol, Path(workdir))
    seconds["segment"] = time.perf_counter() - t

    t = time.perf_counter()
    lesions, instances = find_lesions(seg.lesion_mask, seg.liver_mask, vol.spacing_mm, vol.affine)
    match = match_targets(lesions, [target_lps_mm], tolerance_mm)
    li = match.lesion_for(0)
    seconds["lesions"] = time.perf_counter() - t

    t = time.perf_counter()
    target_label = lesions[li].label if li is not None else None
    labelmap = make_labelmap(seg.liver_mask, instances, target_label)
    seg_bytes = make_dicom_seg(
        vol,
        seg.liver_mask,
        instances,
        lesions,
        target_label,
        algorithm_name=str(backend.name),
        algorithm_version=str(backend.version),
        uid_seed=seg_key,
    )
    seconds["seg"] = time.perf_counter() - t
    return FoundLesions(lesions, instances, li, labelmap, seg_bytes, seconds)


def _identity(obj: Any) -> dict[str, str]:
    return {"name": str(obj.name), "version": str(obj.version), "sha256": str(obj.weights_sha256)}


def inputs_sha256(
    series_folder: Path,
    target_lps_mm: Sequence[float],
    *,
    backend: SegmentationBackend,
    classifier: LesionClassifier,
    tolerance_mm: float,
    target_diameter_mm: float | None = None,
    file_hashes: Sequence[str] | None = None,
    other_series: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """Hash of the series files, the model identities and the parameters: unchanged -> same hash (skip).

    ``other_series``: the file hashes of the case's further series by role, for a classifier that reads them
    (left out of the payload otherwise, so single-series hashes stay what they were)."""
    if file_hashes is None:
        file_hashes = sorted(file_sha256(p) for p in list_dicom_files(Path(series_folder)))
    payload: dict[str, Any] = {
        "pipeline": PIPELINE_VERSION,
        "files": sorted(file_hashes),
        "segmentation": _identity(backend),
        "classifier": _identity(classifier),
        "target_lps_mm": [round(float(v), 3) for v in target_lps_mm],
        "target_diameter_mm": None if target_diameter_mm is None else round(float(target_diameter_mm), 3),
        "tolerance_mm": float(tolerance_mm),
    }
    if other_series:
        payload["other_series"] = {role: sorted(hashes) for role, hashes in sorted(other_series.items())}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def segmentation_sha256(
    file_hashes: Sequence[str], target_lps_mm: Sequence[float], *, backend: SegmentationBackend, tolerance_mm: float
) -> str:
    """Hash of what the lesions, the labelmap and the SEG depend on (not the classifier): it keys
    :class:`FoundLesions` and seeds the SEG's UIDs, so each classifier's prediction of a case stores the same SEG."""
    payload = {
        "pipeline": PIPELINE_VERSION,
        "files": sorted(file_hashes),
        "segmentation": _identity(backend),
        "target_lps_mm": [round(float(v), 3) for v in target_lps_mm],
        "tolerance_mm": float(tolerance_mm),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def predict_case(
    series_folder: Path,
    target_lps_mm: Sequence[float],
    *,
    backend: SegmentationBackend,
    classifier: LesionClassifier,
    tolerance_mm: float = 10.0,
    target_diameter_mm: float | None = None,
    workdir: Path | None = None,
    volume: Volume | None = None,
    series: Mapping[str, Volume] | None = None,
    primary_role: str = "portal-venous",
    found: dict[str, FoundLesions] | None = None,
) -> CasePrediction:
    """Run the pipeline on one case.

    Args:
        series_folder: the (de-identified) series.
        target_lps_mm: the manifest's lesion centre, LPS ``(x, y, z)`` mm.
        backend: a :class:`~inference.pipeline.segment.SegmentationBackend` (its device is the pipeline's).
        classifier: a loaded :class:`~inference.pipeline.classify.Classifier`.
        tolerance_mm: target-to-centroid matching distance (see :func:`~inference.pipeline.lesions.match_targets`).
        target_diameter_mm: the manifest's reference diameter, used only for the fallback crop.
        workdir: scratch folder for the backend (a temporary one when omitted).
        volume: an already read volume of ``series_folder`` (skips the read stage).
        series: the case's further series by role (read already), for a classifier with ``uses_series``.
        primary_role: the role of ``series_folder`` (the case's primary series).
        found: a memo the caller keeps across classifiers of the same case (``precompute --also-classifier``):
            the lesions and SEG found for an earlier classifier are reused, and those found here are added.
    """
    timings: dict[str, float] = {}
    notes: list[str] = []
    t = time.perf_counter()
    vol = volume if volume is not None else read_series(Path(series_folder))
    timings["read"] = time.perf_counter() - t
    notes.extend(vol.notes)
    # A multi-series classifier reads every series of the case: their files are inputs too.
    uses_series = bool(getattr(classifier, "uses_series", False))
    others = {role: v for role, v in (series or {}).items() if role != primary_role} if uses_series else {}
    series_kwargs: dict[str, Any] = (
        {"series": {**others, primary_role: vol}, "primary_role": primary_role} if uses_series else {}
    )
    file_hashes = list(vol.file_sha256) or sorted(file_sha256(p) for p in list_dicom_files(Path(series_folder)))
    key = inputs_sha256(
        series_folder,
        target_lps_mm,
        backend=backend,
        classifier=classifier,
        tolerance_mm=tolerance_mm,
        target_diameter_mm=target_diameter_mm,
        file_hashes=file_hashes,
        other_series={role: v.file_sha256 for role, v in others.items()} or None,
    )

    seg_key = segmentation_sha256(file_hashes, target_lps_mm, backend=backend, tolerance_mm=tolerance_mm)
    known = found.get(seg_key) if found is not None else None
    if known is None:
        known = _find_lesions(vol, target_lps_mm, backend=backend, tolerance_mm=tolerance_mm, workdir=workdir,
                              seg_key=seg_key)  # fmt: skip
        if found is not None:
            found[seg_key] = known
        timings.update(known.seconds)
    else:
        timings.update({stage: 0.0 for stage in known.seconds})  # reused: nothing was computed for this one
    lesions, instances = known.lesions, known.instances
    target = lesions[known.target_index] if known.target_index is not None else None

    t = time.perf_counter()
    if target is not None:
        prob, logits = classifier.predict(
            vol.hu, vol.spacing_mm, target.centroid_index, target.diameter_mm, z_range=target.slices,
            **({"mask": instances == target.label} if getattr(classifier, "uses_mask", False) else {}),
            **series_kwargs,
        )  # fmt: skip
        source = "matched lesion"
    else:
        diameter = float(target_diameter_mm) if target_diameter_mm else FALLBACK_DIAMETER_MM
        centre = vol.lps_to_index(target_lps_mm)
        if np.any(centre < -0.5) or np.any(centre > np.array(vol.shape) - 0.5):
            raise ValueError(
                f"target {list(target_lps_mm)} mm lies outside the series {series_folder} "
                f"(index {centre.round(1).tolist()})"
            )
        prob, logits = classifier.predict(vol.hu, vol.spacing_mm, centre, diameter, **series_kwargs)
        source = "manifest centre (no lesion matched)"
        notes.append(
            f"no segmented lesion within {tolerance_mm} mm of the target; classified crops at the manifest centre "
            f"({diameter:g} mm field)"
        )
    timings["classify"] = time.perf_counter() - t

    target_label = target.label if target is not None else None
    labelmap, seg_bytes = known.labelmap, known.seg_bytes

    lesion_dicts = []
    for le in lesions:
        d = le.to_dict()
        d["centroid_mm"] = d.pop("centroid_lps_mm")
        d["is_target"] = le.label == target_label
        lesion_dicts.append(d)
    device = str(getattr(backend, "device", getattr(classifier, "device", "cpu")))
    return CasePrediction(
        probability=float(prob),
        probability_source=source,
        target_matched=target is not None,
        labelmap=labelmap,
        labelmap_labels=[dict(d) for d in LABELMAP_LABELS],
        lesions=lesion_dicts,
        seg_bytes=seg_bytes,
        timings={k: round(v, 4) for k, v in timings.items()},
        device=device,
        models={"segmentation": _identity(backend), "classifier": _identity(classifier)},
        inputs_sha256=key,
        slice_sop_instance_uids=list(vol.sop_instance_uids),
        notes=notes,
        crop_logits=[float(v) for v in logits],
    )
