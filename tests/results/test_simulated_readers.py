"""The demo's simulated readers: aided readers weigh the DL output they are shown, for better (help) and worse."""

import numpy as np
import pytest

from readerstudy.analysis.auc import empirical_auc
from readerstudy.results.simulate import SimulatedCase, simulate_ratings

READERS = list(range(1, 9))
MODALITIES = [(1, False), (2, True)]  # unaided, aided


def cases(n: int = 120) -> list[SimulatedCase]:
    return [SimulatedCase(k, k % 2, "10-30") for k in range(n)]


def ratings(dl: dict[int, float] | None, reliance: float, seed: int = 3) -> np.ndarray:
    """[modality, reader, case] ratings."""
    cells = simulate_ratings(
        np.random.default_rng(seed), READERS, cases(), MODALITIES, aided_effect={}, dl_probability=dl,
        dl_reliance=reliance,
    )  # fmt: skip
    return np.array([[[cells[(r, c.case, m)][0] for c in cases()] for r in READERS] for m, _ in MODALITIES])


def test_reliance_zero_or_no_dl_output_is_the_reader_alone():
    dl = {c.case: 0.9 for c in cases()}
    alone = ratings(None, 0.0)
    assert np.array_equal(ratings(dl, 0.0), alone)
    assert np.array_equal(ratings(None, 0.7), alone)


def test_the_unaided_arm_never_sees_the_dl_output():
    dl = {c.case: (0.02 if c.truth else 0.98) for c in cases()}  # confidently wrong everywhere
    assert np.array_equal(ratings(dl, 0.6)[0], ratings(None, 0.0)[0])


def test_a_correct_dl_output_helps_and_a_wrong_one_harms():
    truth = np.array([c.truth for c in cases()])
    right = {c.case: (0.95 if c.truth else 0.05) for c in cases()}
    wrong = {c.case: (0.05 if c.truth else 0.95) for c in cases()}
    alone = ratings(None, 0.0)[1]
    helped, harmed = ratings(right, 0.5)[1], ratings(wrong, 0.5)[1]
    # positives rated higher with a correct output, lower with a wrong one (negatives the other way round)
    assert helped[:, truth == 1].mean() > alone[:, truth == 1].mean() > harmed[:, truth == 1].mean()
    assert helped[:, truth == 0].mean() < alone[:, truth == 0].mean() < harmed[:, truth == 0].mean()

    def mean_auc(r: np.ndarray) -> float:
        return float(empirical_auc(r.astype(float), truth).mean())

    assert mean_auc(helped) > mean_auc(alone) + 0.02
    assert mean_auc(harmed) < mean_auc(alone) - 0.02


def test_only_cases_with_a_dl_output_move():
    dl = {c.case: 0.99 for c in cases() if c.case < 60}
    alone, aided = ratings(None, 0.0)[1], ratings(dl, 0.5)[1]
    assert np.array_equal(aided[:, 60:], alone[:, 60:])
    assert not np.array_equal(aided[:, :60], alone[:, :60])


def test_reliance_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="dl_reliance"):
        ratings({0: 0.5}, 1.5)
