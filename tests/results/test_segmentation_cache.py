"""Analysis runs reuse the stored per-series segmentation results while the shown prediction, the reference mask,
the settings and the metrics version are unchanged, and recompute exactly the series whose inputs changed."""

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client

from fixtures.manifests import balanced_rows, write_manifest
from fixtures.phantom.nifti import write_labelmap_nifti
from inference import evaluation
from inference.actions import record_prediction, store_segmentation_evaluation
from inference.models import SegmentationEvaluation
from readerstudy.results.models import AnalysisRun
from readerstudy.studies import actions
from readerstudy.studies.models import ImageSeries
from readerstudy.studies.reference_masks import to_npz
from tests.factories import make_user
from tests.results.test_segmentation_report import FORM, _labelmap, _study, run_jobs_on_commit  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def calls(monkeypatch):
    """The series evaluate_case is run on (their lesion masks' voxel counts, to tell them apart)."""
    seen: list[int] = []
    real = evaluation.evaluate_case

    def counting(pred, ref, *args, **kwargs):
        seen.append(int(np.asarray(ref["lesions"]).astype(bool).sum()))
        return real(pred, ref, *args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate_case", counting)
    return seen


def _run(client, study):
    assert client.post(f"/results/study/{study.pk}/", FORM).status_code == 302
    run = AnalysisRun.objects.filter(study=study).latest("created_at")
    assert run.status == "done", run.message
    return run.result["segmentation"]


def _series(study, patient):
    return ImageSeries.objects.get(patient__study=study, patient__pseudonym=patient)


def _replace_mask(series, lesion_voxels):
    """Overwrite the stored reference mask (as a re-import would): liver as before, a one-voxel lesion at each."""
    lesions = np.zeros((5, 8, 8), np.int32)
    for label, (z, y, x) in enumerate(lesion_voxels, start=1):
        lesions[z, y, x] = label
    data = to_npz({"liver": _labelmap(None) == 1, "lesions": lesions})
    default_storage.delete(series.reference_mask)
    assert default_storage.save(series.reference_mask, ContentFile(data)) == series.reference_mask


def test_a_second_run_reuses_every_series_and_a_changed_mask_is_recomputed(tmp_path, calls):
    first_run, _ = _study(tmp_path, with_masks=True)
    first = first_run.result["segmentation"]
    assert len(calls) == 2 and first["n_reused"] == 0
    assert SegmentationEvaluation.objects.count() == 2
    study = first_run.study
    client = Client()
    client.force_login(make_user("stat"))

    calls.clear()
    second = _run(client, study)
    assert calls == [] and second["n_reused"] == 2
    assert second["rows"] == first["rows"] and second["cases"] == first["cases"]

    # P001's mask now has a second lesion (one voxel, missed): only P001 is recomputed, and the numbers move.
    _replace_mask(_series(study, "P001"), [(2, 3, 2), (2, 6, 6)])
    calls.clear()
    third = _run(client, study)
    assert calls == [2] and third["n_reused"] == 1
    lesion_rows = {r["name"]: r for r in third["rows"] if r["kind"] == "stratum"}
    assert lesion_rows["all"]["n"] == 3 and lesion_rows["all"]["detected"] == 1
    assert first["rows"] != third["rows"]
    key = SegmentationEvaluation.objects.get(series=_series(study, "P001")).key
    calls.clear()
    assert _run(client, study)["rows"] == third["rows"] and calls == []
    assert SegmentationEvaluation.objects.get(series=_series(study, "P001")).key == key


def test_a_new_prediction_settings_or_metrics_version_are_recomputed(tmp_path, calls, monkeypatch):
    run, _ = _study(tmp_path, with_masks=True)
    study = run.study
    calls.clear()
    first = evaluation.imported_reference_evaluation(study, store=store_segmentation_evaluation)
    assert calls == [] and first["n_reused"] == 2
    # Another tolerance: both recomputed, and stored under the new key (one row per series).
    second = evaluation.imported_reference_evaluation(study, tolerance_mm=0.5, store=store_segmentation_evaluation)
    assert len(calls) == 2 and second["n_reused"] == 0 and SegmentationEvaluation.objects.count() == 2
    calls.clear()
    monkeypatch.setattr(evaluation, "METRICS_VERSION", evaluation.METRICS_VERSION + 1)
    third = evaluation.imported_reference_evaluation(study, tolerance_mm=0.5, store=store_segmentation_evaluation)
    assert len(calls) == 2 and third["n_reused"] == 0 and third["rows"] == second["rows"]
    # Without a store nothing is written, and what is stored is still reused.
    calls.clear()
    assert evaluation.imported_reference_evaluation(study, tolerance_mm=0.5)["n_reused"] == 2 and calls == []


def test_a_new_shown_prediction_is_recomputed_and_infinite_hd95_survives_storage(tmp_path, calls):
    admin = make_user("admin", superuser=True)
    study = actions.create_study(admin, "Draft", design="crossover", washout_days=28, seed=3)
    actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False)
    actions.add_modality(admin, study, "aided", "DL-assisted", shows_dl=True)
    rows = balanced_rows(2, 1)
    folder = tmp_path / "import"
    (folder / "masks").mkdir(parents=True)
    write_labelmap_nifti(folder / "masks" / "P001.nii.gz", _labelmap((2, 3, 2)), (2.5, 1.0, 1.0), (0, 0, 0))
    for row in rows:
        if row["patient_id"] == "P001":
            row["reference_mask"] = "masks/P001.nii.gz"
    actions.import_cases(admin, study, write_manifest(folder, rows))
    case = study.cases.get(patient__pseudonym="P001")

    def predict(lesion, version):
        record_prediction(
            admin, case, model_name="unet-test", model_version=version, weights_sha256="e" * 64,
            inputs_sha256=version, probability=0.5, labelmap=_labelmap(lesion),
            labels=[{"value": 1, "name": "liver"}, {"value": 2, "name": "lesion"}],
        )  # fmt: skip

    predict(None, "1")  # no lesion predicted: the reference lesion is missed, its HD95 infinite
    first = evaluation.imported_reference_evaluation(study, store=store_segmentation_evaluation)
    assert len(calls) == 1
    calls.clear()
    again = evaluation.imported_reference_evaluation(study, store=store_segmentation_evaluation)
    assert calls == [] and again["cases"] == first["cases"]
    (lesion,) = next(iter(again["cases"].values()))["lesions"]
    assert lesion["detected"] is False and lesion["hd95_mm"] == float("inf")

    predict((2, 3, 2), "2")  # newer: the one aided readers are shown
    calls.clear()
    third = evaluation.imported_reference_evaluation(study, store=store_segmentation_evaluation)
    assert len(calls) == 1 and third["n_reused"] == 0
    (lesion,) = next(iter(third["cases"].values()))["lesions"]
    assert lesion["detected"] is True and lesion["dice"] == pytest.approx(1.0)
    assert [m["model_version"] for m in third["models"]] == ["2"]
