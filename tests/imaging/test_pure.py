"""imaging is pure: importing it loads neither Django nor torch (nor the test fixtures), and neither does the
inference pipeline's import of it."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "modules",
    [
        "imaging.headers, imaging.series, imaging.deid",
        "inference.pipeline.segment, inference.pipeline.run, inference.pipeline.train_unet",
    ],
)
def test_imports_load_no_django_torch_or_fixtures(modules):
    forbidden = ("django", "torch", "fixtures") if modules.startswith("imaging") else ("django", "fixtures")
    code = f"import sys, {modules}; print(sorted(m for m in {forbidden!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
