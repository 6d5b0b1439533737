"""The archive format module stands alone: no Django, so the format can be read and checked anywhere."""

import subprocess
import sys

import pytest

from readerstudy.backup.archive import BackupError, check_manifest, safe_member


def test_archive_module_imports_no_django():
    code = "import sys, readerstudy.backup.archive; print('django' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../b", "a//b", "./a", "a\\b", "", None])
def test_unsafe_member_names_are_refused(name):
    with pytest.raises(BackupError, match="not allowed"):
        safe_member(name)


def test_a_manifest_without_every_table_is_refused():
    manifest = {"format": "readerstudy-backup", "format_version": 1, "members": {}, "counts": {}, "study": {}}
    with pytest.raises(BackupError, match=r"lists no member tables/users\.jsonl"):
        check_manifest(manifest)
