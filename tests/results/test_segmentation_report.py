"""The report's segmentation section: the stored predictions against the reference masks imported with the cases,
computed when the run is made and shown per structure and lesion size stratum (numbers checked)."""

import re

import numpy as np
import pytest
from django.core.management import call_command
from django.test import Client

from fixtures.manifests import balanced_rows, write_manifest
from fixtures.phantom.nifti import write_labelmap_nifti
from inference.actions import record_prediction
from readerstudy.reading.actions import launch_study
from readerstudy.results.models import AnalysisRun
from readerstudy.studies import actions
from tests.factories import make_user

pytestmark = pytest.mark.django_db

FORM = {"cov": "jackknife", "analyses": ["rrrc"], "size_bins_mm": "10, 30", "cluster_by_patient": "on"}
SHAPE, SPACING = (5, 8, 8), (2.5, 1.0, 1.0)  # fixtures.manifests' tiny series


@pytest.fixture(autouse=True)
def run_jobs_on_commit(monkeypatch):
    monkeypatch.setattr("django.db.transaction.on_commit", lambda func, using=None, robust=False: func())


def _labelmap(lesion: tuple[int, int, int] | None) -> np.ndarray:
    lab = np.zeros(SHAPE, np.uint8)
    lab[1:4, 1:7, 1:7] = 1
    if lesion is not None:
        lab[lesion] = 2
    return lab


def _study(tmp_path, with_masks: bool):
    admin = make_user("admin", superuser=True)
    study = actions.create_study(admin, "Seg", design="crossover", washout_days=28, seed=3)
    actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False)
    actions.add_modality(admin, study, "aided", "DL-assisted", shows_dl=True)
    for i in (1, 2):
        actions.add_member(admin, study, make_user(f"reader{i}"), "reader")
    actions.add_member(admin, study, make_user("stat"), "statistician")
    rows = balanced_rows(6, 2)
    folder = tmp_path / "import"
    (folder / "masks").mkdir(parents=True)
    if with_masks:  # P001: the prediction equals the reference; P002: its one-voxel lesion predicted 3 mm away
        for patient in ("P001", "P002"):
            write_labelmap_nifti(folder / "masks" / f"{patient}.nii.gz", _labelmap((2, 3, 2)), SPACING, (0, 0, 0))
        for row in rows:
            if row["patient_id"] in ("P001", "P002"):
                row["reference_mask"] = f"masks/{row['patient_id']}.nii.gz"
    actions.import_cases(admin, study, write_manifest(folder, rows))
    rng = np.random.default_rng(7)
    for case in study.cases.select_related("truth", "patient"):
        lesion = (2, 3, 5) if case.patient.pseudonym == "P002" else (2, 3, 2)
        record_prediction(
            admin, case, model_name="phantom-unet+densenet-test", model_version="1.0", weights_sha256="d" * 64,
            inputs_sha256=f"{case.pk}", probability=float(np.clip(0.5 + (0.2 if case.truth.positive else -0.2)
                                                                   + rng.normal(0, 0.2), 0, 1)),
            labelmap=_labelmap(lesion), labels=[{"value": 1, "name": "liver"}, {"value": 2, "name": "lesion"}],
        )  # fmt: skip
    launch_study(admin, study)
    call_command("simulate_reads", study.name, "--no-progress", "--seed", "5")
    actions.set_interim_analysis(admin, study, True)
    client = Client()
    client.force_login(make_user("stat"))
    assert client.post(f"/results/study/{study.pk}/", FORM).status_code == 302
    run = AnalysisRun.objects.filter(study=study).latest("created_at")
    assert run.status == "done", run.message
    return run, client.get(f"/results/run/{run.pk}/").content.decode()


def test_the_report_shows_dice_hd95_by_structure_and_stratum_with_reference_and_model(tmp_path):
    run, html = _study(tmp_path, with_masks=True)
    seg = run.result["segmentation"]
    assert seg["n_with_reference"] == 2 and seg["n_cases"] == 2 and seg["reference"]["formats"] == {"NIfTI": 2}
    assert [m["model_name"] for m in seg["models"]] == ["phantom-unet+densenet-test"]
    rows = {(r["kind"], r["name"]): r for r in seg["rows"]}
    liver, lesions = rows[("structure", "liver")], rows[("structure", "lesions")]
    assert liver["n"] == 2 and liver["dice"]["median"] == pytest.approx(1.0) and liver["hd95_mm"]["q3"] == 0.0
    # Lesions: one series exact (Dice 1, HD95 0), one 3 mm off (Dice 0, HD95 3): median 0.5 and 1.5, IQR 0.25-0.75.
    assert lesions["dice"] == pytest.approx({"n": 2, "median": 0.5, "q1": 0.25, "q3": 0.75, "mean": 0.5})
    assert lesions["hd95_mm"]["median"] == pytest.approx(1.5) and lesions["hd95_mm"]["q3"] == pytest.approx(2.25)
    small = rows[("stratum", "<=10")]
    assert (small["n"], small["detected"], small["false_positives"]) == (2, 1, 1)
    assert small["hd95_mm"]["n"] == 1 and small["hd95_mm"]["median"] == pytest.approx(0.0)  # the detected one only

    table = re.findall(
        r'<tr data-testid="segmentation-row" data-kind="(\w+)" data-name="([^"]+)">(.*?)</tr>', html, re.S
    )
    assert [(k, n) for k, n, _ in table] == [
        ("structure", "liver"), ("structure", "lesions"),
        ("stratum", "&lt;=10"), ("stratum", "10-30"), ("stratum", "&gt;30"), ("stratum", "all"),
    ]  # fmt: skip
    lesion_cells = table[1][2]
    assert "0.500 (0.250–0.750), n=2" in lesion_cells and "1.500 (0.750–2.250), n=2" in lesion_cells
    source = re.search(r'data-testid="segmentation-source">(.*?)</p>', html, re.S).group(1)
    assert "2 series (2 NIfTI" in source and "phantom-unet+densenet-test 1.0" in source
    assert 'data-testid="segmentation-none"' not in html


def test_a_run_without_reference_masks_says_so_in_one_line(tmp_path):
    run, html = _study(tmp_path, with_masks=False)
    assert run.result["segmentation"] == {"n_with_reference": 0}
    assert 'data-testid="segmentation-none"' in html and 'data-testid="segmentation-table"' not in html
