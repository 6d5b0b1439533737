"""Statisticians' exports, analysis runs and the report, through the web pages and the real tasks."""

import io
import re
import zipfile

import numpy as np
import pandas as pd
import pytest
from django.core.management import call_command
from django.test import Client
from django.utils.html import escape

from inference.actions import record_prediction
from readerstudy.analysis import analyse
from readerstudy.reading.actions import launch_study
from readerstudy.reading.models import Read
from readerstudy.results import formats
from readerstudy.results.models import AnalysisRun, Export
from readerstudy.results.runs import class_problem
from readerstudy.results.table import COLUMNS, reads_table
from readerstudy.studies import actions as study_actions
from tests.factories import build_study, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def run_jobs_on_commit(monkeypatch):
    """Jobs are enqueued after commit; the test's transaction never commits, so run them when they are queued
    (what the immediate backend does in the demo, right after the request's transaction)."""
    monkeypatch.setattr("django.db.transaction.on_commit", lambda func, using=None, robust=False: func())


@pytest.fixture
def study(tmp_path):
    study = build_study(tmp_path, readers=3, n_patients=8, lesions_per_patient=2, name="Results study", launch=False)
    admin = make_user("admin", superuser=True)
    study_actions.add_member(admin, study, make_user("stat"), "statistician")
    rng = np.random.default_rng(3)
    for case in study.cases.select_related("truth"):
        p = float(np.clip(0.5 + (0.3 if case.truth.positive else -0.3) + rng.normal(0, 0.2), 0, 1))
        record_prediction(
            admin,
            case,
            model_name="m",
            model_version="1",
            weights_sha256="a" * 64,
            inputs_sha256=str(case.pk),
            probability=p,
        )
    launch_study(admin, study)
    call_command("simulate_reads", study.name, "--no-progress", "--seed", "11")
    # The study still runs: its statistician sees modality comparisons only with interim looks allowed.
    study_actions.set_interim_analysis(admin, study, True)
    return study


def client_for(username):
    client = Client()
    client.force_login(make_user(username))
    return client


def test_simulated_reads_fill_the_fully_crossed_design(study):
    n_cases = study.cases.count()
    assert Read.objects.filter(study=study).count() == 3 * 2 * n_cases
    table = reads_table(study)
    assert list(table.columns) == COLUMNS
    assert table["model_probability"].notna().all()
    assert set(table["size_stratum"]) == {"<=10", "10-30", ">30"}
    assert (table["active_seconds"] > 0).all()
    # Aided positives were shifted up: the aided mean rating of positives is higher.
    pos = table[table["truth"] == 1]
    assert pos[pos["modality"] == "aided"]["rating"].mean() > pos[pos["modality"] == "unaided"]["rating"].mean()


def export(client, study, kind):
    response = client.post(f"/results/study/{study.pk}/", {"export": kind})
    assert response.status_code == 302
    job = Export.objects.filter(study=study, kind=kind).latest("created_at")
    assert job.status == "done", job.message
    download = client.get(f"/results/export/{job.pk}/download")
    assert download.status_code == 200
    return job, b"".join(download.streaming_content)


def aucs(df):
    """Reader x modality AUCs and the RRRC difference, flat, for comparing a round trip with the original."""
    result = analyse(df[["reader", "modality", "case", "truth", "rating"]])
    flat = {f"{m}/{r}": a for m, per in result["auc"].items() for r, a in per.items()}
    return {**flat, "difference": result["rrrc"]["differences"][0]["estimate"]}


def test_every_export_round_trips_to_the_same_aucs(study):
    client = client_for("stat")
    table = reads_table(study)
    expected = aucs(table)

    job, content = export(client, study, "csv")
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        reads = pd.read_csv(z.open("reads.csv"), dtype={"reader": str, "case": str})
        dictionary = pd.read_csv(z.open("data_dictionary.csv"))
    assert list(reads.columns) == COLUMNS and len(reads) == job.n_reads == len(table)
    assert set(dictionary["column"]) == set(COLUMNS)
    assert aucs(reads) == expected

    _, content = export(client, study, "imrmc")
    assert "BEGIN DATA:" in content.decode()
    assert aucs(formats.read_imrmc(content.decode())) == pytest.approx(expected, abs=1e-12)
    _, content = export(client, study, "jafroc")
    assert aucs(formats.read_jafroc(content)) == pytest.approx(expected, abs=1e-12)
    _, content = export(client, study, "mrmcaov")
    assert aucs(formats.read_mrmcaov_csv(content.decode())) == pytest.approx(expected, abs=1e-12)


