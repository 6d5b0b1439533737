"""Roe-Metz null simulation: RRRC (Hillis df) rejects at close to the nominal 5%."""

import numpy as np
import pytest

from readerstudy.analysis import analyse_study
from readerstudy.analysis.simulate import roe_metz


@pytest.mark.slow
def test_rrrc_null_rejection_rate_is_nominal():
    rng = np.random.default_rng(20240601)
    n_studies = 2000  # binomial SE of the rate at 5%: 0.0049, so [0.035, 0.065] is +-3 SE
    p = np.array(
        [analyse_study(roe_metz(5, 2, 50, 50, rng), analyses=("rrrc",))["rrrc"]["p"] for _ in range(n_studies)]
    )
    rate = float((p < 0.05).mean())
    assert 0.035 <= rate <= 0.065, rate


def test_a_real_effect_is_detected():
    """Guards the null test against an analysis that never rejects."""
    rng = np.random.default_rng(1)
    p = [analyse_study(roe_metz(5, 2, 50, 50, rng, delta=0.8), analyses=("rrrc",))["rrrc"]["p"] for _ in range(40)]
    assert np.mean(np.array(p) < 0.05) > 0.8
