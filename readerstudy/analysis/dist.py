"""Tail probabilities and quantiles of the normal, t, chi-square and F distributions, in pure Python.

Why not scipy: the command line's budget is one second for 20 000 cases, and importing ``scipy.stats``
costs more than that (about 1.1 s of CPU here), ``scipy.special`` alone 0.2 s (scipy 1.17 parses docstrings
at import), as much as reading, validating and analysing the 400 000 ratings together. These few functions
are the textbook ones and need only :mod:`math`:

- the normal tail from ``math.erfc``, its quantile by Halley steps from the Abramowitz-Stegun 26.2.23 start;
- the t and F tails from the regularized incomplete beta function I_x(a, b) (continued fraction, modified
  Lentz, as in Numerical Recipes 6.4), with ``x`` and ``1 - x`` both passed in exactly so that neither tail
  loses digits: t: P(T > t) = I_{v/(v+t^2)}(v/2, 1/2) / 2; F: P(F > f) = I_{d2/(d2+d1 f)}(d2/2, d1/2);
- the chi-square tail from the regularized upper incomplete gamma Q(k/2, x/2) (series or continued
  fraction, Numerical Recipes 6.2);
- the t quantile by safeguarded Newton steps on the tail from a Cornish-Fisher start.

log B(a, b) for a large argument uses the Stirling series for lgamma(a + b) - lgamma(a) rather than the
difference of two large lgammas, so that ddf of 10^6 keep their digits. ``tests/analysis/test_dist.py`` checks
every function against ``scipy.special`` (``ndtr``, ``ndtri``, ``stdtr``, ``stdtrit``, ``chdtrc``, ``fdtrc``)
to 1e-12 relative over fractional degrees of freedom from 0.5 to 10^7 and tails down to 1e-300.
``df = inf`` gives the normal (or chi-square) limit; NaN in, NaN out.
"""

from __future__ import annotations

import math

_EPS = 1e-16
_TINY = 1e-300
_SQRT2 = math.sqrt(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def norm_sf(x: float) -> float:
    """P(Z > x) for a standard normal Z."""
    return 0.5 * math.erfc(x / _SQRT2)


def _norm_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x - _LOG_SQRT_2PI)


def norm_isf(p: float) -> float:
    """x with P(Z > x) = p."""
    if math.isnan(p) or not 0.0 <= p <= 1.0:
        return math.nan
    if p == 0.0:
        return math.inf
    if p == 0.5:
        return 0.0
    if p > 0.5:  # 1 - p is exact for p in [1/2, 1]
        return -norm_isf(1.0 - p) if p < 1.0 else -math.inf
    x = math.sqrt(-2.0 * math.log(p))
    x -= (2.515517 + 0.802853 * x + 0.010328 * x * x) / (1 + 1.432788 * x + 0.189269 * x * x + 0.001308 * x**3)
    for _ in range(10):  # Halley on sf(x) - p; cubic convergence from an error below 4.5e-4
        u = (norm_sf(x) - p) / _norm_pdf(x)
        step = u / (1.0 - 0.5 * x * u)
        x += step
        if abs(step) <= 2 * _EPS * abs(x) or step == 0.0:
            break
    return x


def norm_ppf(q: float) -> float:
    """The q quantile of the standard normal."""
    return norm_isf(1.0 - q) if q >= 0.5 else -norm_isf(q)


def _lgamma_ratio(a: float, b: float) -> float:
    """lgamma(a + b) - lgamma(a), accurate also for large a (Stirling series of both terms, subtracted)."""
    if a < 1e3 or b > 0.1 * a:
        return math.lgamma(a + b) - math.lgamma(a)

    def corr(z: float) -> float:  # lgamma(z) - Stirling's main terms, to 1e-25 for z >= 1000
        z2 = z * z
        return (1 / 12 - (1 / 360 - 1 / (1260 * z2)) / z2) / z

    return (a - 0.5) * math.log1p(b / a) + b * math.log(a + b) - b + corr(a + b) - corr(a)


def _lbeta(a: float, b: float) -> float:
    """log B(a, b)."""
    small, big = (a, b) if a <= b else (b, a)
    return math.lgamma(small) - _lgamma_ratio(big, small)


def _log_complement(p: float, q: float) -> float:
    """log p, where q = 1 - p is known exactly (p near 1 keeps its digits through log1p(-q))."""
    return math.log1p(-q) if p > 0.5 else math.log(p)


