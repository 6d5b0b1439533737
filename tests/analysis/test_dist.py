"""The pure-Python distribution functions (``readerstudy.analysis.dist``) against scipy.special and closed forms."""

import math

import pytest
from scipy import special

from readerstudy.analysis import dist

DFS = [0.5, 1, 1.5, 2, 2.7, 3, 4.07, 5.57, 7.3, 10, 15.2596746, 30, 118.567901234568, 1000, 1234.5, 1e4, 1e5]
XS = [0, 1e-4, 0.01, 0.1, 0.5, 1, 1.5, 1.96, 2.5, 3, 4, 5, 7, 10, 20, 50, 100, 1e3]
PS = [0.5, 0.4, 0.25, 0.1, 0.05, 0.025, 0.01, 1e-3, 1e-5, 1e-8, 1e-12, 1e-20, 1e-50]


def close(actual: float, expected: float, rel: float) -> bool:
    return math.isclose(actual, expected, rel_tol=rel, abs_tol=1e-300)


def rel_for(df: float) -> float:
    """Our continued fraction loses about df * 1e-17 in the far tails (see dist.py); scipy's Boost code does not."""
    return 1e-13 if df <= 100 else 1e-11


@pytest.mark.parametrize("df", DFS)
def test_t_tail_and_quantile_match_scipy(df):
    for x in XS:
        for sign in (1, -1):
            expected = float(special.stdtr(df, -sign * x))
            if df == 1 and x < 1e-3:  # scipy's Cauchy tail is off here; the closed form decides
                expected = 0.5 - math.atan(sign * x) / math.pi
            assert close(dist.t_sf(sign * x, df), expected, rel_for(df)), (sign * x, df)
    for p in PS:
        if df < 1 and p < 1e-20:
            continue
        for q in (p, 1 - p):
            assert close(dist.t_ppf(q, df), float(special.stdtrit(df, q)), rel_for(df)), (q, df)


@pytest.mark.parametrize("df", [1e6, 1e7])
def test_t_with_huge_ddf_keeps_nine_digits(df):
    for x in XS:
        assert close(dist.t_sf(x, df), float(special.stdtr(df, -x)), 1e-9), x
    for p in PS:
        assert close(dist.t_ppf(1 - p, df), float(special.stdtrit(df, 1 - p)), 1e-9), p


def test_t_closed_forms():
    for x in (0.001, 0.3, 1, 2.5, 40, 1e6):
        assert close(dist.t_sf(x, 1), math.atan(1 / x) / math.pi, 1e-13)
        root = math.sqrt(2 + x * x)
        assert close(dist.t_sf(x, 2), 1 / ((root + x) * root), 1e-13)  # = 1/2 - x / (2 root), without cancelling
    for q in (0.6, 0.9, 0.975, 0.999999):
        assert close(dist.t_ppf(q, 1), 1 / math.tan(math.pi * (1 - q)), 1e-12)
    assert dist.t_ppf(0.5, 7.5) == 0.0 and dist.t_sf(0.0, 3) == 0.5
    assert dist.t_sf(1.3, math.inf) == dist.norm_sf(1.3) and dist.t_ppf(0.9, math.inf) == dist.norm_ppf(0.9)


def test_normal_matches_scipy():
    for x in [*XS, -1, -3, -10, 30]:
        assert close(dist.norm_sf(x), float(special.ndtr(-x)), 1e-12), x
    for p in [*PS, 1e-100, 1e-300]:
        for q in (p, 1 - p):
            assert close(dist.norm_ppf(q), float(special.ndtri(q)), 1e-13), q
    assert dist.norm_ppf(0.5) == 0.0 and dist.norm_ppf(1.0) == math.inf and dist.norm_ppf(0.0) == -math.inf


@pytest.mark.parametrize("df", [0.5, 1, 2, 2.5, 3, 4, 9, 100, 1000])
def test_chi2_tail_matches_scipy(df):
    for x in [*XS, 200, 500, 1500]:
        assert close(dist.chi2_sf(x, df), float(special.chdtrc(df, x)), 1e-12), x
    for x in (0.1, 3, 30):
        assert close(dist.chi2_sf(x, 2), math.exp(-x / 2), 1e-14)


@pytest.mark.parametrize("df1", [1, 2, 3, 4.5, 10])
def test_f_tail_matches_scipy(df1):
    for df2 in [*DFS, math.inf]:
        for f in [*XS, 200]:
            expected = float(special.chdtrc(df1, f * df1) if math.isinf(df2) else special.fdtrc(df1, df2, f))
            assert close(dist.f_sf(f, df1, df2), expected, rel_for(df2)), (f, df2)
    for df2 in (3.5, 15.26, 118.5):
        for f in (0.2, 4.456, 30):  # F(1, v) is the square of t(v)
            assert close(dist.f_sf(f, 1, df2), 2 * dist.t_sf(math.sqrt(f), df2), 1e-13)


def test_nan_in_nan_out():
    assert math.isnan(dist.t_sf(math.nan, 3)) and math.isnan(dist.t_sf(1, math.nan))
    assert math.isnan(dist.t_ppf(0.9, math.nan)) and math.isnan(dist.f_sf(1, 1, math.nan))
    assert math.isnan(dist.chi2_sf(math.nan, 1)) and math.isnan(dist.norm_ppf(math.nan))
