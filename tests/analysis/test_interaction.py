"""AI-interaction analytics: hand-made pairs with known answers, then properties on simulated reads."""

import numpy as np
import pandas as pd
import pytest

from readerstudy.analysis.errors import AnalysisInputError
from readerstudy.analysis.interaction import ai_interaction

pytestmark = pytest.mark.nodb


def reads(rows: list[tuple]) -> pd.DataFrame:
    """rows: (reader, case, truth, unaided, aided, dl_probability)."""
    out = []
    for reader, case, truth, u, a, p in rows:
        out.append({"reader": reader, "modality": "unaided", "case": case, "truth": truth, "rating": u,
                    "model_probability": None, "patient": f"P-{case}"})  # fmt: skip
        out.append({"reader": reader, "modality": "aided", "case": case, "truth": truth, "rating": a,
                    "model_probability": p, "patient": f"P-{case}"})  # fmt: skip
    return pd.DataFrame(out)


HAND = [
    # reader, case, truth, unaided, aided, DL probability        DL call (T=50) / right? / outcome / change to DL
    ("r1", "c1", 1, 30, 70, 0.9),  # pos, right, helped, +40
    ("r1", "c2", 0, 40, 60, 0.8),  # pos, wrong, harmed, +20
    ("r1", "c3", 0, 20, 10, 0.1),  # neg, right, unchanged, +10
    ("r1", "c4", 1, 80, 90, 0.3),  # neg, wrong, unchanged, -10
    ("r2", "c1", 1, 60, 55, 0.9),  # pos, right, unchanged, -5
    ("r2", "c2", 0, 45, 45, 0.8),  # pos, wrong, unchanged, 0
    ("r2", "c3", 0, 70, 30, 0.1),  # neg, right, helped, +40
    ("r2", "c4", 1, 90, 40, 0.3),  # neg, wrong, harmed, +50
]


def test_counts_rates_and_changes_of_hand_made_pairs():
    result = ai_interaction(reads(HAND), unaided="unaided", aided="aided", threshold=50)
    assert (result["n_readers"], result["n_pairs"], result["n_cases"]) == (2, 8, 4)
    assert result["dl_accuracy"] == 0.5
    everything = result["overall"]["all"]
    assert (everything["helped"]["count"], everything["harmed"]["count"], everything["unchanged"]["count"]) == (2, 2, 4)
    assert everything["switched"]["count"] == 4 and everything["switched_toward_dl"]["count"] == 4
    assert everything["change_toward_dl"]["mean"] == pytest.approx((40 + 20 + 10 - 10 - 5 + 0 + 40 + 50) / 8)
    right, wrong = result["overall"]["dl_right"], result["overall"]["dl_wrong"]
    assert (right["n_pairs"], right["helped"]["count"], right["harmed"]["count"]) == (4, 2, 0)
    assert (wrong["n_pairs"], wrong["helped"]["count"], wrong["harmed"]["count"]) == (4, 0, 2)
    r1 = result["readers"]["r1"]["all"]
    assert (r1["helped"]["count"], r1["harmed"]["count"], r1["unchanged"]["count"]) == (1, 1, 2)
    assert r1["change_toward_dl"]["mean"] == pytest.approx(15.0)
    from statsmodels.stats.proportion import proportion_confint  # an independent Wilson interval

    assert r1["helped"]["ci"] == pytest.approx(list(proportion_confint(1, 4, alpha=0.05, method="wilson")), abs=1e-12)
    # t interval of r1's changes [40, 20, 10, -10]: mean 15, sd 20.8167, t(3) 3.18245
    assert r1["change_toward_dl"]["ci"] == pytest.approx(
        [15 - 3.182446305 * 20.81665999 / 2, 15 + 3.182446305 * 20.81665999 / 2]
    )
    lo, hi = everything["helped"]["ci"]
    assert 0 <= lo <= 0.25 <= hi <= 1, "the pooled bootstrap interval holds the pooled rate"


def test_a_dl_that_readers_follow_moves_them_towards_it():
    rng = np.random.default_rng(3)
    rows = []
    for case in range(200):
        truth = int(case % 2)
        dl = float(np.clip(0.5 + (0.3 if truth else -0.3) + rng.normal(0, 0.25), 0, 1))
        for reader in range(5):
            unaided = float(np.clip(50 + (15 if truth else -15) + rng.normal(0, 25), 0, 100))
            aided = unaided + 0.6 * (100 * dl - unaided)  # each reader moves 60 % of the way to the DL's answer
            rows.append((f"r{reader}", f"c{case}", truth, unaided, aided, dl))
    result = ai_interaction(reads(rows), unaided="unaided", aided="aided", threshold=50)
    overall = result["overall"]["all"]
    assert overall["change_toward_dl"]["mean"] > 5 and overall["change_toward_dl"]["ci"][0] > 0
    assert overall["switched_toward_dl"]["count"] == overall["switched"]["count"], "every switch follows the DL"
    assert result["overall"]["dl_right"]["helped"]["rate"] > result["overall"]["dl_right"]["harmed"]["rate"]
    assert result["overall"]["dl_wrong"]["harmed"]["rate"] > result["overall"]["dl_wrong"]["helped"]["rate"]


def test_bad_input_names_what_is_wrong():
    with pytest.raises(AnalysisInputError, match="modality 'dl' is not in the reads"):
        ai_interaction(reads(HAND), unaided="unaided", aided="dl", threshold=50)
    no_dl = reads(HAND).assign(model_probability=None)
    with pytest.raises(AnalysisInputError, match="case 'c1' has no DL probability"):
        ai_interaction(no_dl, unaided="unaided", aided="aided", threshold=50)
    with pytest.raises(AnalysisInputError, match="missing column"):
        ai_interaction(reads(HAND).drop(columns="model_probability"), unaided="unaided", aided="aided", threshold=50)
