"""The report's comparison of classifier backends (standalone AUC, DeLong) and its decision curves, from a real run:
numbers checked by hand against the stored predictions and reads, and shown in the report and its download."""

import re

import numpy as np
import pytest
from django.core.management import call_command
from django.test import Client

from inference.actions import record_prediction
from readerstudy.reading.actions import launch_study
from readerstudy.results import report
from readerstudy.results.models import AnalysisRun
from readerstudy.results.runs import complete_cases
from readerstudy.results.table import reads_table
from readerstudy.studies import actions as study_actions
from tests.factories import build_study, make_user

pytestmark = pytest.mark.django_db

FORM = {"cov": "jackknife", "analyses": ["rrrc"], "size_bins_mm": "10, 30", "cluster_by_patient": "on"}
DL, RADIOMICS, PARTIAL = "unet+densenet-demo", "unet+radiomics-l1-logistic-demo", "<b>partial</b>"


@pytest.fixture(autouse=True)
def run_jobs_on_commit(monkeypatch):
    monkeypatch.setattr("django.db.transaction.on_commit", lambda func, using=None, robust=False: func())


@pytest.fixture
def study(tmp_path):
    """2 readers, 16 lesions in 8 patients; three backends: a DL and a radiomics one on every case, and one
    (with markup in its name) on half of them."""
    study = build_study(tmp_path, readers=2, n_patients=8, lesions_per_patient=2, name="Backends", launch=False)
    admin = make_user("admin", superuser=True)
    study_actions.add_member(admin, study, make_user("stat"), "statistician")
    rng = np.random.default_rng(16)
    for k, case in enumerate(study.cases.select_related("truth").order_by("case_id")):
        signal = 0.25 if case.truth.positive else -0.25
        for name, noise, sha in ((DL, 0.2, "d" * 64), (RADIOMICS, 0.3, "r" * 64), (PARTIAL, 0.3, "p" * 64)):
            if name == PARTIAL and k % 2:
                continue
            p = float(np.clip(0.5 + signal + rng.normal(0, noise), 0, 1))
            record_prediction(
                admin, case, model_name=name, model_version="1.0", weights_sha256=sha,
                inputs_sha256=f"{case.pk}", probability=round(p, 2),
            )  # fmt: skip
    launch_study(admin, study)
    call_command("simulate_reads", study.name, "--no-progress", "--seed", "5")
    study_actions.set_interim_analysis(admin, study, True)
    study.refresh_from_db()
    return study


def run_for(study) -> tuple[AnalysisRun, Client]:
    client = Client()
    client.force_login(make_user("stat"))
    assert client.post(f"/results/study/{study.pk}/", FORM).status_code == 302
    run = AnalysisRun.objects.filter(study=study).latest("created_at")
    assert run.status == "done", run.message
    return run, client


def stored(study, name):
    return {
        case.case_id: case.predictions.get(model_name=name).probability
        for case in study.cases.prefetch_related("predictions")
        if case.predictions.filter(model_name=name).exists()
    }


