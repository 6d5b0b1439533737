"""Import by UID from a PACS over DICOMweb (a real Orthanc, tests/studies/conftest.py): the same cases as from a
folder, and every failure a row error with nothing applied and no staging folder left."""

import contextlib
import re
import shutil
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.core.files.storage import default_storage
from pydicom.uid import generate_uid

from fixtures.manifests import write_series
from fixtures.orthanc import Orthanc
from fixtures.servers import free_port
from imaging.headers import probe_series
from imaging.uids import uid_problem
from readerstudy.core.errors import InvalidInput
from readerstudy.studies import actions
from readerstudy.studies.models import Case, ImageSeries, Patient, Truth
from tests.factories import make_user, manifest_row, write_manifest

GOOD_UID = "1.2.826.0.1.3680043.8.498.1"


# --- UID syntax (pure) -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("uid", ["1.2.840.10008.5.1.4.1.1.2", "2.25.0", "0", "1." + "2" * 62])
def test_valid_uids(uid):
    assert uid_problem(uid) is None


@pytest.mark.parametrize(
    ("uid", "reason"),
    [
        ("", "empty"),
        ("1." + "2" * 63, "longer than 64"),
        ("1.2/../../instances", "contains '/'"),
        ("1.2?limit=1", "contains '?'"),
        ("1.2 3", "U+0020"),
        ("1.2\x00", "U+0000"),
        ("1.2.\u0663", "digits and dots only"),  # an Arabic-Indic digit: not ASCII
        ("1..2", "empty component"),
        (".1.2", "empty component"),
        ("1.2.", "empty component"),
        ("1.02", "leading zero"),
        ("=HYPERLINK(1)", "contains '='"),
    ],
)
def test_hostile_uids_are_refused(uid, reason):
    assert reason in uid_problem(uid)


# --- helpers ---------------------------------------------------------------------------------------------------


@pytest.fixture
def admin(db):
    return make_user("admin", superuser=True)


@pytest.fixture
def staging_parent(tmp_path, monkeypatch):
    """Temporary folders (the import's staging and de-identification folders) go here, so a test sees leftovers."""
    parent = tmp_path / "tmp"
    parent.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(parent))
    return parent


def uid_row(patient: str, case: str, study_uid: str, series_uid: str, **overrides: object) -> dict[str, str]:
    row = manifest_row(patient, case, series="", **overrides)
    row["series_path"] = ""
    return {**row, "study_instance_uid": study_uid, "series_instance_uid": series_uid}


def uids_of(folder: Path) -> tuple[str, str]:
    ds = pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)


def counts() -> tuple[int, int, int, int]:
    return (Patient.objects.count(), ImageSeries.objects.count(), Case.objects.count(), Truth.objects.count())


