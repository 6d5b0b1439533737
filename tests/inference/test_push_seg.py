"""The DL segmentations pushed to a PACS over DICOMweb (STOW-RS), against a real Orthanc: every shown prediction's
DICOM SEG is stored there, referencing the study's de-identified CT; refusals are clear and write no event."""

import io
import json

import pydicom
import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command

from fixtures.studies import phantom_crossover_study
from inference.actions import push_segmentations
from inference.models import Prediction
from readerstudy.core.errors import Conflict, InvalidInput, NotAllowed
from readerstudy.core.models import AuditEvent
from readerstudy.studies.storage import series_names
from tests.factories import make_user
from tests.studies.conftest import dicomweb, orthanc  # noqa: F401 - the real PACS fixtures

pytestmark = pytest.mark.django_db


@pytest.fixture
def precomputed(tmp_path, media_root):
    built = phantom_crossover_study(
        tmp_path / "data", name="Push SEG", password="pw-12345-xyz", phantom_seed=5, n_patients=1, n_lesions=2
    )
    call_command("precompute", "--study", built.study.name, "--no-progress")
    return built


def test_every_shown_segmentation_lands_on_the_pacs_referencing_the_deidentified_ct(precomputed, dicomweb):  # noqa: F811
    study, admin = precomputed.study, precomputed.admin
    predictions = list(Prediction.objects.filter(case__study=study))
    assert len(predictions) == 2 and all(p.seg for p in predictions)
    before = json.loads(dicomweb.get("/instances"))

    assert push_segmentations(admin, study) == 2

    stored = [i for i in json.loads(dicomweb.get("/instances")) if i not in before]
    assert len(stored) == 2
    ct = pydicom.dcmread(default_storage.open(series_names(predictions[0].case.series)[0]), stop_before_pixels=True)
    for instance in stored:
        seg = pydicom.dcmread(io.BytesIO(dicomweb.get(f"/instances/{instance}/file")), stop_before_pixels=True)
        assert seg.Modality == "SEG"
        assert seg.StudyInstanceUID == ct.StudyInstanceUID  # the de-identified study, as stored here
        referenced = seg.ReferencedSeriesSequence[0].SeriesInstanceUID
        assert referenced == ct.SeriesInstanceUID
    event = AuditEvent.objects.get(verb="push_segmentations")
    assert event.after["n_segmentations"] == 2 and sorted(event.after["predictions"]) == sorted(
        p.pk for p in predictions
    )


def test_refusals_are_clear_and_write_no_event(precomputed, settings, orthanc):  # noqa: F811
    study, admin = precomputed.study, precomputed.admin
    settings.DICOMWEB_URL = ""
    with pytest.raises(InvalidInput, match="no DICOMweb server configured"):
        push_segmentations(admin, study)
    settings.DICOMWEB_URL = orthanc.dicomweb_url
    with pytest.raises(NotAllowed):
        push_segmentations(make_user("someone"), study)
    settings.DICOMWEB_URL = "http://127.0.0.1:9/dicom-web"  # nothing listens on the discard port
    settings.DICOMWEB_TIMEOUT = 5
    with pytest.raises(Conflict, match="segmentations not pushed"):
        push_segmentations(admin, study)
    assert not AuditEvent.objects.filter(verb="push_segmentations").exists()


def test_a_study_without_segmentations_says_to_precompute_first(tmp_path, media_root, dicomweb):  # noqa: F811
    built = phantom_crossover_study(
        tmp_path / "data", name="No SEG", password="pw-12345-xyz", phantom_seed=6, n_patients=1, n_lesions=2
    )
    with pytest.raises(InvalidInput, match="precompute first"):
        push_segmentations(built.admin, built.study)


def test_the_study_page_sends_them_for_its_admins_only(precomputed, dicomweb, client):  # noqa: F811
    from django.urls import reverse

    study = precomputed.study
    url = reverse("operations:push_seg", args=[study.pk])
    client.force_login(make_user("outsider"))
    assert client.post(url).status_code == 404  # another study's page answers nothing
    client.force_login(precomputed.admin)
    page = client.get(reverse("operations:overview", args=[study.pk])).content.decode()
    assert 'data-testid="push-seg"' in page
    response = client.post(url, follow=True)
    assert "2 DL segmentation(s) stored on the PACS." in response.content.decode()
