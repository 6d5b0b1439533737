"""Overlays: the viewer's uint8 labelmap and a compact DICOM SEG (highdicom, BINARY, empty frames omitted).

Labelmap values (:data:`LABELMAP_LABELS`): 0 background, 1 liver, 2 target lesion, 3 other lesions. The
labelmap is ``[slices, rows, columns]`` in the series' slice order (:attr:`Volume.paths`).

DICOM SEG segments: 1 = liver, then one segment per lesion instance (``Lesion n``, the target one labelled
``(target)``), each with a recommended display colour and referencing the source images' SOP instance UIDs.
Segments overlap (the liver contains its lesions), which BINARY allows and a LABELMAP SEG would not.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from imaging.series import Volume, derived_uid
from inference.pipeline.lesions import Lesion

__all__ = ["LABELMAP_LABELS", "SegSummary", "label_color", "make_dicom_seg", "make_labelmap", "read_seg", "with_colors"]

LIVER, TARGET, OTHER = 1, 2, 3
# The one home of the overlay palette: Okabe-Ito, distinguishable with the common colour-vision deficiencies.
# The viewer's lesion marker is Okabe-Ito yellow (240, 228, 66), which no label uses.
LABELMAP_LABELS: list[dict[str, object]] = [
    {"value": LIVER, "name": "liver", "color": [0, 158, 115]},  # bluish green
    {"value": TARGET, "name": "target lesion", "color": [230, 159, 0]},  # orange
    {"value": OTHER, "name": "other lesion", "color": [86, 180, 233]},  # sky blue
]
# A label value outside the palette (none today) still gets a colour: Okabe-Ito reddish purple.
UNKNOWN_LABEL_COLOR = (204, 121, 167)
_RGB: dict[object, list[int]] = {d["value"]: cast(list[int], d["color"]) for d in LABELMAP_LABELS}


def label_color(value: object) -> list[int]:
    """The current palette's RGB of a labelmap value."""
    return list(_RGB.get(value, UNKNOWN_LABEL_COLOR))


def with_colors(labels: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Labels as stored with a prediction, each with the current palette's colour (older predictions stored
    other colours, or none): what is shown follows this module, not the day a prediction was computed."""
    return [{**label, "color": label_color(label.get("value"))} for label in labels if isinstance(label, dict)]


def make_labelmap(liver_mask: np.ndarray, instance_labels: np.ndarray, target_label: int | None) -> np.ndarray:
    """uint8 ``[z, y, x]``: 1 liver, 2 the target lesion (instance ``target_label``), 3 other lesions."""
    out = np.zeros(liver_mask.shape, dtype=np.uint8)
    out[liver_mask] = LIVER
    out[instance_labels > 0] = OTHER
    if target_label is not None:
        out[instance_labels == target_label] = TARGET
    return out


def make_dicom_seg(
    volume: Volume,
    liver_mask: np.ndarray,
    instance_labels: np.ndarray,
    lesions: Sequence[Lesion],
    target_label: int | None,
    *,
    algorithm_name: str,
    algorithm_version: str,
    uid_seed: str,
    series_number: int = 900,
    software_version: str = "inference.pipeline 1",
) -> bytes:
    """A BINARY DICOM SEG of the liver and each lesion over ``volume``'s images; returns the file bytes.

    ``uid_seed`` (e.g. the prediction's inputs hash) fixes the SEG's series and instance UIDs, so the same
    inputs give the same UIDs. Segments with no voxel are left out (a SEG segment must have a frame).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if not volume.headers:
        raise ValueError("the volume has no source headers (read it with imaging.series.read_series)")
    algo = hd.AlgorithmIdentificationSequence(
        name=algorithm_name[:64], family=codes.DCM.ArtificialIntelligence, version=algorithm_version[:64]
    )

    def colour(value: int) -> hd.color.CIELabColor:
        r, g, b = _RGB[value]
        return hd.color.CIELabColor.from_rgb(r, g, b)

    masks: list[np.ndarray] = []
    descriptions = []
    if liver_mask.any():
        masks.append(liver_mask)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=1,
                segment_label="Liver",
                segmented_property_category=codes.SCT.Organ,
                segmented_property_type=codes.SCT.Liver,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algo,
                tracking_uid=derived_uid(uid_seed, "segment", "liver"),
                tracking_id="liver",
                display_color=colour(LIVER),
            )
        )
    for le in lesions:
        m = instance_labels == le.label
        if not m.any():
            continue
        is_target = le.label == target_label
        masks.append(m)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=len(descriptions) + 1,
                segment_label=f"Lesion {le.label}" + (" (target)" if is_target else ""),
                segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
                segmented_property_type=codes.SCT.Lesion,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algo,
                tracking_uid=derived_uid(uid_seed, "segment", "lesion", le.label),
                tracking_id=f"lesion-{le.label}",
                anatomic_regions=[codes.SCT.Liver],
                display_color=colour(TARGET if is_target else OTHER),
            )
        )
    if not masks:
        raise ValueError("nothing to store: liver and lesion masks are empty")
    pixel_array = np.stack(masks, axis=-1).astype(np.uint8)  # [frames, rows, cols, segments], slice order
    with warnings.catch_warnings():
        # pseudonyms such as "P001" are single-component person names on purpose
        warnings.filterwarnings(
            "ignore", message=".*unlikely to represent the intended person name", category=UserWarning
        )
        seg = _segmentation(
            hd, volume, pixel_array, descriptions, uid_seed, series_number, algorithm_name, software_version
        )
    buf = io.BytesIO()
    seg.save_as(buf)
    return buf.getvalue()


def _segmentation(
    hd: Any,
    volume: Volume,
    pixel_array: np.ndarray,
    descriptions: list[Any],
    uid_seed: str,
    series_number: int,
    algorithm_name: str,
    software_version: str,
) -> Any:
    return hd.seg.Segmentation(
        source_images=list(volume.headers),
        pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=derived_uid(uid_seed, "seg-series"),
        series_number=series_number,
        sop_instance_uid=derived_uid(uid_seed, "seg-instance"),
        instance_number=1,
        manufacturer="readerstudy",
        manufacturer_model_name=algorithm_name[:64],
        software_versions=software_version,
        device_serial_number="0",
        series_description="DL liver/lesion segmentation",
        omit_empty_frames=True,
    )


@dataclass(frozen=True)
class SegSummary:
    """What a DICOM SEG holds, read back with highdicom (for checks and tests)."""

    segment_labels: dict[int, str]
    voxel_counts: dict[int, int]
    referenced_sop_instance_uids: list[str]
    series_instance_uid: str
    frames: int


def read_seg(data: bytes, source_sop_instance_uids: Sequence[str] | None = None) -> SegSummary:
    """Read SEG bytes with highdicom: segment labels, voxels per segment, referenced image UIDs."""
    import highdicom as hd

    seg = hd.seg.segread(io.BytesIO(data))
    labels = {int(n): seg.get_segment_description(n).segment_label for n in seg.get_segment_numbers()}
    refs = [
        str(item.ReferencedSOPInstanceUID)
        for s in seg.ReferencedSeriesSequence
        for item in s.ReferencedInstanceSequence
    ]
    uids = list(source_sop_instance_uids) if source_sop_instance_uids is not None else refs
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids,
        segment_numbers=sorted(labels),
        combine_segments=False,
        ignore_spatial_locations=True,
    )
    counts = {n: int(pixels[..., i].sum()) for i, n in enumerate(sorted(labels))}
    return SegSummary(labels, counts, refs, str(seg.SeriesInstanceUID), int(seg.NumberOfFrames))
