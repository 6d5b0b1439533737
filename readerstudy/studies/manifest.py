"""Parse and check a case manifest; every problem is reported with its row number, column and reason.

Nothing here writes to the database: ``import_cases`` applies the checked rows in one transaction or not at all.
Broken or hostile files are messages, never tracebacks: the file size, row count, field lengths and number of
reported problems are bounded, and ids (:func:`id_problem`) are a conservative ASCII set, because they end up
in DICOM headers and in exports opened by spreadsheets (no path separators, '..', control characters or
leading formula characters).
"""

import csv
import hashlib
import io
import math
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from imaging.headers import SeriesError, SeriesInfo, probe_series
from imaging.uids import UID_RULE, uid_problem
from readerstudy.studies import covariates, reference_masks
from readerstudy.studies.roles import DEFAULT_SERIES_ROLE, MAX_SERIES_PER_CASE, ROLE_RULE, SERIES_ROLE_MAX, role_problem

REQUIRED_COLUMNS = [
    "patient_id",
    "case_id",
    "series_path",
    "lesion_x_mm",
    "lesion_y_mm",
    "lesion_z_mm",
    "diameter_mm",
    "truth",
    "truth_source",
]
# Optional, in any order after or among the required ones: series_role (the role of the series in series_path,
# default DEFAULT_SERIES_ROLE) and extra_series (more series of the case: "role=folder;role=folder", may be empty).
# study_instance_uid + series_instance_uid name the primary series on the DICOMweb server (settings.DICOMWEB_URL)
# instead of a folder in series_path: exactly one of the two forms per row (series_path then stays empty).
# practice: "yes"/"1" marks a practice case (read in the optional practice session only, never analysed);
# "no"/"0"/empty (or no column) a regular one.
# reference_mask: a NIfTI labelmap or DICOM SEG of the primary series, relative to the manifest's folder, for the
# segmentation evaluation (studies.reference_masks); every row of one series names the same file, or none.
OPTIONAL_COLUMNS = ["series_role", "extra_series", "practice", reference_masks.COLUMN]
UID_COLUMNS = ["study_instance_uid", "series_instance_uid"]
# Clinical covariates (studies.covariates.COVARIATES: age, sex, ...) and the free-text case_text, each optional,
# each cell may be empty (not recorded).
CLINICAL_COLUMNS = list(covariates.COLUMNS)
# Every known column, in the order the fixtures write them.
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS + UID_COLUMNS + CLINICAL_COLUMNS
# The primary series is what the lesion centre and the DL prediction refer to: CT (Hounsfield units). Further
# series may be CT phases or MR sequences.
PRIMARY_MODALITIES = ("CT",)
SERIES_MODALITIES = ("CT", "MR")
TRUTH_LABELS = ("crlm", "hemangioma")
TRUTH_SOURCES = ("histology", "follow-up", "imaging")
PRACTICE_VALUES = {"yes": True, "1": True, "no": False, "0": False, "": False}
ID_MAX = 64
# Bounds that keep a hostile or broken file a row error, not a traceback or an afternoon of CPU.
MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 10_000
MAX_ERRORS = 500
FIELD_MAX = 64  # numbers and labels
SERIES_PATH_MAX = 1024
EXTRA_SERIES_MAX = (MAX_SERIES_PER_CASE - 1) * (SERIES_ROLE_MAX + SERIES_PATH_MAX + 2)
NAME_MAX_BYTES = 255  # one path component (Linux NAME_MAX)

# Ids become DICOM PatientID (LO), file and folder names elsewhere, and cells in CSV exports: a conservative
# ASCII set keeps them safe everywhere (no separators, no '..', no control characters, no formula prefixes).
_ID_CHARS = frozenset(string.ascii_letters + string.digits + "_-.")
ID_RULE = (
    f"1 to {ID_MAX} characters from A-Z a-z 0-9 _ - . "
    "not starting with '.' or '-' and without '..' (e.g. P001 or P001-L1)"
)
_FORMULA_PREFIXES = ("=", "+", "-", "@")


def show(value: str, limit: int = 40) -> str:
    """``repr`` of a user's value for an error message, cut short so that a huge field stays a short message."""
    if len(value) <= limit:
        return repr(value)
    return repr(value[:limit]) + f"... ({len(value)} characters)"


