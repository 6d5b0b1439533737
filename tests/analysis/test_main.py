"""``python -m readerstudy.analysis``: tables on stdout, the documented JSON keys, errors on stderr."""

import json
import subprocess
import sys
from pathlib import Path

from readerstudy.analysis import analyse

from .conftest import assert_close
from .test_strata import _study

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "readerstudy.analysis", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_cli_writes_the_documented_json(refdata, tmp_path):
    out = tmp_path / "vandyke.json"
    proc = run(str(refdata / "vandyke.csv"), "--cov", "jackknife", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "RRRC: F = 4.4563, df = (1, 15.260), p = 0.0517" in proc.stdout
    result = json.loads(out.read_text())
    assert {
        "n_readers",
        "n_cases",
        "n_positive",
        "n_negative",
        "n_clusters",
        "cov_method",
        "modalities",
        "readers",
        "auc",
        "modality_auc",
        "var_components",
        "rrrc",
        "frrc",
        "rrfc",
    } <= set(result)
    assert (result["n_readers"], result["n_cases"], result["n_positive"], result["n_negative"]) == (5, 114, 45, 69)
    assert result["n_clusters"] is None and result["cov_method"] == "jackknife"
    assert result["modalities"] == ["1", "2"] and result["readers"] == ["1", "2", "3", "4", "5"]
    ref = json.loads((refdata / "vandyke_MRMCaov.json").read_text())
    peer = ref["results"]["jackknife"]["RRRC"]
    assert_close(result["auc"]["1"]["1"], ref["reader_modality_auc"][0]["auc"], "auc 1/1")
    assert_close(result["modality_auc"]["2"], ref["modality_auc"]["2"], "modality AUC 2")
    assert set(result["var_components"]) >= {"var_r", "var_tr", "cov1", "cov2", "cov3", "var_error"}
    rrrc = result["rrrc"]
    assert {"f", "df1", "df2", "p", "differences", "single"} <= set(rrrc)
    diff = rrrc["differences"][0]
    assert diff["modalities"] == ["1", "2"]
    assert_close(diff["estimate"], peer["diffs"][0]["estimate"], "estimate (first minus second)")
    assert diff["estimate"] < 0  # modality 1 is worse than 2 on Van Dyke
    assert_close(diff["ci"][1], peer["diffs"][0]["ci_upper"], "CI upper")
    assert_close(rrrc["p"], peer["global_test"]["p"], "p")
    assert {"auc", "se", "df", "ci"} <= set(rrrc["single"]["1"])
    assert {"chisq", "df", "p", "differences", "single"} <= set(result["frrc"])
    assert {"f", "df1", "df2", "p", "differences", "single"} <= set(result["rrfc"])
    assert result == json.loads(json.dumps(analyse(refdata / "vandyke.csv")))


def test_cli_stratified_and_selected_analyses(tmp_path):
    csv, out = tmp_path / "study.csv", tmp_path / "out.json"
    _study().drop(columns="size").to_csv(csv, index=False)
    proc = run(str(csv), "--stratify-column", "stratum", "--analysis", "rrrc", "--cov", "delong", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert "frrc" not in result and "rrfc" not in result
    assert set(result["strata"]) == {"<=10", "10-30", ">30"}
    assert all("p_holm" in s["rrrc"] for s in result["strata"].values())
    assert "== stratum 10-30" in proc.stdout
    assert "NaN" not in out.read_text()


def test_cli_reports_bad_input_on_stderr(tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text("reader,modality,case,rating\n1,1,1,3\n")
    proc = run(str(csv))
    assert proc.returncode == 2
    assert "error: missing column(s) ['truth']" in proc.stderr
