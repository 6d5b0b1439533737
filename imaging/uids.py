"""DICOM UIDs typed by people (manifest columns): the syntax check, and the check of what a PACS sent back.

A UID (PS3.5 section 9.1) is 1-64 characters of digits and dots: components separated by single dots, each a
run of digits without a leading zero (``0`` alone is fine). Anything else in a manifest is a row error before
it reaches a URL or a query: the UIDs are put into DICOMweb paths, so a value like ``1.2/../../x`` or
``1.2?limit=`` must never get that far.
"""

from __future__ import annotations

import unicodedata

import pydicom

UID_MAX = 64
UID_RULE = f"1 to {UID_MAX} characters of digits and dots, e.g. 1.2.840.113619.2.55.3 (no leading zeros)"


def _shown(value: str, limit: int = 40) -> str:
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} characters)"


def uid_problem(value: str) -> str | None:
    """Why ``value`` is not a DICOM UID, or None when it is one."""
    if not value:
        return "empty"
    if len(value) > UID_MAX:
        return f"{_shown(value)} is longer than {UID_MAX} characters"
    odd = next((c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Zs")), None)
    if odd is not None:
        return f"{_shown(value)} contains U+{ord(odd):04X}"
    odd = next((c for c in value if c not in "0123456789."), None)
    if odd is not None:
        return f"{_shown(value)} contains {odd!r}; a UID has digits and dots only"
    components = value.split(".")
    if any(not part for part in components):
        return f"{_shown(value)} has an empty component (a leading, trailing or double dot)"
    if any(len(part) > 1 and part.startswith("0") for part in components):
        return f"{_shown(value)} has a component with a leading zero"
    return None


def instance_problem(ds: pydicom.Dataset, study_uid: str, series_uid: str) -> str | None:
    """Why a retrieved instance is not one of the series that was asked for, or None (a PACS may misbehave)."""
    got_series = str(ds.get("SeriesInstanceUID", ""))
    got_study = str(ds.get("StudyInstanceUID", ""))
    if got_series != series_uid or got_study != study_uid:
        return (
            f"an instance of series {_shown(got_series)} in study {_shown(got_study)} came back, not of the one asked"
        )
    if not str(ds.get("SOPInstanceUID", "")):
        return "an instance without SOPInstanceUID came back"
    return None
