"""precompute: the demo model over a study's series, stored with overlays and SEG; idempotent and resumable."""

import gzip

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from fixtures.phantom import generate_demo_study
from inference.models import PrecomputeRun, Prediction
from readerstudy.core.models import AuditEvent
from readerstudy.studies import actions
from readerstudy.studies.models import Study
from readerstudy.studies.storage import series_names
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(tmp_path):
    manifest = generate_demo_study(tmp_path / "data", seed=5, n_patients=2, n_lesions=4)
    admin = make_user("admin", superuser=True)
    study = actions.create_study(admin, "Precompute", seed=3)
    actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False)
    actions.add_modality(admin, study, "aided", "Aided", shows_dl=True)
    actions.add_member(admin, study, make_user("reader1"), "reader")
    actions.import_cases(admin, study, manifest)
    return study


def test_precompute_stores_predictions_overlays_and_seg_then_skips_unchanged(study, capsys):
    call_command("precompute", "--study", study.name, "--no-progress")
    out = capsys.readouterr().out
    assert "4 predicted, 0 unchanged (skipped), 0 failed" in out
    predictions = list(Prediction.objects.filter(case__study=study).select_related("case__series"))
    assert len(predictions) == 4
    matched = 0
    for p in predictions:
        series = p.case.series
        assert 0.0 <= p.probability <= 1.0 and len(p.weights_sha256) == 64 and len(p.inputs_sha256) == 64
        assert p.model_name == "phantom-unet+lesion-classifier-demo" and p.device == "cpu" and p.runtime_seconds > 0
        with p.overlay.open("rb") as f:
            labelmap = np.frombuffer(gzip.decompress(f.read()), dtype=np.uint8)
        assert labelmap.size == series.n_slices * series.rows * series.columns
        assert p.overlay_shape == [series.n_slices, series.rows, series.columns]
        assert 1 in labelmap  # the liver is drawn
        # The target lesion is drawn exactly when the model found a lesion at the manifest's centre.
        has_target = any(lesion["is_target"] for lesion in p.lesions)
        assert (2 in labelmap) == has_target
        matched += has_target
        assert p.seg and p.seg.size > 0
    assert matched >= 1  # the demo UNet misses most lesions <= 10 mm (its model card); no accuracy claim
    assert AuditEvent.objects.filter(verb="record_prediction").count() == 4
    assert not any("no DL prediction" in w for w in actions.readiness(study).warnings)

    assert all(p.model_version.endswith(" (pipeline 2)") for p in predictions)
    assert not any("stratum" in lesion for p in predictions for lesion in p.lesions)

    call_command("precompute", "--study", study.name, "--no-progress")
    assert "0 predicted, 4 unchanged (skipped), 0 failed" in capsys.readouterr().out
    assert Prediction.objects.filter(case__study=study).count() == 4
    # The study's size bins are no input of the models: a change re-runs nothing.
    Study.objects.filter(pk=study.pk).update(size_bins_mm=[20])
    call_command("precompute", "--study", study.name, "--no-progress")
    assert "0 predicted, 4 unchanged (skipped), 0 failed" in capsys.readouterr().out


def test_one_broken_series_is_reported_and_the_batch_goes_on(study, capsys):
    broken = study.cases.order_by("case_id").first().series
    for name in series_names(broken)[:3]:
        default_storage.delete(name)
        default_storage.save(name, ContentFile(b"truncated"))
    with pytest.raises(CommandError, match="case\\(s\\) failed; the others are stored"):
        call_command("precompute", "--study", study.name, "--no-progress")
    captured = capsys.readouterr()
    failed = study.cases.filter(series=broken).count()
    assert captured.err.count("failed: ") == failed
    assert Prediction.objects.filter(case__study=study).count() == 4 - failed


def test_missing_weights_name_the_file(study, settings, tmp_path):
    settings.INFERENCE_MODELS_DIR = tmp_path / "no-models"
    with pytest.raises(CommandError, match=r"no-models/phantom_unet\.pt: UNet weights not found"):
        call_command("precompute", "--study", study.name, "--no-progress")


def test_admin_starts_precompute_as_a_background_task_with_status(study, monkeypatch):
    monkeypatch.setattr("django.db.transaction.on_commit", lambda func, using=None, robust=False: func())
    client = Client()
    client.force_login(make_user("admin", superuser=True))
    response = client.post(
        "/admin/studies/study/", {"action": "precompute", "_selected_action": [study.pk]}, follow=True
    )
    run = PrecomputeRun.objects.get(study=study)
    assert "precompute run" in response.content.decode()
    assert (run.status, run.n_cases, run.n_done, run.n_failed, run.progress) == ("done", 4, 4, 0, 1.0)
    event = AuditEvent.objects.get(verb="finish_job")  # the outcome, written by the action that finished it
    assert (event.object_type, event.object_id, event.after["status"]) == ("precomputerun", str(run.pk), "done")
    page = client.get(f"/admin/inference/precomputerun/{run.pk}/change/").content.decode()
    assert "4 of 4" in page or "done" in page.lower()


