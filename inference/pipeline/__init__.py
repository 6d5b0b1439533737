"""Pure inference pipeline (no Django): DICOM series -> volume -> segmentation -> lesions -> classifier -> overlays.

Reading a series (:func:`imaging.series.read_series`) and de-identification (:mod:`imaging.deid`) live in the
pure :mod:`imaging` package, which the web app uses without this pipeline.

Modules (import the one you need; torch and highdicom are only imported where they are used):

- :mod:`.segment`: segmentation backends (TotalSegmentator in a subprocess, a small MONAI UNet for phantoms).
- :mod:`.lesions`: lesion instances, diameters, volumes, matching to manifest targets.
- :mod:`.classify`: CRLM-vs-hemangioma classifier on 2D crops.
- :mod:`.seg`: DICOM SEG and the viewer's uint8 labelmap.
- :mod:`.run`: :func:`~.run.predict_case`, the one per-case entry point.
- :mod:`.evaluate`: Dice / HD95 summaries by size stratum.
"""
