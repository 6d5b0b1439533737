"""Reference-data location and shared comparison helpers for the analysis tests (no Django, no database)."""

import math
import os
from pathlib import Path

import pytest

# A copy of the workplace's shared/refdata/mrmc lives in tests/data (see its README): the suite stands alone.
DEFAULT_REFDATA = Path(__file__).resolve().parents[1] / "data" / "mrmc"
REFDATA = Path(os.environ.get("MRMC_REFDATA", DEFAULT_REFDATA))
REL = 1e-9  # agreement required with the peer programs


@pytest.fixture(scope="session")
def refdata() -> Path:
    assert (REFDATA / "README.md").is_file(), (
        f"missing {REFDATA}: tests/data is part of the repository (see its README); MRMC_REFDATA may name a copy"
    )
    return REFDATA


def assert_close(actual, expected, what: str, rel: float = REL) -> None:
    """actual == expected to ``rel`` relative (numbers, or equal-length lists of numbers)."""
    if isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), f"{what}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, f"{what}[{i}]", rel)
        return
    assert actual is not None, f"{what}: got None, expected {expected!r}"
    assert math.isclose(actual, expected, rel_tol=rel, abs_tol=1e-15), (
        f"{what}: {actual!r} != {expected!r} (rel diff {abs(actual - expected) / abs(expected):.2e})"
    )
