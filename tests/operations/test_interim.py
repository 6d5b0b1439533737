"""Interim looks: while a study runs, its statisticians see counts but no modality comparison unless allowed."""

import pytest
from django.core.files.base import ContentFile
from django.test import Client

from readerstudy.core.errors import NotAllowed
from readerstudy.results import actions as results_actions
from readerstudy.results.models import AnalysisRun, Export
from readerstudy.studies import actions
from tests.factories import build_study, make_user

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def world(tmp_path, boss):
    study = build_study(tmp_path, admin=boss, readers=2, n_patients=2, lesions_per_patient=1)
    stat = make_user("stat")
    actions.add_member(boss, study, stat, "statistician")
    result = {
        "summary": {"n_readers": 2},
        "mrmc": {"auc": {"unaided": {"reader1": 0.81}}, "modality_auc": {"unaided": 0.81}},
    }
    figures = {"forest": {"png": "f.png", "svg": "f.svg"}}
    run = AnalysisRun.objects.create(
        study=study, created_by=boss, parameters={"analyses": ["rrrc"]}, status="done", result=result, figures=figures
    )
    export = Export.objects.create(study=study, created_by=boss, kind="csv", status="done")
    export.file.save("x.csv", ContentFile(b"reader,modality,rating\n"))
    return study, stat, run, export


def test_statisticians_see_counts_but_no_comparison_while_the_study_runs(world):
    study, stat, run, export = world
    client = client_for(stat)
    page = client.get(f"/results/study/{study.pk}/").content.decode()
    assert 'data-testid="interim-hidden"' in page and "reads submitted" in page
    assert 'data-testid="run-analysis"' not in page and 'data-testid="export-csv"' not in page
    report = client.get(f"/results/run/{run.pk}/")
    assert report.status_code == 200 and 'data-testid="interim-hidden"' in report.content.decode()
    assert "0.81" not in report.content.decode()
    assert client.get(f"/results/run/{run.pk}/report.html").status_code == 404
    assert client.get(f"/results/run/{run.pk}/figure/forest.png").status_code == 404
    assert client.get(f"/results/export/{export.pk}/download").status_code == 404
    assert client.get(f"/results/run/{run.pk}/status").status_code == 200  # status only
    with pytest.raises(NotAllowed):
        results_actions.queue_analysis(stat, study, {"analyses": ["rrrc"]})
    with pytest.raises(NotAllowed):
        results_actions.queue_export(stat, study, "csv")


def test_allowed_interim_looks_and_closed_studies_show_comparisons(world, boss):
    study, stat, run, export = world
    client = client_for(stat)
    actions.set_interim_analysis(boss, study, True)
    assert "0.81" in client.get(f"/results/run/{run.pk}/").content.decode()
    assert client.get(f"/results/export/{export.pk}/download").status_code == 200
    actions.set_interim_analysis(boss, study, False)
    assert "0.81" not in client.get(f"/results/run/{run.pk}/").content.decode()
    actions.close_study(boss, study)
    assert "0.81" in client.get(f"/results/run/{run.pk}/").content.decode()


def test_the_study_admin_is_not_gated(world, boss):
    study, _, run, _ = world
    assert "0.81" in client_for(boss).get(f"/results/run/{run.pk}/").content.decode()
    assert not results_actions.comparisons_hidden(boss, study)