def id_problem(value: str) -> str | None:  # noqa: C901
    """Why ``value`` cannot be a pseudonymous id (patient_id, case_id), or None when it can."""
    if not value:
        return "empty"
    if len(value) > ID_MAX:
        return f"{show(value)} is longer than {ID_MAX} characters"
    if "\x00" in value:
        return f"{show(value)} contains a NUL byte"
    odd = next((c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")), None)
    if odd is not None:
        return f"{show(value)} contains the control character U+{ord(odd):04X}"
    if "/" in value or "\\" in value:
        return f"{show(value)} contains a path separator ('/' or '\\')"
    if ".." in value:
        return f"{show(value)} contains '..'"
    odd = next((c for c in value if c.isspace()), None)
    if odd is not None:
        return f"{show(value)} contains whitespace (U+{ord(odd):04X})"
    if value.startswith(_FORMULA_PREFIXES):
        return f"{show(value)} starts with {value[0]!r}, which spreadsheets read as a formula"
    if value.startswith("."):
        return f"{show(value)} starts with '.'"
    odd = next((c for c in value if c not in _ID_CHARS), None)
    if odd is not None:
        return f"{show(value)} contains {odd!r}"
    return None


@dataclass(frozen=True)
class ManifestRow:
    row: int  # line number in the file (header is line 1)
    patient_id: str
    case_id: str
    series_dir: Path
    lesion_mm: tuple[float, float, float]
    diameter_mm: float
    truth: str
    truth_source: str
    series_role: str = DEFAULT_SERIES_ROLE
    extra_series: tuple[tuple[str, Path], ...] = ()  # (role, folder) in manifest order: positions 1, 2, ...
    practice: bool = False  # a practice case: read in the practice session only, never analysed
    clinical: dict[str, Any] = field(default_factory=dict)  # covariate -> value, the filled cells only
    case_text: str = ""  # free-text clinical history, plain text
    reference_mask: Path | None = None  # resolved file of the primary series' reference mask (checked path)

    @property
    def all_series(self) -> list[tuple[str, Path]]:
        """(role, folder) of every series of the case, the primary first (position 0)."""
        return [(self.series_role, self.series_dir), *self.extra_series]


@dataclass
class Manifest:
    path: Path
    rows: list[ManifestRow] = field(default_factory=list)
    series: dict[Path, SeriesInfo] = field(default_factory=dict)  # every folder a valid row names
    slice_index: dict[str, int] = field(default_factory=dict)  # case_id -> nearest slice
    errors: list[str] = field(default_factory=list)
    sha256: str = ""  # of the bytes that were checked (not of whatever the file holds later)


class _TooManyErrors(Exception):
    pass


class SeriesSource(Protocol):
    """Where series named by UID come from (``dicomweb.SeriesFetcher``): a local folder holding the series, or
    None and the reason why not. The folder is then checked like any manifest folder."""

    def fetch(self, study_uid: str, series_uid: str, modalities: tuple[str, ...]) -> tuple[Path | None, str]: ...


ErrorSink = Callable[[int | None, str | None, str], None]


def _records(reader: Iterator[list[str]], error: ErrorSink) -> Iterator[tuple[int, list[str]]]:
    """(row number, fields) of each record; a record the csv module cannot parse ends the file with a row error."""
    row = 1
    while True:
        row += 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The parser's state after an error is not trustworthy (e.g. inside a quoted field): stop here.
            error(row, None, f"cannot parse the CSV ({exc}); the rest of the file was not checked")
            return
        yield row, values


def read_manifest(path: Path, existing_case_ids: set[str] = frozenset(), pacs: SeriesSource | None = None) -> Manifest:
    """Read and check ``path``; problems are collected in ``Manifest.errors`` (empty means importable).

    Rows naming their series by UID are retrieved through ``pacs`` (none: each such row is refused)."""
    manifest = Manifest(path=path)
    name = path.name

    def error(row: int | None, column: str | None, reason: str) -> None:
        where = f"{name}" + (f" row {row}" if row is not None else "") + (f" column {column}" if column else "")
        manifest.errors.append(f"{where}: {reason}")
        if len(manifest.errors) >= MAX_ERRORS:
            manifest.errors.append(f"{name}: stopped after {MAX_ERRORS} problems; fix these and check again")
            raise _TooManyErrors

    try:
        _read(manifest, path, existing_case_ids, error, pacs)
    except _TooManyErrors:
        manifest.rows.clear()
    return manifest


def _read(  # noqa: C901
    manifest: Manifest, path: Path, existing_case_ids: set[str], error: ErrorSink, pacs: SeriesSource | None
) -> None:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)  # bounded even if the file grows while we read it
    except OSError as exc:
        error(None, None, f"cannot read the file ({exc.strerror or exc})")
        return
    except ValueError as exc:  # e.g. a NUL byte in the path
        error(None, None, f"cannot read the file ({exc})")
        return
    if len(raw) > MAX_BYTES:
        limit = f"{MAX_BYTES} bytes ({MAX_BYTES / 2**20:g} MB)"
        error(None, None, f"larger than the limit of {limit}; split the manifest into smaller files")
        return
    manifest.sha256 = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8-sig")  # a BOM from spreadsheet exports is harmless
    except UnicodeDecodeError as exc:
        error(None, None, f"not UTF-8 text (byte {exc.start}); save the manifest as UTF-8 CSV")
        return
    if not text.strip():
        error(None, None, f"the file is empty; expected a header line {EXPECTED_HEADER}")
        return

    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except csv.Error as exc:
        error(1, None, f"cannot parse the header ({exc}); expected {EXPECTED_HEADER}")
        return
    problem = _header_problem(header)
    if problem is not None:
        hint = " (the file seems to use ';' as separator; use ',')" if len(header) == 1 and ";" in header[0] else ""
        error(1, None, f"wrong header ({problem}){hint}; expected {EXPECTED_HEADER}")
        return

    series = _SeriesCheck(manifest, path.parent.resolve(), error, pacs)
    clinical_check = _ClinicalCheck(error)
    masks = _MaskCheck(path.parent.resolve(), error)
    seen_cases: dict[str, int] = {}
    n_rows = 0
    for line_no, values in _records(reader, error):
        if not any(v.strip() for v in values):
            continue  # blank line
        n_rows += 1
        if n_rows > MAX_ROWS:
            error(line_no, None, f"more than {MAX_ROWS} case rows; split the manifest into smaller files")
            return
        if len(values) != len(header):
            error(line_no, None, f"{len(values)} fields, expected {len(header)}")
            continue
        # Ids keep every character but plain spaces, so that a tab or other oddity is refused, not hidden.
        rec = dict.fromkeys([*OPTIONAL_COLUMNS, *UID_COLUMNS, *CLINICAL_COLUMNS, "series_path"], "")
        rec.update(
            {
                c: (v.strip(" ") if c in ("patient_id", "case_id") else v.strip())
                for c, v in zip(header, values, strict=True)
            }
        )
        # Before any long field is parsed: a 5 MB case_text is refused by its length, not read character by
        # character elsewhere.
        rec[covariates.CASE_TEXT_COLUMN] = covariates.clean_case_text(rec[covariates.CASE_TEXT_COLUMN])
        n_errors = len(manifest.errors)

        for column in ("patient_id", "case_id"):
            problem = id_problem(rec[column])
            if problem is not None:
                error(line_no, column, f"{problem}; expected a pseudonymous id: {ID_RULE}")
        case_id = rec["case_id"]
        if id_problem(case_id) is None:
            if case_id in seen_cases:
                error(line_no, "case_id", f"duplicate case id {case_id!r} (first on row {seen_cases[case_id]})")
            elif case_id in existing_case_ids:
                error(line_no, "case_id", f"case id {case_id!r} already exists in this study")
            else:
                seen_cases[case_id] = line_no

        numbers: dict[str, float] = {}
        for column in ("lesion_x_mm", "lesion_y_mm", "lesion_z_mm", "diameter_mm"):
            if len(rec[column]) > FIELD_MAX:
                error(line_no, column, f"{show(rec[column])} is not a number (longer than {FIELD_MAX} characters)")
                continue
            try:
                value = float(rec[column])
            except ValueError:
                error(line_no, column, f"{show(rec[column])} is not a number")
                continue
            if not math.isfinite(value):
                error(line_no, column, f"{show(rec[column])} is not a finite number")
                continue
            numbers[column] = value
        if "diameter_mm" in numbers and numbers["diameter_mm"] <= 0:
            error(line_no, "diameter_mm", f"{rec['diameter_mm']} mm; expected a diameter > 0 mm")

        if rec["truth"] not in TRUTH_LABELS:
            error(line_no, "truth", f"unknown label {show(rec['truth'])}; expected one of {', '.join(TRUTH_LABELS)}")
        if rec["truth_source"] not in TRUTH_SOURCES:
            error(
                line_no,
                "truth_source",
                f"unknown source {show(rec['truth_source'])}; expected one of {', '.join(TRUTH_SOURCES)}",
            )

        practice = PRACTICE_VALUES.get(rec["practice"].lower())
        if practice is None:
            error(line_no, "practice", f"{show(rec['practice'])} is not one of yes, no, 1, 0 (or empty: no)")

        clinical = clinical_check.row(line_no, rec)

        series_dir = series.primary(line_no, rec)
        series_role = rec["series_role"] or DEFAULT_SERIES_ROLE
        problem = role_problem(series_role)
        if problem is not None:
            error(line_no, "series_role", f"{show(series_role)} {problem}; expected {ROLE_RULE}")
        extra = series.extra(line_no, rec["patient_id"], rec["extra_series"], series_role, series_dir)
        mask = masks.row(line_no, rec[reference_masks.COLUMN], series_dir)

        if len(manifest.errors) > n_errors:
            continue
        assert series_dir is not None  # no new errors on this row: its folder was checked
        lesion = (numbers["lesion_x_mm"], numbers["lesion_y_mm"], numbers["lesion_z_mm"])
        info = manifest.series[series_dir]
        index, distance = info.nearest_slice(lesion)
        tolerance = max(info.slice_spacing_mm / 2, 0.5) + 1e-6
        if distance > tolerance:
            error(
                line_no,
                "lesion_z_mm",
                f"lesion centre lies {distance:.1f} mm outside the series "
                f"({info.positions_mm[0]:.1f} to {info.positions_mm[-1]:.1f} mm along the slice normal)",
            )
            continue
        manifest.slice_index[case_id] = index
        manifest.rows.append(
            ManifestRow(
                row=line_no,
                patient_id=rec["patient_id"],
                case_id=case_id,
                series_dir=series_dir,
                series_role=series_role,
                extra_series=extra,
                lesion_mm=lesion,
                diameter_mm=numbers["diameter_mm"],
                truth=rec["truth"],
                truth_source=rec["truth_source"],
                practice=bool(practice),
                clinical=clinical,
                case_text=rec[covariates.CASE_TEXT_COLUMN],
                reference_mask=mask,
            )
        )
    if not manifest.rows and not manifest.errors:
        error(None, None, "no case rows after the header")


EXPECTED_HEADER = ",".join(REQUIRED_COLUMNS) + f" (optional: {', '.join(OPTIONAL_COLUMNS + UID_COLUMNS)})"


def _header_problem(header: list[str]) -> str | None:
    """What is wrong with the header (every required column once, optional ones at most once, nothing else)."""
    by_uid = all(c in header for c in UID_COLUMNS)  # then series_path may be left out
    missing = [c for c in REQUIRED_COLUMNS if c not in header and not (c == "series_path" and by_uid)]
    unknown = [c for c in header if c not in COLUMNS]
    twice = sorted(c for c, n in Counter(header).items() if n > 1 and c in COLUMNS)
    detail = []
    if missing:
        detail.append("missing " + ", ".join(missing))
    if unknown:
        shown = ", ".join(c if c.isprintable() and len(c) <= 40 else show(c) for c in unknown[:5])
        detail.append("unknown " + shown + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
    if twice:
        detail.append("more than once: " + ", ".join(twice))
    return "; ".join(detail) or None


class _ClinicalCheck:
    """The clinical cells of each row, typed by the covariate registry; patient-level covariates must agree across
    the rows of one patient (two ages for one patient is a manifest error, not a choice the import makes)."""

    def __init__(self, error: ErrorSink) -> None:
        self.error = error
        self.first: dict[tuple[str, str], tuple[int, Any]] = {}  # (patient, covariate) -> (row, value)

    def row(self, row: int, rec: dict[str, str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for covariate in covariates.COVARIATES:
            value, problem = covariate.parse(rec[covariate.name])
            if problem is not None:
                self.error(row, covariate.name, problem)
                continue
            if value is None:
                continue
            values[covariate.name] = value
            if covariate.patient_level and id_problem(rec["patient_id"]) is None:
                first_row, first = self.first.setdefault((rec["patient_id"], covariate.name), (row, value))
                if first != value:
                    self.error(
                        row,
                        covariate.name,
                        f"{show(rec[covariate.name])} differs from {covariate.display(first)!r} on row {first_row} "
                        f"for the same patient {rec['patient_id']!r}; expected one value per patient",
                    )
        problem = covariates.case_text_problem(rec[covariates.CASE_TEXT_COLUMN])
        if problem is not None:
            self.error(row, covariates.CASE_TEXT_COLUMN, problem)
        return values


class _MaskCheck:
    """The ``reference_mask`` cells: a safe path to a bounded file (its voxels are read at ingest, on the series'
    grid), the same file for every row of one primary series, and no file for two series."""

    def __init__(self, root: Path, error: ErrorSink) -> None:
        self.root, self.error = root, error
        self.by_series: dict[Path, tuple[int, str]] = {}  # primary series folder -> (first row, its cell)
        self.owner: dict[Path, Path] = {}  # mask file -> the series it belongs to

    def row(self, row: int, text: str, series_dir: Path | None) -> Path | None:
        column = reference_masks.COLUMN
        if series_dir is not None:
            first_row, first = self.by_series.setdefault(series_dir, (row, text))
            if first != text:
                self.error(
                    row,
                    column,
                    f"{show(text) if text else 'empty'} differs from {show(first) if first else 'empty'} on row "
                    f"{first_row} for the same series; expected one reference mask per series (or none)",
                )
                return None
        if not text:
            return None
        resolved, problem = reference_masks.mask_path(self.root, text)
        if resolved is None:
            self.error(row, column, problem)
            return None
        if series_dir is not None and self.owner.setdefault(resolved, series_dir) != series_dir:
            self.error(row, column, f"{show(text)} is already the reference mask of another series")
            return None
        return resolved


class _SeriesCheck:
    """The series folders of a manifest: each resolved by the same path rules and probed once, each of one patient.

    The primary series (``series_path``) and every further one (``extra_series``) go through :meth:`check`, so the
    rules (no escape from the manifest's folder, no absolute path, one readable series) have one code path.
    """

    def __init__(self, manifest: Manifest, root: Path, error: ErrorSink, pacs: SeriesSource | None = None) -> None:
        self.manifest, self.root, self.error, self.pacs = manifest, root, error, pacs
        self.remote: dict[Path, str] = {}  # staging folder -> "series <uid>": messages name the UID, not the folder
        self.problems: dict[Path, str] = {}  # folders that are not one readable series
        self.patient: dict[Path, str] = {}  # folder -> the patient of the first row naming it

    def primary(self, row: int, rec: dict[str, str]) -> Path | None:
        """The primary series' folder: ``series_path``, or the series named by UID retrieved through ``pacs``."""
        patient, uids = rec["patient_id"], tuple(rec[c] for c in UID_COLUMNS)
        if not any(uids):
            return self.check(row, patient, "series_path", "", rec["series_path"], primary=True)
        if rec["series_path"]:
            self.error(row, "series_path", "give either series_path or study_instance_uid + series_instance_uid")
            return None
        problems = [(c, uid_problem(v)) for c, v in zip(UID_COLUMNS, uids, strict=True)]
        for column, problem in problems:
            if problem is not None:
                self.error(row, column, f"{problem}; expected a DICOM UID: {UID_RULE}")
        if any(p is not None for _, p in problems):
            return None
        if self.pacs is None:
            self.error(row, "series_instance_uid", "no DICOMweb server configured (set DICOMWEB_URL)")
            return None
        folder, problem = self.pacs.fetch(uids[0], uids[1], PRIMARY_MODALITIES)
        if folder is None:
            self.error(row, "series_instance_uid", problem)
            return None
        self.remote[folder] = f"series {uids[1]}"
        return self.check_folder(row, patient, "series_instance_uid", "", folder, primary=True)

    def check(self, row: int, patient: str, column: str, where: str, text: str, *, primary: bool) -> Path | None:
        """The resolved folder of ``text`` if it is a usable series, else None after reporting why on the row."""
        folder, problem = _series_dir(self.root, text)
        if folder is None:
            self.error(row, column, where + problem)
            return None
        return self.check_folder(row, patient, column, where, folder, primary=primary)

    def check_folder(
        self, row: int, patient: str, column: str, where: str, folder: Path, *, primary: bool
    ) -> Path | None:
        """``folder`` if it holds one usable series of ``patient`` (probed once), else None after saying why."""
        if folder not in self.manifest.series and folder not in self.problems:
            try:
                self.manifest.series[folder] = probe_series(folder, SERIES_MODALITIES)
            except SeriesError as exc:
                self.problems[folder] = str(exc)
            except OSError as exc:  # e.g. a folder we may not list
                self.problems[folder] = f"cannot read the series folder {folder} ({exc.strerror or exc})"
            if folder in self.problems and folder in self.remote:  # name the UID, not the staging folder
                text = self.problems[folder].replace(f"series folder {folder}", self.remote[folder])
                self.problems[folder] = text.replace(str(folder), self.remote[folder])
        usable = True
        if folder in self.problems:
            self.error(row, column, where + self.problems[folder])
            usable = False
        elif primary and (modality := self.manifest.series[folder].modality) not in PRIMARY_MODALITIES:
            self.error(
                row,
                column,
                f"{where}{self.remote.get(folder, f'series folder {folder}')} holds modality {[modality]}, "
                f"expected {PRIMARY_MODALITIES[0]} only "
                "(the primary series: the lesion centre and the DL prediction refer to it)",
            )
            usable = False
        owner = self.patient.setdefault(folder, patient)
        if owner != patient:
            self.error(row, column, f"{where}series already belongs to patient {show(owner)}")
            usable = False
        return folder if usable else None

    def extra(
        self, row: int, patient: str, text: str, primary_role: str, primary: Path | None
    ) -> tuple[tuple[str, Path], ...]:
        """The (role, folder) pairs of ``extra_series`` ("role=folder;role=folder"), every problem a row error."""
        column = "extra_series"
        if not text:
            return ()
        if len(text) > EXTRA_SERIES_MAX:
            self.error(row, column, f"{show(text)} is longer than {EXTRA_SERIES_MAX} characters")
            return ()
        entries = text.split(";")
        if len(entries) + 1 > MAX_SERIES_PER_CASE:
            self.error(
                row,
                column,
                f"{len(entries) + 1} series for this case (series_path and {len(entries)} more); "
                f"at most {MAX_SERIES_PER_CASE} per case",
            )
            return ()
        roles = {primary_role: "series_role"}
        folders = {} if primary is None else {primary: primary_role}
        out: list[tuple[str, Path]] = []
        for n, entry in enumerate(entries, start=1):
            role, sep, path_text = (part.strip() for part in entry.partition("="))
            if not sep:
                self.error(row, column, f"entry {n} {show(entry)} is not role=folder (e.g. arterial=P001/arterial)")
                continue
            problem = role_problem(role)
            if problem is not None:
                self.error(row, column, f"entry {n}: role {show(role)} {problem}; expected {ROLE_RULE}")
                continue
            if role in roles:
                self.error(row, column, f"entry {n}: role {role!r} twice in this case (also in {roles[role]})")
                continue
            roles[role] = f"entry {n}"
            folder = self.check(row, patient, column, f"entry {n} ({role}): ", path_text, primary=False)
            if folder is None:
                continue
            if folder in folders:
                self.error(row, column, f"entry {n} ({role}): the same folder as role {folders[folder]!r}")
                continue
            folders[folder] = role
            out.append((role, folder))
        return tuple(out)


def _series_dir(root: Path, series_path: str) -> tuple[Path | None, str]:
    """The series folder of a row, resolved relative to the manifest's folder, or None and the reason why not."""
    expected = f"expected a folder relative to the manifest's folder {root}"
    if not series_path:
        return None, f"empty; {expected}"
    if len(series_path) > SERIES_PATH_MAX:
        return None, f"{show(series_path)} is longer than {SERIES_PATH_MAX} characters; {expected}"
    odd = next((c for c in series_path if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")), None)
    if odd is not None:
        return None, f"{show(series_path)} contains the control character U+{ord(odd):04X}; {expected}"
    if any(len(part.encode("utf-8", "surrogatepass")) > NAME_MAX_BYTES for part in Path(series_path).parts):
        return None, f"{show(series_path)} has a folder name longer than {NAME_MAX_BYTES} bytes; {expected}"
    outside = f"{show(series_path)} must be a relative path inside {root}"
    if Path(series_path).is_absolute():
        return None, outside
    try:
        resolved = (root / series_path).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # too long in total, a symlink loop
        return None, f"{show(series_path)} cannot be resolved ({exc}); {expected}"
    if resolved != root and root not in resolved.parents:
        return None, outside
    return resolved, ""