def stored_files() -> list[str]:
    root = Path(default_storage.location) / "studies"
    return sorted(str(p) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def refused(admin, tmp_path: Path, rows: list[dict], name: str) -> list[str]:
    """Import ``rows`` into a new study, expect a refusal with nothing applied; the row errors."""
    study = actions.create_study(admin, name, seed=1)
    manifest = write_manifest(tmp_path / name, rows)
    with pytest.raises(InvalidInput) as exc:
        actions.import_cases(admin, study, manifest)
    assert counts() == (0, 0, 0, 0)
    assert stored_files() == []
    return exc.value.details


def real_ct_with_uids(target: Path) -> Path:
    """The real CT example (tests/data/totalseg_example) with its blank UIDs filled, as a PACS needs them."""
    from tests.conftest import TOTALSEG_EXAMPLE

    target.mkdir(parents=True)
    study_uid, series_uid = generate_uid(), generate_uid()
    for n, path in enumerate(sorted((TOTALSEG_EXAMPLE / "example_ct_dicom").iterdir()), start=1):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(target / f"{n:04d}.dcm")
    return target


def centre_row(folder: Path, root: Path, patient: str, case: str, fraction: float, **overrides: object) -> dict:
    """A row whose lesion centre lies on a slice ``fraction`` of the way through the series in ``folder``."""
    info = probe_series(folder)
    along = info.positions_mm[round(fraction * (info.n_slices - 1))]
    point = [along * v for v in info.normal]
    return manifest_row(
        patient,
        case,
        series=str(folder.relative_to(root)),
        lesion_x_mm=f"{point[0]:.4f}",
        lesion_y_mm=f"{point[1]:.4f}",
        lesion_z_mm=f"{point[2]:.4f}",
        **overrides,
    )


def case_table(study) -> list[tuple]:
    return [
        (c.case_id, c.patient.pseudonym, c.diameter_mm, c.truth.label, c.truth.source, c.slice_index,
         [cs.role for cs in c.case_series.order_by("position")])
        for c in Case.objects.filter(study=study).select_related("patient", "truth").order_by("case_id")
    ]  # fmt: skip


def stored_pixels(study) -> dict[str, list[np.ndarray]]:
    out = {}
    for case in Case.objects.filter(study=study).select_related("series", "patient"):
        s = case.series
        slices = []
        for name in s.slice_files:
            with default_storage.open(f"{s.storage_prefix}/{name}") as f:
                ds = pydicom.dcmread(f)
            assert ds.PatientID == case.patient.pseudonym  # de-identified on the way in, like folder rows
            slices.append(ds.pixel_array.copy())
        out[case.case_id] = slices
    return out


# --- the same cases from the PACS and from a folder ------------------------------------------------------------


def test_same_cases_from_orthanc_and_from_folder(dicomweb, admin, tmp_path, staging_parent, phantom_series):
    root = tmp_path / "import"
    real = real_ct_with_uids(root / "series" / "REAL")
    phantom = root / "series" / "PHANTOM"
    shutil.copytree(phantom_series.folder, phantom)
    dicomweb.upload(sorted(real.iterdir()))
    dicomweb.upload(sorted(phantom.iterdir()))

    folder_rows = [
        centre_row(real, root, "P001", "P001-L1", 0.5, diameter_mm="24.5", truth="crlm"),
        centre_row(phantom, root, "P002", "P002-L1", 0.3, diameter_mm="8", truth="hemangioma", truth_source="imaging"),
        centre_row(phantom, root, "P002", "P002-L2", 0.7, diameter_mm="31", truth="crlm", truth_source="follow-up"),
    ]
    pacs_rows = []
    for row, folder in zip(folder_rows, (real, phantom, phantom), strict=True):
        pacs_rows.append({**row, "series_path": "", "study_instance_uid": "", "series_instance_uid": ""})
        pacs_rows[-1]["study_instance_uid"], pacs_rows[-1]["series_instance_uid"] = uids_of(folder)

    from_folder = actions.create_study(admin, "From folder", seed=7)
    from_pacs = actions.create_study(admin, "From PACS", seed=7)
    a = actions.import_cases(admin, from_folder, write_manifest(root, folder_rows, name="folder.csv"))
    b = actions.import_cases(admin, from_pacs, write_manifest(root, pacs_rows, name="pacs.csv"))

    assert (a.n_cases, a.n_patients, a.n_series) == (b.n_cases, b.n_patients, b.n_series) == (3, 2, 2)
    assert case_table(from_pacs) == case_table(from_folder)
    assert [c[1] for c in case_table(from_pacs)] == ["P001", "P002", "P002"]
    pixels_folder, pixels_pacs = stored_pixels(from_folder), stored_pixels(from_pacs)
    assert pixels_folder.keys() == pixels_pacs.keys()
    for case_id, slices in pixels_folder.items():
        assert len(slices) == len(pixels_pacs[case_id]) > 1
        for x, y in zip(slices, pixels_pacs[case_id], strict=True):
            assert x.dtype == y.dtype and np.array_equal(x, y)
    assert list(staging_parent.iterdir()) == []  # the staging folder is gone


def test_pacs_and_folder_rows_mix_in_one_manifest(dicomweb, admin, tmp_path, staging_parent):
    root = tmp_path / "mix"
    paths = write_series(root / "pacs-only")
    dicomweb.upload(paths)
    study_uid, series_uid = uids_of(root / "pacs-only")
    shutil.rmtree(root / "pacs-only")  # only the PACS has it now
    rows = [manifest_row("P001", "P001-L1"), uid_row("P002", "P002-L1", study_uid, series_uid)]
    rows.append(uid_row("P002", "P002-L2", study_uid, series_uid, lesion_z_mm="7.5"))  # retrieved once, shared
    study = actions.create_study(admin, "Mixed", seed=1)
    summary = actions.import_cases(admin, study, write_manifest(root, rows))
    assert (summary.n_cases, summary.n_patients, summary.n_series) == (3, 2, 2)
    assert Case.objects.get(case_id="P002-L2").slice_index == 3
    assert list(staging_parent.iterdir()) == []


def test_uid_rows_without_series_path_column(dicomweb, admin, tmp_path):
    paths = write_series(tmp_path / "src")
    dicomweb.upload(paths)
    row = uid_row("P001", "P001-L1", *uids_of(tmp_path / "src"))
    del row["series_path"]
    manifest = tmp_path / "m" / "manifest.csv"
    manifest.parent.mkdir()
    manifest.write_text(",".join(row) + "\n" + ",".join(row.values()) + "\n")
    study = actions.create_study(admin, "No series_path", seed=1)
    assert actions.import_cases(admin, study, manifest).n_cases == 1


# --- every failure: a row error, nothing applied, no staging folder left -----------------------------------------


def test_hostile_uids_and_forms_are_row_errors_before_any_request(settings, admin, tmp_path, staging_parent):
    settings.DICOMWEB_URL = f"http://127.0.0.1:{free_port()}/dicom-web"  # nothing listens: must not be asked
    rows = [
        manifest_row("P001", "P001-L1"),  # a good folder row: refused with the rest
        uid_row("P002", "P002-L1", "1.2/../../studies", GOOD_UID),
        uid_row("P003", "P003-L1", GOOD_UID, "1.2.3?x=1"),
        uid_row("P004", "P004-L1", "", GOOD_UID),
        uid_row("P005", "P005-L1", GOOD_UID, "1." + "9" * 70),
        {**uid_row("P006", "P006-L1", GOOD_UID, GOOD_UID), "series_path": "series/P006"},  # both forms
    ]
    details = refused(admin, tmp_path, rows, "hostile")
    text = "\n".join(details)
    assert "row 3 column study_instance_uid: '1.2/../../studies' contains '/'" in text
    assert "row 4 column series_instance_uid: '1.2.3?x=1' contains '?'" in text
    assert "row 5 column study_instance_uid: empty" in text
    assert "row 6 column series_instance_uid:" in text and "longer than 64" in text
    assert "row 7 column series_path: give either series_path or study_instance_uid + series_instance_uid" in text
    assert "cannot reach" not in text  # no request was made for any of them
    assert len(details) == 5
    assert list(staging_parent.iterdir()) == []


def test_no_server_configured(settings, admin, tmp_path, staging_parent):
    settings.DICOMWEB_URL = ""
    details = refused(admin, tmp_path, [uid_row("P001", "P001-L1", GOOD_UID, GOOD_UID)], "unconfigured")
    assert details == ["manifest.csv row 2 column series_instance_uid: " + actions_not_configured()]


def actions_not_configured() -> str:
    from readerstudy.studies.dicomweb import NOT_CONFIGURED

    return NOT_CONFIGURED


def test_unreachable_server(settings, admin, tmp_path, staging_parent):
    settings.DICOMWEB_URL = url = f"http://127.0.0.1:{free_port()}/dicom-web"
    rows = [uid_row("P001", "P001-L1", GOOD_UID, GOOD_UID), uid_row("P002", "P002-L1", GOOD_UID, GOOD_UID + ".2")]
    details = refused(admin, tmp_path, rows, "unreachable")
    assert details == [
        f"manifest.csv row {n} column series_instance_uid: cannot reach the DICOMweb server {url} (ConnectionError)"
        for n in (2, 3)
    ]
    assert list(staging_parent.iterdir()) == []


def test_unknown_study_or_series_and_wrong_modality(dicomweb, admin, tmp_path, staging_parent):
    write_series(tmp_path / "ct")
    write_series(tmp_path / "mr", modality="MR")
    dicomweb.upload([*sorted((tmp_path / "ct").iterdir()), *sorted((tmp_path / "mr").iterdir())])
    ct_study, ct_series = uids_of(tmp_path / "ct")
    rows = [
        manifest_row("P001", "P001-L1"),
        uid_row("P002", "P002-L1", ct_study, GOOD_UID),  # unknown series
        uid_row("P003", "P003-L1", GOOD_UID, ct_series),  # a known series, but not in this study
        uid_row("P004", "P004-L1", *uids_of(tmp_path / "mr")),
    ]
    details = refused(admin, tmp_path, rows, "unknown")
    assert details == [
        f"manifest.csv row 3 column series_instance_uid: the DICOMweb server has no series {GOOD_UID} "
        f"in study {ct_study}",
        f"manifest.csv row 4 column series_instance_uid: the DICOMweb server has no series {ct_series} "
        f"in study {GOOD_UID}",
        f"manifest.csv row 5 column series_instance_uid: series {uids_of(tmp_path / 'mr')[1]} holds modality "
        "'MR', expected CT",
    ]
    assert list(staging_parent.iterdir()) == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [("position", ": two slices share one position"), ("size", " mixes image sizes [(8, 8), (16, 16)]")],
)
def test_inconsistent_geometry(dicomweb, admin, tmp_path, staging_parent, change, reason):
    paths = write_series(tmp_path / "src")
    ds = pydicom.dcmread(paths[3])
    if change == "position":
        ds.ImagePositionPatient = pydicom.dcmread(paths[1]).ImagePositionPatient
    else:
        ds.Rows = ds.Columns = 16
        ds.PixelData = np.full((16, 16), 1124, dtype=np.uint16).tobytes()
    ds.save_as(paths[3])
    dicomweb.upload(paths)
    study_uid, series_uid = uids_of(tmp_path / "src")
    details = refused(admin, tmp_path, [uid_row("P001", "P001-L1", study_uid, series_uid)], f"geometry-{change}")
    assert details == [f"manifest.csv row 2 column series_instance_uid: series {series_uid}{reason}"]
    assert str(staging_parent) not in details[0]  # the message names the UID, not the staging folder
    assert list(staging_parent.iterdir()) == []


