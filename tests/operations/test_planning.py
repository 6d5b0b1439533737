"""The planning page: power and sample size from an uploaded pilot or the study's reads, for admins and
statisticians; storing the pilot (admins, draft) gives the readiness checklist its planned power."""

import json
import re
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from readerstudy.studies import actions
from tests.factories import build_study, make_user

pytestmark = pytest.mark.django_db
DATA = Path(__file__).resolve().parents[1] / "data" / "mrmc"
REFERENCE = json.loads((DATA / "vandyke_power_RJafroc.json").read_text())


def ref(analysis: str, j: int, k: int, effect: float) -> dict:
    return next(
        e for e in REFERENCE["power"]
        if (e["analysis"], e["J"], e["K"], e["effect_size"]) == (analysis, j, k, effect)
    )  # fmt: skip


@pytest.fixture
def study(tmp_path):
    return build_study(tmp_path, readers=5, n_patients=10, lesions_per_patient=2, launch=False)


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def pilot_form(**extra) -> dict:
    pilot = SimpleUploadedFile("vandyke.csv", (DATA / "vandyke.csv").read_bytes(), content_type="text/csv")
    return {"source": "upload", "pilot": pilot, "readers": "6", "cases": "251", "target_power": "0.8",
            "effect": "0.05", "cov": "jackknife", **extra}  # fmt: skip


def cell(html: str, testid: str) -> str:
    return re.search(rf'data-testid="{testid}">([^<]*)<', html).group(1)


def test_power_and_sample_size_from_an_uploaded_pilot_match_rjafroc(study):
    admin = make_user("admin")
    response = logged_in(admin).post(f"/studies/{study.pk}/planning/", pilot_form())
    html = response.content.decode()
    assert response.status_code == 200, html[:3000]
    for analysis in ("rrrc", "frrc", "rrfc"):
        assert cell(html, f"power-{analysis}") == f"{ref(analysis.upper(), 6, 251, 0.05)['power']:.4f}"
    assert cell(html, "cases-rrrc") == "170"  # RJafroc SsSampleSizeKGivenJ(J=6, effect 0.05, power 0.8)
    assert 'data-testid="power-grid"' in html and "114 cases" in html
    study.refresh_from_db()
    assert study.plan_pilot is None, "computing stores nothing"


def test_an_admin_stores_the_pilot_and_readiness_shows_the_planned_power(study):
    admin = make_user("admin")
    actions.update_study(admin, study, plan_effect_size=0.05)
    response = logged_in(admin).post(f"/studies/{study.pk}/planning/", pilot_form(store="on"))
    assert response.status_code == 302
    study.refresh_from_db()
    assert study.plan_pilot["source"] == "uploaded vandyke.csv" and study.plan_pilot["variance"]["n_cases"] == 114
    check = next(c for c in actions.readiness(study).checks if c.key == "planned_power")
    from readerstudy.analysis.power import power_from_pilot

    expected = power_from_pilot(str(DATA / "vandyke.csv"), 5, 20, 0.05, analysis="rrrc")["rrrc"]["power"]
    assert f"planned power {expected:.2f} (RRRC, 5 readers, 20 cases, effect 0.05, pilot: uploaded vandyke.csv)" in (
        check.message
    )
    assert check.warning, "far below 0.8 with 20 cases: a warning, not a block"
    overview = logged_in(admin).get(f"/studies/{study.pk}/").content.decode()
    assert "planned power" in overview


def test_a_statistician_computes_but_cannot_store_and_others_get_404(study):
    statistician = make_user("stats")
    actions.add_member(make_user("admin"), study, statistician, "statistician")
    client = logged_in(statistician)
    assert client.get(f"/studies/{study.pk}/planning/").status_code == 200
    response = client.post(f"/studies/{study.pk}/planning/", pilot_form(store="on"))
    assert response.status_code == 400 and 'data-testid="planning-error"' in response.content.decode()
    study.refresh_from_db()
    assert study.plan_pilot is None
    assert logged_in(make_user("reader1")).get(f"/studies/{study.pk}/planning/").status_code == 404
    assert logged_in(make_user("outsider")).get(f"/studies/{study.pk}/planning/").status_code == 404


def test_a_bad_pilot_says_what_is_wrong(study):
    bad = SimpleUploadedFile("pilot.csv", b"reader,modality,case,truth,rating\nr1,A,c1,2,5\n", content_type="text/csv")
    response = logged_in(make_user("admin")).post(f"/studies/{study.pk}/planning/", pilot_form(pilot=bad))
    html = response.content.decode()
    assert response.status_code == 400
    assert "uploaded pilot.csv:" in html and "truth" in html
    missing = logged_in(make_user("admin")).post(
        f"/studies/{study.pk}/planning/", {**pilot_form(), "cases": "", "target_power": ""}
    )
    assert missing.status_code == 400 and "give the number of cases, or a target power" in missing.content.decode()
