"""``python -m readerstudy.analysis --fom/--threshold/--hypothesis/--margin``: JSON = analyse(), refusals exit 2."""

import json

from readerstudy.analysis import analyse

from .test_main import run


def test_cli_sensitivity_with_non_inferiority(refdata, tmp_path):
    out = tmp_path / "sens.json"
    args = ["--fom", "sensitivity", "--threshold", "3", "--hypothesis", "non-inferiority", "--margin", "0.05"]
    proc = run(str(refdata / "vandyke.csv"), *args, "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "figure of merit: sensitivity, a read calls a case positive when its rating >= 3.0" in proc.stdout
    assert "one-sided non-inferiority, margin 0.0500:" in proc.stdout
    assert "RRRC: F = 6.6895, df = (1, 15.717), p = 0.0201" in proc.stdout  # MRMCaov: 6.68949, 15.7173, 0.020088
    result = json.loads(out.read_text())
    expected = analyse(
        refdata / "vandyke.csv", fom="sensitivity", threshold=3.0, hypothesis="non-inferiority", margin=0.05
    )
    assert result == json.loads(json.dumps(expected))
    assert {"sensitivity", "sensitivity_se", "modality_sensitivity"} <= set(result) and "auc" not in result
    assert result["rrrc"]["differences"][0]["one_sided"]["null_bound"] == -0.05


def test_cli_auc_json_names_its_fom(refdata, tmp_path):
    out = tmp_path / "auc.json"
    proc = run(str(refdata / "vandyke.csv"), "--hypothesis", "superiority", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["fom"] == "auc" and result["threshold"] is None and "auc" in result
    assert result["rrrc"]["differences"][0]["one_sided"]["hypothesis"] == "superiority"


def test_cli_refuses_a_threshold_for_the_auc_and_none_for_sensitivity(refdata):
    proc = run(str(refdata / "vandyke.csv"), "--threshold", "3")
    assert proc.returncode == 2 and "the AUC uses every rating and takes no threshold" in proc.stderr
    proc = run(str(refdata / "vandyke.csv"), "--fom", "specificity")
    assert proc.returncode == 2 and "specificity needs a threshold" in proc.stderr
    proc = run(str(refdata / "vandyke.csv"), "--hypothesis", "non-inferiority")
    assert proc.returncode == 2 and "needs a margin" in proc.stderr