def test_evaluate_predictions_reports_auc_and_segmentation_agreement(study, tmp_path, capsys):
    import json

    call_command("precompute", "--study", study.name, "--no-progress")
    out = tmp_path / "evaluation.json"
    call_command(
        "evaluate_predictions", "--study", study.name, "--masks", str(tmp_path / "data" / "masks"), "--json", str(out)
    )
    result = json.loads(out.read_text())
    assert set(result["auc"]) == {"all", "<=10", "10-30", ">30"}
    overall = result["auc"]["all"]
    assert "error" in overall or 0.0 <= overall["auc"] <= 1.0
    segmentation = result["segmentation"]
    assert segmentation["n_series"] == 2
    # Plumbing check (a flipped axis or slice order would give ~0): the demo UNet's liver overlaps the reference.
    assert segmentation["liver_dice_mean"] > 0.5
    assert segmentation["lesions_by_stratum"]["all"]["n"] == study.cases.count()
    assert "DL AUC all" in capsys.readouterr().out


def test_a_thin_series_gets_a_prediction(tmp_path, capsys):
    """Two 8 x 8 slices are less than the UNet's downsamplings take: padded to its minimum, never a crash."""
    import pydicom

    from tests.factories import manifest_row, write_manifest, write_series

    admin = make_user("admin", superuser=True)
    study = actions.create_study(admin, "Thin", seed=3)
    actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False)
    actions.add_modality(admin, study, "aided", "Aided", shows_dl=True)
    for path in write_series(tmp_path / "import" / "series" / "P001", n_slices=2):
        ds = pydicom.dcmread(path)  # the patient and study attributes a DICOM SEG copies (type 2: may be empty)
        for keyword in ("PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                        "ReferringPhysicianName", "StudyID", "AccessionNumber"):  # fmt: skip
            setattr(ds, keyword, "")
        ds.save_as(path)
    manifest = write_manifest(tmp_path / "import", [manifest_row("P001", "P001-L1", lesion_z_mm=2.5)])
    actions.import_cases(admin, study, manifest)
    assert study.cases.get().series.n_slices == 2
    call_command("precompute", "--study", study.name, "--no-progress")
    assert "1 predicted, 0 unchanged (skipped), 0 failed" in capsys.readouterr().out
    prediction = Prediction.objects.get(case__study=study)
    assert prediction.overlay_shape == [2, 8, 8] and 0.0 <= prediction.probability <= 1.0


def test_precompute_takes_several_studies_and_names_unknown_ones(study):
    with pytest.raises(CommandError, match="no study named 'Nope'"):
        call_command("precompute", "--study", study.name, "--study", "Nope", "--no-progress")
    assert not Prediction.objects.exists()


def test_further_classifiers_share_the_segmentation_and_the_shown_one_is_stored_last(study, capsys, monkeypatch):
    """--also-classifier stores a radiomics prediction per case on the same segmentation (segmented once per
    series, not once per backend), and --classifier's prediction is the newest: the one aided readers see."""
    from inference.actions import shown_prediction
    from inference.pipeline.segment import PhantomUNetBackend

    calls: list[int] = []
    original = PhantomUNetBackend.segment
    monkeypatch.setattr(PhantomUNetBackend, "segment", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    call_command("precompute", "--study", study.name, "--also-classifier", "radiomics", "--no-progress")
    assert "8 predicted, 0 unchanged (skipped), 0 failed" in capsys.readouterr().out
    assert len(calls) == study.cases.values("series").distinct().count() == 2
    for case in study.cases.all():
        names = sorted(case.predictions.values_list("model_name", flat=True))
        assert names == ["phantom-unet+lesion-classifier-demo", "phantom-unet+radiomics-l1-logistic-demo"]
        assert shown_prediction(case).model_name == "phantom-unet+lesion-classifier-demo"
        overlays = [gzip.decompress(p.overlay.read()) for p in case.predictions.all()]
        assert overlays[0] == overlays[1]  # one segmentation, stored with each prediction
    call_command("precompute", "--study", study.name, "--also-classifier", "radiomics", "--no-progress")
    assert "0 predicted, 8 unchanged (skipped), 0 failed" in capsys.readouterr().out


def test_further_classifiers_reuse_the_cases_lesions_and_seg(study, capsys, monkeypatch):
    """Each case's lesions are found and its SEG written once for all classifiers; every prediction of a case stores
    the same SEG (its UIDs seeded by the segmentation's inputs, not the classifier's)."""
    import pydicom

    from inference.pipeline import run

    found, written = [], []
    find, write = run.find_lesions, run.make_dicom_seg
    monkeypatch.setattr(run, "find_lesions", lambda *a, **k: found.append(1) or find(*a, **k))
    monkeypatch.setattr(run, "make_dicom_seg", lambda *a, **k: written.append(1) or write(*a, **k))
    call_command(
        "precompute", "--study", study.name, "--also-classifier", "radiomics", "--also-classifier", "slice-topk",
        "--no-progress",
    )  # fmt: skip
    assert "12 predicted, 0 unchanged (skipped), 0 failed" in capsys.readouterr().out
    assert len(found) == len(written) == study.cases.count() == 4
    for case in study.cases.all():
        predictions = list(case.predictions.all())
        assert len(predictions) == 3
        segs = {p.seg.read() for p in predictions}
        assert len(segs) == 1
        lesions = {str(p.lesions) for p in predictions}
        assert len(lesions) == 1 and len({p.probability for p in predictions}) == 3
        ds = pydicom.dcmread(predictions[0].seg.open("rb"))
        assert ds.Modality == "SEG" and ds.SOPInstanceUID
