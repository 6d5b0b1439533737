"""A real Orthanc PACS (DICOMweb) for the import-by-UID tests: started once per test session by ``orthanc``.

Without Orthanc installed the tests that use it skip and say why, except under ``REQUIRE_ORTHANC=1`` (``.ci/run``
sets it), where they fail: CI must run them.
"""

from collections.abc import Iterator

import pytest

from fixtures.orthanc import Orthanc, OrthancUnavailable, start_orthanc
from tests.missing import missing


def orthanc_or_skip(folder) -> Orthanc:
    try:
        return start_orthanc(folder)
    except OrthancUnavailable as exc:
        missing("REQUIRE_ORTHANC", f"no Orthanc PACS for the DICOMweb tests ({exc}); .ci/run installs it")


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """A running Orthanc with the DICOMweb plugin on free loopback ports (``.dicomweb_url``, ``.upload(paths)``)."""
    pacs = orthanc_or_skip(tmp_path_factory.mktemp("orthanc"))
    yield pacs
    pacs.stop()


@pytest.fixture
def dicomweb(settings, orthanc: Orthanc) -> Orthanc:
    """``orthanc``, with the settings pointing the import at it."""
    settings.DICOMWEB_URL = orthanc.dicomweb_url
    settings.DICOMWEB_TIMEOUT = 10
    return orthanc
