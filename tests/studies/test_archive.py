"""Zip safety for uploaded series: nothing leaves the extraction folder, no zip bomb; refusals name the member."""

import stat
import zipfile
from pathlib import Path

import pytest

from readerstudy.studies.archive import ZipLimits, ZipRefused, extract_zip, name_problem


def make_zip(path: Path, members: list[tuple[str, bytes]], *, symlinks: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
        for name in symlinks:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return path


def refused(tmp_path: Path, members: list[tuple[str, bytes]], limits: ZipLimits | None = None, **kw) -> list[str]:
    tmp_path.mkdir(exist_ok=True)
    archive = make_zip(tmp_path / "upload.zip", members, **kw)
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(ZipRefused) as caught:
        extract_zip(archive, target, limits or ZipLimits())
    assert not any(p.is_file() for p in target.rglob("*")), "a refused archive writes nothing"
    return caught.value.problems


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../x", "'..'"),
        ("series/../../x", "'..'"),
        ("/abs/x.dcm", "absolute"),
        ("C:/x.dcm", "drive letter"),
        ("c:x.dcm", "drive letter"),
        ("series\\..\\x", "backslash"),
        ("series/a\x1bb", "control character"),  # (zipfile cuts a name at NUL itself)
        ("series//x", "empty"),
        ("./x", "'.'"),
        ("a" * 300, "longer than 255 bytes"),
    ],
)
def test_member_names_that_could_escape_are_refused_by_name(tmp_path, name, why):
    assert why in name_problem(name)
    problems = refused(tmp_path, [("series/P001/ok.dcm", b"fine"), (name, b"x")])
    assert len(problems) == 1 and problems[0].startswith("member ") and why in problems[0]


def test_a_symlink_member_is_refused_with_its_name(tmp_path):
    (problem,) = refused(tmp_path, [("series/P001/ok.dcm", b"fine")], symlinks=("series/P001/link",))
    assert problem == "member 'series/P001/link' is a symbolic link"
    assert not (tmp_path / "out" / "series" / "P001" / "link").exists()


def test_every_problem_is_listed_not_only_the_first(tmp_path):
    problems = refused(tmp_path, [("../a", b"x"), ("/b", b"x"), ("ok", b"x")], symlinks=("c",))
    assert [p.split()[1] for p in problems] == ["'../a'", "'/b'", "'c'"]


def test_a_zip_bomb_is_refused_by_its_compression_ratio(tmp_path):
    problems = refused(tmp_path, [("series/P001/bomb.dcm", b"\0" * (20 * 1024 * 1024))])
    assert "refused as a zip bomb" in problems[0] and "'series/P001/bomb.dcm'" in problems[0]


def test_many_small_members_that_expand_too_much_together_are_refused(tmp_path):
    members = [(f"s/{i}.dcm", b"\0" * 900_000) for i in range(4)]  # each under the 1 MiB per-member floor
    (problem,) = refused(tmp_path, members, ZipLimits(max_ratio=50))
    assert problem.startswith("the archive expands") and "zip bomb" in problem


def test_total_uncompressed_size_and_member_count_are_limited(tmp_path):
    members = [("a.dcm", b"1" * 2000), ("b.dcm", b"2" * 2000)]
    (problem,) = refused(tmp_path, members, ZipLimits(max_total_bytes=3000))
    assert "expand to 4000 bytes, more than the limit of 3000 bytes" in problem
    (problem,) = refused(tmp_path / "2", members, ZipLimits(max_members=1))
    assert problem == "2 members, more than the limit of 1"


def test_duplicates_and_files_posing_as_folders_are_refused(tmp_path):
    with pytest.warns(UserWarning, match="Duplicate name"):
        problems = refused(tmp_path, [("a/x", b"1"), ("a/x", b"2"), ("f", b"file"), ("f/y", b"3")])
    assert problems == ["member 'a/x' appears twice in the archive", "member 'f/y' lies under 'f', which is a file"]


def test_not_a_zip_is_a_message(tmp_path):
    path = tmp_path / "upload.zip"
    path.write_bytes(b"PK\x03\x04 but not really")
    with pytest.raises(ZipRefused, match="not a readable zip file"):
        extract_zip(path, tmp_path, ZipLimits())


def test_a_good_zip_is_extracted_inside_the_folder(tmp_path):
    archive = make_zip(tmp_path / "ok.zip", [("series/P001/", b""), ("series/P001/0001.dcm", b"dicom"), ("top", b"t")])
    target = tmp_path / "out"
    target.mkdir()
    assert extract_zip(archive, target, ZipLimits()) == 2
    assert (target / "series" / "P001" / "0001.dcm").read_bytes() == b"dicom"
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == [
        "series",
        "series/P001",
        "series/P001/0001.dcm",
        "top",
    ]


def test_extraction_never_overwrites_or_follows_a_planted_link(tmp_path):
    archive = make_zip(tmp_path / "ok.zip", [("x/file", b"new")])
    target = tmp_path / "out"
    (target / "x").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.write_bytes(b"old")
    (target / "x" / "file").symlink_to(outside)
    with pytest.raises(ZipRefused, match=r"'x/file' (would be written outside the folder|exists already)"):
        extract_zip(archive, target, ZipLimits())
    assert outside.read_bytes() == b"old"
