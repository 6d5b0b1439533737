"""The report of a real run through the web pages: the FRRC convention on the form (the plan's by default), the
result as JSON (same permission checks as the report), and the checklist and flow filled from the study's own
records (readers' profiles, practice, washout, reading conditions, reference standard, DL model)."""

import json
import re
from collections import Counter

import numpy as np
import pytest
from django.core.management import call_command
from django.test import Client
from django.utils.html import escape

from inference.actions import record_prediction
from readerstudy.reading.actions import launch_study
from readerstudy.reading.models import Read
from readerstudy.results.models import AnalysisRun
from readerstudy.studies import actions as study_actions
from readerstudy.studies.models import Membership, Truth
from tests.factories import build_study, make_user

pytestmark = pytest.mark.django_db

FORM = {"cov": "jackknife", "analyses": ["rrrc", "frrc", "rrfc"], "size_bins_mm": "10, 30", "cluster_by_patient": "on"}


@pytest.fixture(autouse=True)
def run_jobs_on_commit(monkeypatch):
    monkeypatch.setattr("django.db.transaction.on_commit", lambda func, using=None, robust=False: func())


@pytest.fixture
def study(tmp_path):
    """3 readers, 16 lesions in 8 patients and 2 practice cases; the plan: non-inferiority with margin 0.05,
    threshold 60, FRRC untruncated; one reader's profile recorded; one read not assessable."""
    study = build_study(
        tmp_path, readers=3, n_patients=8, lesions_per_patient=2, practice_cases=2, name="Report study", launch=False
    )
    admin = make_user("admin", superuser=True)
    study_actions.add_member(admin, study, make_user("stat"), "statistician")
    study_actions.update_study(
        admin, study, plan_hypothesis="non_inferiority", plan_margin=0.05, plan_threshold=60,
        plan_frrc_convention="untruncated",
    )  # fmt: skip
    reader1 = Membership.objects.get(study=study, user__username="reader1")
    study_actions.update_reader_profile(
        admin, reader1, specialty="Abdominal radiology", years_experience=12, training="EBIR"
    )
    rng = np.random.default_rng(3)
    for case in study.cases.select_related("truth"):
        p = float(np.clip(0.5 + (0.3 if case.truth.positive else -0.3) + rng.normal(0, 0.2), 0, 1))
        record_prediction(
            admin, case, model_name="crlm-net", model_version="2", weights_sha256="ab" * 32,
            inputs_sha256=str(case.pk), probability=p,
        )  # fmt: skip
    launch_study(admin, study)
    call_command("simulate_reads", study.name, "--no-progress", "--seed", "11")
    study_actions.set_interim_analysis(admin, study, True)
    read = Read.objects.analysed().filter(study=study, modality__key="aided").order_by("case__case_id").first()
    Read.objects.filter(pk=read.pk).update(rating=None, not_assessable=True, not_assessable_reason="Other")
    study.refresh_from_db()
    return study


def client_for(username):
    client = Client()
    client.force_login(make_user(username))
    return client


def start_run(client, study, **form):
    response = client.post(f"/results/study/{study.pk}/", {**FORM, **form})
    assert response.status_code == 302
    run = AnalysisRun.objects.filter(study=study).latest("created_at")
    assert run.status == "done", run.message
    return run


def test_the_form_offers_the_frrc_convention_with_the_plan_s_preselected(study):
    client = client_for("stat")
    page = client.get(f"/results/study/{study.pk}/").content.decode()
    select = re.search(r'<select name="frrc_convention"[^>]*>(.*?)</select>', page, re.S).group(1)
    assert re.findall(r'<option value="(\w+)"', select) == ["truncated", "untruncated"]
    assert '<option value="untruncated" selected>' in select and '"truncated" selected' not in select

    run = start_run(client, study)  # no choice posted (a client without the field): the plan's
    assert run.parameters["frrc_convention"] == "untruncated" and run.result["mrmc"]["frrc"]["truncated"] is False
    run = start_run(client, study, frrc_convention="truncated")
    assert run.parameters["frrc_convention"] == "truncated" and run.result["mrmc"]["frrc"]["truncated"] is True
    html = client.get(f"/results/run/{run.pk}/").content.decode()
    assert "max(Cov2 − Cov3, 0) in the error term" in html
    response = client.post(f"/results/study/{study.pk}/", {**FORM, "frrc_convention": "both"}, follow=True)
    assert "frrc_convention &#x27;both&#x27;: expected one of truncated, untruncated" in response.content.decode()


