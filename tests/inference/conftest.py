"""Shared fixtures for the inference pipeline tests (pure: no database, no web server)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from fixtures.phantom import Phantom, deterministic_uid, make_anatomy, make_phantom, plan_lesions, write_ct_series

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "fixtures" / "models"
TOTALSEG_EXAMPLE = REPO / "tests" / "data" / "totalseg_example"  # a copy with its NOTICE (tests/data/README.md)


@dataclass
class PhantomSeries:
    phantom: Phantom
    folder: Path
    paths: list[Path]


def make_series(folder: Path, seed: int, lesions: list[tuple[str, float]]) -> PhantomSeries:
    """A phantom with lesions of given class and diameter placed in its liver, written as a DICOM series."""
    rng = np.random.default_rng([seed, 4242])
    anatomy = make_anatomy(rng)
    specs = plan_lesions(
        rng, len(lesions), anatomy, labels=[c for c, _ in lesions], diameters_mm=[d for _, d in lesions]
    )
    ph = make_phantom(rng, specs, anatomy=anatomy)
    paths = write_ct_series(ph, folder, "TEST01", deterministic_uid(seed, "study"), deterministic_uid(seed, "series"))
    return PhantomSeries(ph, folder, paths)


STANDARD_LESIONS = [("crlm", 24.0), ("hemangioma", 14.0), ("crlm", 8.0)]


@pytest.fixture(scope="session")
def phantom_series(tmp_path_factory: pytest.TempPathFactory) -> PhantomSeries:
    return make_series(tmp_path_factory.mktemp("phantom") / "series", 31337, STANDARD_LESIONS)


@pytest.fixture(scope="session")
def totalseg_example() -> Path:
    folder = TOTALSEG_EXAMPLE / "example_ct_dicom"
    if not folder.is_dir():
        pytest.skip(f"real CT example not found at {folder} (tests/data/totalseg_example is missing from this checkout)")
    return folder


@pytest.fixture(scope="session")
def unet_backend():
    from inference.pipeline.segment import PhantomUNetBackend

    return PhantomUNetBackend(MODELS / "phantom_unet.pt")


@pytest.fixture(scope="session")
def classifier():
    from inference.pipeline.classify import Classifier

    return Classifier(MODELS / "lesion_classifier.pt")