# --- a retrieve that breaks off halfway --------------------------------------------------------------------------


@contextlib.contextmanager
def cutting_proxy(upstream: str, *, cut: str) -> Iterator[str]:
    """An HTTP proxy in front of the real Orthanc that passes searches through whole but sends only about half of
    every series retrieve (WADO-RS) and then closes the connection, as when the PACS dies mid-transfer. ``cut``:
    ``length-declared`` (the answer announced its full length, so the client can tell), ``mid-part`` (the body just
    ends inside an instance), ``at-boundary`` (it ends cleanly between two instances: only the count can tell)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            request = urllib.request.Request(upstream + self.path, headers={"Accept": self.headers["Accept"] or "*/*"})
            try:
                with urllib.request.urlopen(request, timeout=10) as r:
                    status, ctype, body = r.status, r.headers["Content-Type"], r.read()
            except urllib.error.HTTPError as exc:
                status, ctype, body = exc.code, exc.headers["Content-Type"] or "text/plain", exc.read()
            retrieve = self.path.split("?")[0].rstrip("/").split("/")[-2:-1] == ["series"]
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            if not retrieve or cut == "length-declared":
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            end = len(body)
            if retrieve:
                boundary = b"--" + ctype.split("boundary=")[1].split(";")[0].strip('"').encode()
                starts = [m.start() for m in re.finditer(re.escape(b"\r\n" + boundary), body)]
                end = starts[len(starts) // 2] if cut == "at-boundary" else len(body) // 2
            self.wfile.write(body[:end])
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("cut", ["length-declared", "mid-part", "at-boundary"])
def test_retrieve_cut_short(orthanc: Orthanc, settings, admin, tmp_path, staging_parent, cut):
    paths = write_series(tmp_path / "src", n_slices=12, size=64)
    orthanc.upload(paths)
    study_uid, series_uid = uids_of(tmp_path / "src")
    with cutting_proxy(orthanc.url, cut=cut) as proxy:
        settings.DICOMWEB_URL = f"{proxy}/dicom-web"
        rows = [manifest_row("P001", "P001-L1"), uid_row("P002", "P002-L1", study_uid, series_uid)]
        details = refused(admin, tmp_path, rows, f"cut-{cut}")
    assert len(details) == 1
    prefix = f"manifest.csv row 3 column series_instance_uid: retrieve of series {series_uid} "
    assert details[0].startswith(prefix)
    # Either the client notices (a short body, a garbled last part) or the count does: never an import of half.
    assert re.search(r"(broke off after|came back with) \d+ of 12 instances", details[0]), details[0]
    if cut == "at-boundary":
        assert re.search(r"came back with \d of 12 instances \(the response was cut short", details[0]), details[0]
    assert list(staging_parent.iterdir()) == []