def _beta_cf(a: float, b: float, x: float, y: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz); converges fast for x < (a + 1) / (a + b + 2)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = (1.0 - b + qab * y) / qap if x > 0.5 else 1.0 - qab * x / qap  # the same; no cancellation as x -> 1
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 100 + 20 * int(math.sqrt(max(a, b)))):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) <= _EPS:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def _betainc(a: float, b: float, x: float, y: float) -> float:
    """Regularized incomplete beta I_x(a, b), given x and y = 1 - x both exactly."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    log_front = a * _log_complement(x, y) + b * _log_complement(y, x) - _lbeta(a, b)
    # The usual switch: the fraction in x below the mean of the beta distribution, in y = 1 - x above it. With
    # a large and x near 1 (t and F tails with large ddf) the fraction in x loses digits (its terms are near
    # 1 - x), so there the one in y is taken as long as I is not small (1 - I_y(b, a) cancels as I -> 0).
    if x < (a + 1.0) / (a + b + 2.0) and not (a > 1e3 and y * (a + b) < 4.5):
        return math.exp(log_front - math.log(a)) * _beta_cf(a, b, x, y)
    return 1.0 - math.exp(log_front - math.log(b)) * _beta_cf(b, a, y, x)


def t_sf(x: float, df: float) -> float:
    """P(T > x) for Student's t with ``df`` (fractional allowed; inf = normal) degrees of freedom."""
    if math.isnan(x) or math.isnan(df) or df <= 0:
        return math.nan
    if math.isinf(df):
        return norm_sf(x)
    if x < 0:
        return 1.0 - t_sf(-x, df)
    if math.isinf(x):
        return 0.0
    x2 = x * x
    return 0.5 * _betainc(0.5 * df, 0.5, df / (df + x2), x2 / (df + x2))


def _t_pdf(x: float, df: float) -> float:
    log_norm = _lgamma_ratio(0.5 * df, 0.5) - 0.5 * math.log(df * math.pi)
    return math.exp(log_norm - 0.5 * (df + 1.0) * math.log1p(x * x / df))


def _t_isf_start(p: float, df: float) -> float:
    """Cornish-Fisher approximation of the t quantile from the normal one (Abramowitz-Stegun 26.7.5)."""
    z = norm_isf(p)
    z3 = z**3
    return z + (z3 + z) / (4 * df) + (5 * z**5 + 16 * z3 + 3 * z) / (96 * df * df)


def t_isf(p: float, df: float) -> float:
    """x with P(T > x) = p for Student's t with ``df`` degrees of freedom (inf = normal)."""
    if math.isnan(p) or math.isnan(df) or df <= 0 or not 0.0 <= p <= 1.0:
        return math.nan
    if math.isinf(df):
        return norm_isf(p)
    if p > 0.5:
        return -t_isf(1.0 - p, df)
    if p == 0.0:
        return math.inf
    return 0.0 if p == 0.5 else _t_isf_upper(p, df)


def _t_isf_upper(p: float, df: float) -> float:
    """x > 0 with P(T > x) = p < 1/2: Newton steps on the tail, kept inside a bracket [lo, hi] of the root."""
    x = _t_isf_start(p, df)
    lo, hi = 0.0, math.inf
    for _ in range(400):
        sf = t_sf(x, df)
        if sf == p:
            return x
        if sf > p:
            lo = x
        else:
            hi = x
        density = _t_pdf(x, df)
        new = x + (sf - p) / density if density > 0 else math.nan
        if not lo < new < hi:  # Newton left the bracket (or underflowed): bisect, or grow while hi is unknown
            new = 4 * lo + 1.0 if math.isinf(hi) else 0.5 * (lo + hi)
        if abs(new - x) <= 2 * _EPS * abs(new) or hi - lo <= 2 * _EPS * abs(new):
            return new
        x = new
    return x  # not reached in the tested range; the last iterate is as close as rounding allows


def t_ppf(q: float, df: float) -> float:
    """The q quantile of Student's t with ``df`` degrees of freedom (inf = normal)."""
    return t_isf(1.0 - q, df) if q >= 0.5 else -t_isf(q, df)


def _gammaincc(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x)."""
    if x <= 0.0:
        return 1.0
    if math.isinf(x):
        return 0.0
    log_front = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:  # series for P(a, x); Q is not small here
        ap, term = a, 1.0 / a
        total = term
        for _ in range(100000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) <= abs(total) * _EPS:
                return 1.0 - total * math.exp(log_front)
        raise ArithmeticError(f"incomplete gamma series did not converge (a={a}, x={x})")
    b = x + 1.0 - a  # continued fraction for Q(a, x), modified Lentz
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, 100000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = b + an / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        if abs(d * c - 1.0) <= _EPS:
            return math.exp(log_front) * h
    raise ArithmeticError(f"incomplete gamma continued fraction did not converge (a={a}, x={x})")


def chi2_sf(x: float, df: float) -> float:
    """P(X > x) for chi-square with ``df`` degrees of freedom."""
    if math.isnan(x) or math.isnan(df) or df <= 0:
        return math.nan
    return _gammaincc(0.5 * df, 0.5 * x)


def f_sf(f: float, df1: float, df2: float) -> float:
    """P(F > f) for F(df1, df2); df2 = inf is chi2(df1) / df1."""
    if math.isnan(f) or math.isnan(df1) or math.isnan(df2) or df1 <= 0 or df2 <= 0:
        return math.nan
    if math.isinf(df2):
        return chi2_sf(f * df1, df1)
    if f <= 0:
        return 1.0
    if math.isinf(f):
        return 0.0
    denominator = df2 + df1 * f
    return _betainc(0.5 * df2, 0.5 * df1, df2 / denominator, df1 * f / denominator)
