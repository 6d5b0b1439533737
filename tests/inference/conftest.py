"""Shared fixtures for the inference pipeline tests (pure: no database, no web server).

The DICOM series fixtures (``phantom_series``, ``totalseg_example``) live in tests/conftest.py: tests/imaging uses
them too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "fixtures" / "models"


@pytest.fixture(scope="session")
def unet_backend():
    from inference.pipeline.segment import PhantomUNetBackend

    return PhantomUNetBackend(MODELS / "phantom_unet.pt")


@pytest.fixture(scope="session")
def classifier():
    from inference.pipeline.classify import Classifier

    return Classifier(MODELS / "lesion_classifier.pt")