def test_readers_and_anonymous_users_see_no_results(study, tmp_path):
    job = Export.objects.create(study=study, created_by=make_user("stat"), kind="csv")
    reader = client_for("reader1")
    for url in (f"/results/study/{study.pk}/", f"/results/export/{job.pk}/download"):
        assert reader.get(url).status_code == 404  # as for a missing id: existence is not revealed
    assert reader.post(f"/results/study/{study.pk}/", {"export": "csv"}).status_code == 404
    assert "Results study" not in reader.get("/results/").content.decode()
    anonymous = Client()
    assert anonymous.get(f"/results/study/{study.pk}/").status_code == 302
    assert anonymous.post(f"/results/study/{study.pk}/", {"export": "csv"}).status_code == 302
    outsider = build_study(tmp_path / "other", readers=1, name="Other study")
    study_actions.add_member(make_user("admin", superuser=True), outsider, make_user("other-stat"), "statistician")
    assert client_for("other-stat").get(f"/results/study/{study.pk}/").status_code == 404
    assert Export.objects.filter(study=study).count() == 1


def without_one_sided(value):
    """A result without the planned one-sided tests the run adds to analyse()'s differences."""
    if isinstance(value, dict):
        return {k: without_one_sided(v) for k, v in value.items() if k != "one_sided"}
    if isinstance(value, list):
        return [without_one_sided(v) for v in value]
    return value


def numbers_in(html, testid=None):
    return [float(v) for v in re.findall(r'data-value="([^"]+)"', html)]