def test_the_whole_result_downloads_as_json_for_those_who_may_see_the_report(study):
    client = client_for("stat")
    run = start_run(client, study)
    page = client.get(f"/results/run/{run.pk}/").content.decode()
    assert f'href="/results/run/{run.pk}/result.json" data-testid="download-result"' in page
    response = client.get(f"/results/run/{run.pk}/result.json")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == f'attachment; filename="analysis-{run.pk}.json"'
    document = json.loads(response.content)
    assert document["result"] == run.result and document["parameters"] == run.parameters
    assert document["data_sha256"] == run.data_sha256 and document["run"] == run.pk
    assert set(document["result"]) >= {"parameters", "plan", "software", "summary", "excluded", "flow", "mrmc",
                                       "model", "reading_time", "records"}  # fmt: skip

    # The same gates as the report: readers and outsiders get "not found", so do statisticians while the study
    # runs without interim looks; a run that has not finished has no result to download.
    assert client_for("reader1").get(f"/results/run/{run.pk}/result.json").status_code == 404
    assert client_for("nobody").get(f"/results/run/{run.pk}/result.json").status_code == 404
    assert Client().get(f"/results/run/{run.pk}/result.json").status_code == 302  # to the login page
    study_actions.set_interim_analysis(make_user("admin"), study, False)
    assert client.get(f"/results/run/{run.pk}/result.json").status_code == 404
    assert client.get(f"/results/run/{run.pk}/report.html").status_code == 404
    assert client_for("admin").get(f"/results/run/{run.pk}/result.json").status_code == 200
    AnalysisRun.objects.filter(pk=run.pk).update(status="running")
    assert client_for("admin").get(f"/results/run/{run.pk}/result.json").status_code == 404


def checklist_of(html):
    table = re.search(r'data-testid="checklist">(.*?)</table>', html, re.S).group(1)
    rows = re.findall(r"<tr data-testid=\"checklist-row\"><td>(.*?)</td><td>.*?</td><td>(.*?)</td>", table, re.S)
    return {item: value for item, value in rows}


def test_checklist_and_flow_come_from_the_study_s_records(study):
    client = client_for("stat")
    run = start_run(client, study)
    html = client.get(f"/results/run/{run.pk}/").content.decode()
    rows = checklist_of(html)

    readers = rows[escape("Readers' specialty, experience and training")]
    assert readers.startswith("3 readers; experience median 12 years (range 12–12). ")
    assert "reader1: Abdominal radiology, 12 years of experience, training: EBIR" in readers
    assert "reader2: specialty not recorded, experience not recorded, training: not recorded" in readers
    assert rows["Reader training before the study"] == (
        "practice session of 2 practice cases (truth shown after each rating, never analysed): offered to 3 "
        "readers, started by 0, 0 practice reads"
    )
    washout = rows["Washout between sessions"]
    assert washout == "28 days between a reader&#x27;s sessions (the server refuses a session before it)"
    assert rows["Hanging layout"] == "One viewport"
    assert rows["Window presets"].startswith("1: Soft tissue W400/L40; 2: Liver W150/L90 (first shown); ")
    overlay = rows["DL output shown (overlay mode)"]
    assert overlay == "Outline only (in the modalities that show DL); hidden by default: liver"
    assert rows["Study design and reading conditions"].startswith(
        "Crossover with washout, fully crossed; modalities unaided (no DL), aided (DL shown)"
    )
    assert rows["DL model (name, version, weights)"] == f"crlm-net 2 (weights sha256 {'ab' * 6}…, 15 cases)"
    # Reference standard of the 15 analysed lesions (one left out: a not-assessable read), counted from Truth.
    left_out = run.result["excluded"]["cases"]
    truth = Truth.objects.filter(case__study=study, case__practice=False).exclude(case__case_id__in=left_out)
    counts = Counter((t.get_source_display(), t.label == "crlm") for t in truth)
    assert rows["Reference standard"] == "; ".join(
        f"{source}: {counts[(source, True)]} positive, {counts[(source, False)]} negative"
        for source in sorted({s for s, _ in counts})
    )
    assert rows["Sample size"] == "not recorded"  # no effect size in this plan
    medians = run.result["reading_time"]["descriptive"]
    assert f"unaided: median {medians['unaided']['median']:.1f} s" in rows["Reading time"]
    assert (
        "hypothesis non-inferiority, margin 0.05; binary endpoints at rating ≥ 60; FRRC untruncated"
        in rows["Statistical plan (endpoint, hypothesis, threshold)"]
    )

    # The plan's threshold and hypothesis reach the run: binary endpoints, the one-sided test, the methods.
    assert run.result["plan"]["plan_threshold"] == 60 and set(run.result["binary"]) == {"sensitivity", "specificity"}
    assert 'data-testid="binary-sensitivity"' in html and "Sensitivity (a rating ≥ 60 calls a lesion positive)" in html
    assert run.result["mrmc"]["rrrc"]["differences"][0]["one_sided"]["hypothesis"] == "non-inferiority"
    assert "Planned test of non-inferiority of aided (margin 0.05)" in html
    assert run.result["compared"] == ["aided", "unaided"]

    flow = run.result["flow"]
    assert (flow["imported"]["total"], flow["practice"]["total"]) == (18, 2)
    assert (flow["not_assessable"]["total"], flow["analysed"]["total"]) == (1, run.result["summary"]["n_cases"])
    assert run.result["summary"]["n_cases"] == 15
    svg = re.search(r'<svg[^>]*data-testid="flow-diagram".*?</svg>', html, re.S).group(0)
    assert 'data-testid="flow-analysed" data-total="15"' in svg and "Excluded: practice cases: 2 cases" in svg
    # Every stratum of 16 lesions is small: each says so, with its numbers.
    for label, n in run.result["summary"]["strata"].items():
        if n["positive"] and n["negative"]:
            assert f"small sample: {n['positive']} positive and {n['negative']} negative cases" in html, label


