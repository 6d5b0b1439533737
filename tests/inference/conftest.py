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


@pytest.fixture(scope="session")
def training_phantoms(tmp_path_factory):
    """Labelled phantom lesions for the classifier-backend training tests (6 patients, 14 lesions, masks/)."""
    from fixtures.phantom import generate_demo_study

    data = tmp_path_factory.mktemp("training-phantoms")
    generate_demo_study(data, seed=5, n_patients=6, n_lesions=14)
    return data


@pytest.fixture(scope="session")
def calibration_phantoms(tmp_path_factory):
    """Labelled phantom lesions for the backends' calibration tests: 10 patients, 30 lesions, half of them atypical
    (the classes overlap), in the portal-venous, arterial and delayed phases (the single-series backends read the
    portal-venous one). With 0.3 held out and 0.3 for calibration: 3, 3 and 4 training patients."""
    from fixtures.phantom import generate_demo_study

    data = tmp_path_factory.mktemp("calibration-phantoms")
    generate_demo_study(
        data, seed=5, n_patients=10, n_lesions=30, atypical_fraction=0.5, extra_series_roles=("arterial", "delayed")
    )
    return data


@pytest.fixture
def phantom_study(tmp_path, db):
    """A draft study of 2 phantom patients with 4 lesions (the demo's generator, another seed), cases imported."""
    from fixtures.phantom import generate_demo_study
    from readerstudy.studies import actions
    from tests.factories import make_user

    manifest = generate_demo_study(tmp_path / "data", seed=5, n_patients=2, n_lesions=4)
    admin = make_user("admin", superuser=True)
    study = actions.create_study(admin, "Backends", seed=3)
    actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False)
    actions.add_modality(admin, study, "aided", "Aided", shows_dl=True)
    actions.import_cases(admin, study, manifest)
    return study


@pytest.fixture
def models_folder(tmp_path):
    """``make(*files)``: a models folder (for INFERENCE_MODELS_DIR) with the shipped phantom UNet and ``files``."""
    import shutil

    def make(*trained):
        folder = tmp_path / "models"
        folder.mkdir(exist_ok=True)
        shutil.copy(MODELS / "phantom_unet.pt", folder / "phantom_unet.pt")
        for path in trained:
            shutil.copy(path, folder / Path(path).name)
        return folder

    return make
