"""One-sided superiority and non-inferiority tests: a hand computation from the two-sided quantities, refusals."""

import pytest
from scipy import stats

from readerstudy.analysis import AnalysisInputError, analyse

from .conftest import assert_close
from .test_strata import _study

REL = 1e-12


def _hand(difference, null_bound, alpha, dist):
    """T = (d - delta0) / se, p = P(T_df > T), L = d - q_{1-alpha} se, from the difference's estimate, se, df."""
    d, se = difference["estimate"], difference["se"]
    return (d - null_bound) / se, dist.sf((d - null_bound) / se), d - dist.ppf(1 - alpha) * se


@pytest.mark.parametrize(
    ("hypothesis", "margin", "null_bound"), [("non-inferiority", 0.05, -0.05), ("superiority", None, 0.0)]
)
def test_rrrc_frrc_rrfc_match_a_hand_computation(refdata, hypothesis, margin, null_bound):
    ours = analyse(refdata / "vandyke.csv", hypothesis=hypothesis, margin=margin, alpha=0.05)
    rrrc = ours["rrrc"]["differences"][0]
    # Van Dyke, RRRC: difference -0.043800322, SE 0.020748618, Hillis ddf 15.2596746 (the refdata README)
    assert_close(rrrc["estimate"], -0.043800322, "estimate", rel=1e-8)
    assert_close(rrrc["df"], 15.2596746, "ddf", rel=1e-8)
    for name, dist in (
        ("rrrc", stats.t(rrrc["df"])),
        ("frrc", stats.norm),
        ("rrfc", stats.t((2 - 1) * (5 - 1))),
    ):
        difference = ours[name]["differences"][0]
        stat, p, lower = _hand(difference, null_bound, 0.05, dist)
        one = difference["one_sided"]
        key = "z" if name == "frrc" else "t"
        assert one["hypothesis"] == hypothesis and one["null_bound"] == null_bound and one["alpha"] == 0.05
        assert one["margin"] == (margin or 0.0) and one["df"] == difference["df"]
        assert_close(one[key], stat, f"{name} statistic", rel=REL)
        assert_close(one["p"], p, f"{name} one-sided p", rel=REL)
        assert_close(one["lower_bound"], lower, f"{name} lower bound", rel=REL)
        assert one["rejected"] == (p < 0.05) == (lower > null_bound)


def test_non_inferiority_of_the_better_modality_is_shown():
    """Modality 2 is better on _study(); oriented 1 - 2, non-inferiority of 1 with a wide margin is shown."""
    ours = analyse(_study(), hypothesis="non-inferiority", margin=0.3, analyses=("rrrc",))
    one = ours["rrrc"]["differences"][0]["one_sided"]
    assert one["lower_bound"] > -0.3 and one["rejected"] and one["p"] < 0.05
    sup = analyse(_study(), hypothesis="superiority", analyses=("rrrc",))["rrrc"]["differences"][0]["one_sided"]
    assert not sup["rejected"] and sup["p"] > 0.5


def test_alpha_0025_lower_bound_is_the_two_sided_95_lower_end(refdata):
    ours = analyse(refdata / "vandyke.csv", hypothesis="non-inferiority", margin=0.1, alpha=0.025)
    plain = analyse(refdata / "vandyke.csv", alpha=0.05)
    for name in ("rrrc", "frrc", "rrfc"):
        assert_close(
            ours[name]["differences"][0]["one_sided"]["lower_bound"],
            plain[name]["differences"][0]["ci"][0],
            name,
            rel=REL,
        )


def test_one_sided_tests_reach_strata_and_binary_foms(refdata):
    ours = analyse(_study(), stratum="stratum", hypothesis="superiority", fom="sensitivity", threshold=0.5)
    for sub in ours["strata"].values():
        assert sub["rrrc"]["differences"][0]["one_sided"]["hypothesis"] == "superiority"
    assert "one_sided" not in analyse(refdata / "vandyke.csv")["rrrc"]["differences"][0]
    spelled = analyse(refdata / "vandyke.csv", hypothesis="non_inferiority", margin=0.05)  # the studies app's spelling
    assert spelled["rrrc"]["differences"][0]["one_sided"]["hypothesis"] == "non-inferiority"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"margin": 0.05}, "margin 0.05 without a hypothesis"),
        (
            {"hypothesis": "superiority", "margin": 0.05},
            "superiority tests H0: theta_A - theta_B <= 0 and takes no margin",
        ),
        ({"hypothesis": "non-inferiority"}, "non-inferiority needs a margin 0 < M < 1"),
        ({"hypothesis": "non-inferiority", "margin": -0.05}, "non-inferiority needs a margin 0 < M < 1"),
        ({"hypothesis": "non-inferiority", "margin": 1.5}, "non-inferiority needs a margin 0 < M < 1"),
        ({"hypothesis": "equivalence", "margin": 0.05}, r"hypothesis 'equivalence': expected one of"),
    ],
)
def test_bad_hypotheses_are_refused(refdata, kwargs, message):
    with pytest.raises(AnalysisInputError, match=message):
        analyse(refdata / "vandyke.csv", **kwargs)


def test_superiority_accepts_margin_zero(refdata):
    """The studies app stores margin 0 with superiority."""
    one = analyse(refdata / "vandyke.csv", hypothesis="superiority", margin=0.0)["rrrc"]["differences"][0]["one_sided"]
    assert one["margin"] == 0.0 and one["null_bound"] == 0.0
