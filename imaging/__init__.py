"""Pure DICOM handling shared by the web app and the inference pipeline: no Django, no torch.

Modules (import the one you need):

- :mod:`.headers`: the import check of a series folder: headers only, slice geometry (:func:`~.headers.probe_series`).
- :mod:`.series`: read and validate a CT series into a :class:`~.series.Volume` (pixel data, UID repair).
- :mod:`.deid`: DICOM PS3.15 basic-profile de-identification with deterministic UID remapping.
"""
