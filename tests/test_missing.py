"""tests.missing: a missing program fails a test under REQUIRE_*=1 (CI) and skips it elsewhere."""

import pytest

from tests.missing import missing


def test_a_required_program_that_is_missing_fails_the_test(monkeypatch):
    monkeypatch.setenv("REQUIRE_ORTHANC", "1")
    with pytest.raises(pytest.fail.Exception, match="REQUIRE_ORTHANC=1 but no Orthanc"):
        missing("REQUIRE_ORTHANC", "no Orthanc")


@pytest.mark.parametrize("value", [None, "0", ""])
def test_elsewhere_it_skips_and_says_why(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("REQUIRE_ORTHANC", raising=False)
    else:
        monkeypatch.setenv("REQUIRE_ORTHANC", value)
    with pytest.raises(pytest.skip.Exception, match="no Orthanc"):
        missing("REQUIRE_ORTHANC", "no Orthanc")