def mann_whitney_auc(truth, scores):
    pos, neg = scores[truth == 1], scores[truth == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (pos.size * neg.size)


def net_benefit(truth, p, pt):
    called = p >= pt
    return (np.sum(called & (truth == 1)) - np.sum(called & (truth == 0)) * pt / (1 - pt)) / truth.size


def test_backends_are_compared_on_the_analysed_cases_and_the_partial_one_is_left_out(study):
    run, _ = run_for(study)
    backends = run.result["backends"]
    table = complete_cases(reads_table(study))[0]
    cases = table.drop_duplicates("case")
    truth = cases["truth"].to_numpy()
    assert backends["order"] == [f"{DL} 1.0", f"{RADIOMICS} 1.0"]
    for name, label in ((DL, f"{DL} 1.0"), (RADIOMICS, f"{RADIOMICS} 1.0")):
        p = stored(study, name)
        scores = np.array([p[c] for c in cases["case"]])
        row = backends["backends"][label]
        assert row["auc"] == pytest.approx(mann_whitney_auc(truth, scores), abs=1e-12)
        assert row["model_name"] == name and row["model_version"] == "1.0" and row["weights_sha256"][0] in "dr"
        assert row["se"] > 0 and row["ci"][0] < row["auc"] < row["ci"][1]
    (pair,) = backends["pairs"]
    assert pair["difference"] == pytest.approx(
        backends["backends"][f"{DL} 1.0"]["auc"] - backends["backends"][f"{RADIOMICS} 1.0"]["auc"]
    )
    assert 0 < pair["p"] <= 1 and pair["p_holm"] == pair["p"]  # one pair: Holm changes nothing
    assert backends["method"].startswith("clustered DeLong") and backends["n_clusters"] == 8
    assert backends["left_out"] == [{"backend": f"{PARTIAL} 1.0", "n_missing": 8, "example": "P001-L2"}]


def test_decision_curves_equal_the_hand_computed_net_benefit(study):
    run, _ = run_for(study)
    curve = run.result["decision_curve"]
    table = complete_cases(reads_table(study))[0]
    cases = table.drop_duplicates("case")
    truth = cases["truth"].to_numpy()
    thresholds = curve["thresholds"]
    assert thresholds[0] == 0.01 and thresholds[-1] == 0.99 and len(thresholds) == 99
    curves = {c["name"]: c for c in curve["curves"]}
    assert list(curves) == [f"{DL} 1.0", f"{RADIOMICS} 1.0", "readers, aided", "readers, unaided"]
    dl = np.array([stored(study, DL)[c] for c in cases["case"]])
    assert curves[f"{DL} 1.0"]["net_benefit"] == pytest.approx([net_benefit(truth, dl, t) for t in thresholds])
    for modality in ("aided", "unaided"):
        reads = table[table["modality"] == modality]
        p = reads["rating"].to_numpy(dtype=float) / 100  # the 0-100 scale rescaled to 0-1
        expected = [net_benefit(reads["truth"].to_numpy(), p, t) for t in thresholds]
        assert curves[f"readers, {modality}"]["net_benefit"] == pytest.approx(expected, abs=1e-12)
        assert curves[f"readers, {modality}"]["n"] == len(reads)
    prevalence = truth.mean()
    assert curve["treat_all"] == pytest.approx([prevalence - (1 - prevalence) * t / (1 - t) for t in thresholds])
    assert curve["treat_none"] == [0.0] * 99 and curve["rating_scale"] == [0.0, 100.0]
    assert set(run.figures["decision_curve"]) == {"png", "svg"}


def test_the_report_shows_the_backend_table_the_pairs_and_the_decision_curves(study):
    run, client = run_for(study)
    html = client.get(f"/results/run/{run.pk}/").content.decode()
    rows = re.findall(r'<tr data-testid="backend-row" data-backend="([^"]+)">(.*?)</tr>', html, re.S)
    assert [label for label, _ in rows] == [f"{DL} 1.0", f"{RADIOMICS} 1.0"]
    for label, cells in rows:
        auc = run.result["backends"]["backends"][label]["auc"]
        assert f'data-value="{auc!r}"' in cells and "1.0" in cells
    assert html.count('data-testid="backend-pair"') == 1
    assert "&lt;b&gt;partial&lt;/b&gt; 1.0: no prediction for 8 of the analysed lesions" in html
    assert "<b>partial</b>" not in html
    decision = dict(re.findall(r'<tr data-testid="decision-row" data-strategy="([^"]+)">(.*?)</tr>', html, re.S))
    assert list(decision) == [f"{DL} 1.0", f"{RADIOMICS} 1.0", "readers, aided", "readers, unaided", "treat all",
                              "treat none"]  # fmt: skip
    at = run.result["decision_curve"]["thresholds"].index(0.3)
    aided = next(c for c in run.result["decision_curve"]["curves"] if c["name"] == "readers, aided")
    assert f'data-value="{aided["net_benefit"][at]!r}"' in decision["readers, aided"]
    assert re.findall(r"<th>p<sub>t</sub> = ([0-9.]+)</th>", html) == ["0.05", "0.1", "0.2", "0.3", "0.5"]
    assert 'data-testid="decision-figure"' in html and "rescaling the study's rating scale (0–100) to 0–1" in html
    download = client.get(f"/results/run/{run.pk}/report.html").content.decode()
    assert 'data-testid="backend-table"' in download and "data:image/png;base64," in download


def test_a_run_from_before_these_sections_shows_neither():
    assert report.backend_rows({}) == [] and report.backend_pair_rows({}) == []
    assert report.decision_rows({}) == ([], [])
    assert report.decision_rows({"error": "x"}) == ([], [])


def test_decision_rows_show_only_the_thresholds_the_curve_has():
    curve = {"thresholds": [0.1, 0.3], "curves": [{"name": "m", "kind": "backend", "n": 4, "net_benefit": [0.4, 0.2]},
             {"name": "readers, aided", "kind": "readers", "error": "one class"}],
             "treat_all": [0.3, 0.1], "treat_none": [0.0, 0.0], "n": 4}  # fmt: skip
    shown, rows = report.decision_rows(curve, thresholds=(0.1, 0.2, 0.3))
    assert shown == [0.1, 0.3]
    assert rows[0]["values"] == [0.4, 0.2] and rows[1]["error"] == "one class"
    assert [r["name"] for r in rows[2:]] == ["treat all", "treat none"]
