"""Reading time: the crossed mixed model recovers a known aided/unaided time ratio; data problems give messages."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from readerstudy.results.reading_time import MIN_READS_PER_MODALITY, reading_time_model
from tests.results.test_formats import simulate_study


@pytest.fixture(scope="module")
def study():
    return simulate_study(time_ratio=0.8)  # 5 readers x 84 lesions x 2 modalities


@pytest.fixture(scope="module")
def fitted(study):
    return reading_time_model(study)


def test_recovers_the_simulated_ratio(fitted):
    assert "error" not in fitted and fitted["converged"] is True
    assert fitted["ratio"] == pytest.approx(0.8, abs=0.04)  # about 2 standard errors
    lo, hi = fitted["ci"]
    assert lo < 0.8 < hi and lo < fitted["ratio"] < hi
    assert fitted["p"] < 1e-10
    assert (fitted["n_reads"], fitted["n_readers"], fitted["n_cases"], fitted["n_excluded"]) == (840, 5, 84, 0)
    # simulated on the log scale: reader SD 0.3, case SD 0.4, residual SD 0.3
    assert fitted["variance"]["case"] == pytest.approx(0.16, rel=0.35)
    assert fitted["variance"]["residual"] == pytest.approx(0.09, rel=0.15)
    assert fitted["variance"]["reader"] > 0


def test_balanced_design_identities(study, fitted):
    # fully crossed and balanced: the GLS modality effect is the difference in mean log times, and reader and
    # case effects cancel from it, so its variance is 2 * residual / (readers * cases)
    logs = np.log(study["active_seconds"]).groupby(study["modality"]).mean()
    assert fitted["log_ratio"] == pytest.approx(logs["aided"] - logs["unaided"], abs=1e-7)
    assert fitted["log_ratio_se"] == pytest.approx(math.sqrt(2 * fitted["variance"]["residual"] / (5 * 84)), rel=1e-4)
    b, se = fitted["log_ratio"], fitted["log_ratio_se"]
    assert fitted["ratio"] == pytest.approx(math.exp(b), rel=1e-12)
    assert fitted["ci"] == pytest.approx([math.exp(b - 1.959963984540054 * se), math.exp(b + 1.959963984540054 * se)])
    assert fitted["p"] == pytest.approx(2 * norm.sf(abs(b / se)), rel=1e-9)


def test_descriptive_statistics(study, fitted):
    for m in ("aided", "unaided"):
        t = study.loc[study["modality"] == m, "active_seconds"].to_numpy()
        d = fitted["descriptive"][m]
        assert d["n"] == 420
        assert d["median"] == pytest.approx(np.median(t), rel=1e-12)
        assert [d["q1"], d["q3"]] == pytest.approx(np.percentile(t, [25, 75]), rel=1e-12)
        assert d["geometric_mean"] == pytest.approx(math.exp(np.log(t).mean()), rel=1e-12)
    ratio_of_geometric_means = fitted["descriptive"]["aided"]["geometric_mean"] / fitted["descriptive"]["unaided"][
        "geometric_mean"]  # fmt: skip
    assert fitted["ratio"] == pytest.approx(ratio_of_geometric_means, rel=1e-6)  # balanced design again


def test_no_effect_is_not_significant():
    result = reading_time_model(simulate_study(time_ratio=1.0, seed=11))
    assert result["ratio"] == pytest.approx(1.0, abs=0.05)
    assert result["ci"][0] < 1 < result["ci"][1] and result["p"] > 0.05


def test_result_is_json(fitted):
    json.dumps(fitted, allow_nan=False)


def test_unusable_times_are_left_out(study):
    df = study.astype({"active_seconds": object})
    df.loc[:2, "active_seconds"] = [0.0, None, "n/a"]
    result = reading_time_model(df)
    assert result["n_excluded"] == 3 and result["n_reads"] == 837 and "error" not in result


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop(columns="active_seconds"), "missing column(s) ['active_seconds']"),
        (lambda df: df[df["modality"] == "aided"], "too few reads with a positive time in ['unaided']"),
        (lambda df: df.assign(active_seconds=0.0), "too few reads with a positive time in ['unaided', 'aided']"),
        (lambda df: df.replace({"modality": {"aided": "AI"}}), "modalities found: ['AI', 'unaided']"),
        (lambda df: df[df["reader"] == "reader1"], "1 reader(s) and 84 case(s)"),
        (lambda df: df.head(2 * MIN_READS_PER_MODALITY - 1), "too few reads"),
    ],
)
def test_data_problems_give_messages(study, change, message):
    result = reading_time_model(change(study))
    assert message in result["error"]
    json.dumps(result, allow_nan=False)


def test_singular_model_gives_message():
    # every read the same time: no variance to estimate, the fit fails or does not converge
    df = pd.DataFrame({
        "reader": [f"r{i % 3}" for i in range(60)], "modality": ["aided", "unaided"] * 30,
        "case": [f"c{i // 6}" for i in range(60)], "active_seconds": 30.0,
    })  # fmt: skip
    result = reading_time_model(df)
    assert "error" in result and "mixed model" in result["error"]


def test_a_design_too_large_for_the_dense_model_gives_the_medians_and_says_why(study, monkeypatch):
    import readerstudy.results.reading_time as reading_time

    cells = len(study) * (study["reader"].nunique() + study["case"].nunique())
    monkeypatch.setattr(reading_time, "MAX_DESIGN_CELLS", cells - 1)
    result = reading_time.reading_time_model(study)
    assert f"its dense design would hold {cells:,} cells" in result["error"]
    assert result["descriptive"]["aided"]["median"] > 0 and "ratio" not in result
    monkeypatch.setattr(reading_time, "MAX_DESIGN_CELLS", cells)
    assert "ratio" in reading_time.reading_time_model(study), "at the limit it is still fitted"
