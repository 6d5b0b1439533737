"""The one way a test may skip for something this machine lacks (Chromium, Orthanc, systemd-analyze).

``.ci/run`` sets ``REQUIRE_BROWSER=1``, ``REQUIRE_ORTHANC=1`` and ``REQUIRE_SYSTEMD=1``: there a missing program is
a failure, so CI never passes on a skipped test; elsewhere the test skips and says what to install.
"""

import os
from typing import NoReturn

import pytest


def missing(requirement: str, reason: str) -> NoReturn:
    """Fail when the environment variable ``requirement`` is 1, else skip; ``reason`` names what is missing."""
    if os.environ.get(requirement) == "1":
        pytest.fail(f"{requirement}=1 but {reason}")
    pytest.skip(reason)
