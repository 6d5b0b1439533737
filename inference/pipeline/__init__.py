"""Pure inference pipeline (no Django): DICOM series -> volume -> segmentation -> lesions -> classifier -> overlays.

Modules (import the one you need; torch and highdicom are only imported where they are used):

- :mod:`.dicom`: read and validate a CT series into a :class:`~.dicom.Volume`.
- :mod:`.deid`: DICOM PS3.15 basic-profile de-identification with deterministic UID remapping.
- :mod:`.segment`: segmentation backends (TotalSegmentator in a subprocess, a small MONAI UNet for phantoms).
- :mod:`.lesions`: lesion instances, diameters, volumes, matching to manifest targets.
- :mod:`.classify`: CRLM-vs-hemangioma classifier on 2D crops.
- :mod:`.seg`: DICOM SEG and the viewer's uint8 labelmap.
- :mod:`.run`: :func:`~.run.predict_case`, the one per-case entry point.
- :mod:`.evaluate`: Dice / HD95 summaries by size stratum.
"""