def test_the_report_shows_what_the_dl_output_did_to_the_readers(study):
    """At the plan's threshold (60): the run's interaction block equals the analysis core's on the run's own
    table, and the report shows its table and figure."""
    from readerstudy.analysis.interaction import ai_interaction
    from readerstudy.results.runs import complete_cases
    from readerstudy.results.table import reads_table

    client = client_for("stat")
    run = start_run(client, study)
    stored = run.result["interaction"]
    table, _ = complete_cases(reads_table(study))
    expected = ai_interaction(table, unaided="unaided", aided="aided", threshold=60.0)
    assert stored["overall"]["all"]["helped"]["count"] == expected["overall"]["all"]["helped"]["count"]
    assert stored["overall"]["dl_wrong"]["n_pairs"] == expected["overall"]["dl_wrong"]["n_pairs"]
    assert stored["n_readers"] == 3 and stored["threshold"] == 60.0
    assert "interaction" in run.figures and set(run.figures["interaction"]) == {"png", "svg"}
    html = client.get(f"/results/run/{run.pk}/").content.decode()
    assert 'data-testid="interaction-table"' in html and 'data-testid="interaction-figure"' in html
    rows = re.findall(r'<tr data-reader="([^"]+)">', html)
    assert rows.count("all readers") == 3 and {"reader1", "reader2", "reader3"} <= set(rows)
    assert client.get(f"/results/run/{run.pk}/figure/interaction.png").status_code == 200


def test_a_reader_who_has_not_finished_no_longer_blocks_an_interim_look(study):
    """Half of reader3's reads missing (an interim look): the run analyses the complete readers and lists them."""
    from readerstudy.results import report
    from readerstudy.results.runs import complete_cases, run_analysis
    from readerstudy.results.table import reads_table

    table, _ = complete_cases(reads_table(study))
    reader3 = table.index[table["reader"] == "reader3"]
    partial = table.drop(reader3[: len(reader3) // 2]).reset_index(drop=True)
    result = run_analysis(partial, {"cov": "jackknife", "analyses": ["rrrc"], "size_bins_mm": [10, 30]})
    mrmc = result["mrmc"]
    assert "error" not in mrmc and mrmc["readers"] == ["reader1", "reader2"]
    rows = report.completion_rows(mrmc)
    assert [(r["reader"], r["kept"]) for r in rows] == [("reader1", True), ("reader2", True), ("reader3", False)]
    assert rows[2]["reads"] == len(reader3) - len(reader3) // 2 and rows[2]["expected"] == len(reader3)
    complete = run_analysis(table, {"cov": "jackknife", "analyses": ["rrrc"], "size_bins_mm": [10, 30]})
    assert report.completion_rows(complete["mrmc"]) == [], "nothing to list when every reader is complete"