def test_analysis_run_report_matches_the_analysis_module(study):
    client = client_for("stat")
    response = client.post(
        f"/results/study/{study.pk}/",
        {
            "cov": "jackknife",
            "analyses": ["rrrc", "frrc", "rrfc"],
            "size_bins_mm": "10, 30",
            "cluster_by_patient": "on",
        },
    )
    run = AnalysisRun.objects.get(study=study)
    assert response.status_code == 302 and response.url == f"/results/run/{run.pk}/"
    assert run.status == "done", run.message
    assert len(run.data_sha256) == 64 and "numpy" in run.software_version
    html = client.get(f"/results/run/{run.pk}/").content.decode()

    table = reads_table(study)
    expected = analyse(
        table[["reader", "modality", "case", "truth", "rating", "patient", "size_stratum"]],
        cov="jackknife",
        cluster="patient",
        stratum="size_stratum",
    )
    stored = {k: v for k, v in without_one_sided(run.result["mrmc"]).items() if k != "stratum_column"}
    assert stored == {k: v for k, v in expected.items() if k != "stratum_column"}  # exactly, after the JSON round trip
    # ... and the plan's one-sided test (superiority, the default plan) on each difference (tests/results/test_report)
    assert run.result["mrmc"]["rrrc"]["differences"][0]["one_sided"]["hypothesis"] == "superiority"
    # The numbers on the page are the module's numbers: reader AUCs, RRRC test, per-stratum differences.
    shown = numbers_in(html)
    for modality in expected["auc"]:
        for value in expected["auc"][modality].values():
            assert value in shown
    rrrc = expected["rrrc"]
    for value in (rrrc["f"], rrrc["p"], rrrc["df2"], rrrc["differences"][0]["estimate"], *rrrc["differences"][0]["ci"]):
        assert value in shown
    for label, stratum in expected["strata"].items():
        if "error" in stratum:
            # e.g. one truth class in >30 mm: a message naming the class, not a crash
            counts = run.result["summary"]["strata"][label]
            assert escape(class_problem([1] * counts["positive"] + [0] * counts["negative"])) in html
        else:
            d = stratum["rrrc"]["differences"][0]
            assert d["estimate"] in shown and d["p_holm"] in shown
    assert "Not analysable" in html
    # Figures exist in both formats and are served.
    for name in ("roc", "forest", "decision_curve"):
        png = client.get(f"/results/run/{run.pk}/figure/{name}.png")
        svg = client.get(f"/results/run/{run.pk}/figure/{name}.svg")
        assert b"".join(png.streaming_content)[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in b"".join(svg.streaming_content)
    # The standalone report embeds its figures and the same numbers.
    standalone = client.get(f"/results/run/{run.pk}/report.html")
    assert standalone["Content-Disposition"].startswith("attachment")
    body = standalone.content.decode()
    assert body.count("data:image/png;base64,") == 3 and numbers_in(body) == shown  # ROC, forest, decision curves
    # Standalone model AUC, overall.
    assert run.result["model"]["overall"]["auc"] in shown
    assert client_for("reader1").get(f"/results/run/{run.pk}/").status_code == 404


def test_unanalysable_data_gives_a_message_not_a_crash(tmp_path):
    study = build_study(tmp_path, readers=1, n_patients=2, lesions_per_patient=2, name="Tiny")
    call_command("simulate_reads", study.name, "--no-progress")
    admin = make_user("admin", superuser=True)
    from readerstudy.results import jobs

    run = jobs.start_analysis(admin, study, {"cov": "jackknife", "analyses": ["rrrc"], "size_bins_mm": [10, 30]})
    run.refresh_from_db()
    assert run.status == "done"
    client = Client()
    client.force_login(admin)
    html = client.get(f"/results/run/{run.pk}/").content.decode()
    assert "could not be run" in html and "need at least 2 readers" in html


def test_bad_parameters_are_refused(study):
    client = client_for("stat")
    response = client.post(
        f"/results/study/{study.pk}/", {"cov": "bootstrap", "analyses": ["rrrc"], "size_bins_mm": "10,30"}, follow=True
    )
    assert "cov &#x27;bootstrap&#x27;: expected one of jackknife, delong, unbiased" in response.content.decode()
    response = client.post(
        f"/results/study/{study.pk}/", {"cov": "jackknife", "analyses": ["rrrc"], "size_bins_mm": "30,10"}, follow=True
    )
    assert "strictly increasing" in response.content.decode()
    assert AnalysisRun.objects.count() == 0


def test_a_not_assessable_read_leaves_its_case_out_of_the_analysis_and_the_peer_exports_and_says_so(study):
    import json

    read = Read.objects.filter(study=study, modality__key="aided").select_related("case", "reader").first()
    measured = [{"tool": "length", "series_role": "portal-venous", "slice_index": 2, "length_mm": -12.5}]
    Read.objects.filter(pk=read.pk).update(
        rating=None,
        not_assessable=True,
        not_assessable_reason="Lesion not visible",
        comment="=HYPERLINK(1)\nfaint",
        served_seconds=61.5,
        viewer_state={"zoom": 2, "measurements": measured},
    )
    case_id, n_cases = read.case.case_id, study.cases.count()
    table = reads_table(study)
    row = table[(table["case"] == case_id) & (table["reader"] == read.reader.username)].set_index("modality")
    aided = row.loc["aided"]
    assert pd.isna(aided["rating"]) and aided["not_assessable"] == 1 and aided["served_seconds"] == 61.5
    assert (aided["not_assessable_reason"], aided["n_measurements"]) == ("Lesion not visible", 1)
    assert json.loads(aided["measurements"]) == measured and aided["comment"] == "=HYPERLINK(1)\nfaint"
    assert row.loc["unaided", "not_assessable"] == 0 and row.loc["unaided", "n_measurements"] == 0
    assert pd.isna(row.loc["unaided", "served_seconds"])  # simulated reads were never served by the API
    complete = table[table["case"] != case_id]
    expected = aucs(complete)
    client = client_for("stat")

    # reads.csv keeps every read, the not-assessable one with an empty rating; its text cells are CSV-safe.
    job, content = export(client, study, "csv")
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        reads = pd.read_csv(z.open("reads.csv"), dtype={"reader": str, "case": str, "comment": str})
    assert len(reads) == len(table) and reads["rating"].isna().sum() == 1 and reads["not_assessable"].sum() == 1
    assert reads.loc[reads["not_assessable"] == 1, "comment"].iloc[0] == "'=HYPERLINK(1)\nfaint"
    assert "left out" not in job.message  # nothing is left out of reads.csv
    # The peer formats hold the complete cases only, and the export's message names the case left out.
    for kind, read_back in (
        ("imrmc", lambda c: formats.read_imrmc(c.decode())),
        ("jafroc", formats.read_jafroc),
        ("mrmcaov", lambda c: formats.read_mrmcaov_csv(c.decode())),
    ):
        job, content = export(client, study, kind)
        back = read_back(content)
        assert case_id not in set(back["case"]) and back["case"].nunique() == n_cases - 1, kind
        assert aucs(back) == pytest.approx(expected, abs=1e-12), kind
        assert "1 case(s) with a not-assessable read left out" in job.message and case_id in job.message, kind

    # The analysis: complete cases, the same numbers as the module on them, and the report says so.
    response = client.post(
        f"/results/study/{study.pk}/", {"cov": "jackknife", "analyses": ["rrrc"], "size_bins_mm": "10, 30"}
    )
    assert response.status_code == 302
    run = AnalysisRun.objects.get(study=study)
    assert run.status == "done", run.message
    assert run.result["excluded"] == {
        "rule": run.result["excluded"]["rule"],
        "n_cases": 1,
        "cases": [case_id],
        "n_not_assessable_reads": 1,
        "n_reads_left_out": 3 * 2,  # the case, for each of 3 readers in each of 2 modalities
        "reasons": {"Lesion not visible": 1},
    }
    assert "complete-case" in run.result["excluded"]["rule"]
    assert run.result["summary"]["n_cases"] == n_cases - 1 and run.result["summary"]["n_reads"] == len(complete)
    module = analyse(complete[["reader", "modality", "case", "truth", "rating"]], analyses=["rrrc"])
    assert run.result["mrmc"]["rrrc"]["differences"][0]["estimate"] == pytest.approx(
        module["rrrc"]["differences"][0]["estimate"], abs=1e-12
    )
    html = client.get(f"/results/run/{run.pk}/").content.decode()
    assert 'data-testid="excluded-cases"' in html and case_id in html and "Lesion not visible: 1" in html
