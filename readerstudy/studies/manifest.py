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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from imaging.headers import SeriesError, SeriesInfo, probe_series

COLUMNS = [
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
TRUTH_LABELS = ("crlm", "hemangioma")
TRUTH_SOURCES = ("histology", "follow-up", "imaging")
ID_MAX = 64
# Bounds that keep a hostile or broken file a row error, not a traceback or an afternoon of CPU.
MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 10_000
MAX_ERRORS = 500
FIELD_MAX = 64  # numbers and labels
SERIES_PATH_MAX = 1024
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


@dataclass
class Manifest:
    path: Path
    rows: list[ManifestRow] = field(default_factory=list)
    series: dict[Path, SeriesInfo] = field(default_factory=dict)
    slice_index: dict[str, int] = field(default_factory=dict)  # case_id -> nearest slice
    errors: list[str] = field(default_factory=list)
    sha256: str = ""  # of the bytes that were checked (not of whatever the file holds later)


class _TooManyErrors(Exception):
    pass


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


def read_manifest(path: Path, existing_case_ids: set[str] = frozenset()) -> Manifest:
    """Read and check ``path``; problems are collected in ``Manifest.errors`` (empty means importable)."""
    manifest = Manifest(path=path)
    name = path.name

    def error(row: int | None, column: str | None, reason: str) -> None:
        where = f"{name}" + (f" row {row}" if row is not None else "") + (f" column {column}" if column else "")
        manifest.errors.append(f"{where}: {reason}")
        if len(manifest.errors) >= MAX_ERRORS:
            manifest.errors.append(f"{name}: stopped after {MAX_ERRORS} problems; fix these and check again")
            raise _TooManyErrors

    try:
        _read(manifest, path, existing_case_ids, error)
    except _TooManyErrors:
        manifest.rows.clear()
    return manifest


def _read(manifest: Manifest, path: Path, existing_case_ids: set[str], error: ErrorSink) -> None:  # noqa: C901
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
        error(None, None, "the file is empty; expected a header line " + ",".join(COLUMNS))
        return

    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except csv.Error as exc:
        error(1, None, f"cannot parse the header ({exc}); expected {','.join(COLUMNS)}")
        return
    if header != COLUMNS:
        hint = " (the file seems to use ';' as separator; use ',')" if len(header) == 1 and ";" in header[0] else ""
        missing = [c for c in COLUMNS if c not in header]
        unknown = [c for c in header if c not in COLUMNS]
        detail = []
        if missing:
            detail.append("missing " + ", ".join(missing))
        if unknown:
            shown = ", ".join(c if c.isprintable() and len(c) <= 40 else show(c) for c in unknown[:5])
            detail.append("unknown " + shown + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
        if not detail:
            detail.append("columns out of order")
        error(1, None, f"wrong header ({'; '.join(detail)}){hint}; expected {','.join(COLUMNS)}")
        return

    root = path.parent.resolve()
    seen_cases: dict[str, int] = {}
    series_patient: dict[Path, str] = {}
    series_errors: dict[Path, str] = {}
    n_rows = 0
    for line_no, values in _records(reader, error):
        if not any(v.strip() for v in values):
            continue  # blank line
        n_rows += 1
        if n_rows > MAX_ROWS:
            error(line_no, None, f"more than {MAX_ROWS} case rows; split the manifest into smaller files")
            return
        if len(values) != len(COLUMNS):
            error(line_no, None, f"{len(values)} fields, expected {len(COLUMNS)}")
            continue
        # Ids keep every character but plain spaces, so that a tab or other oddity is refused, not hidden.
        rec = {
            c: (v.strip(" ") if c in ("patient_id", "case_id") else v.strip())
            for c, v in zip(COLUMNS, values, strict=True)
        }
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

        series_dir, problem = _series_dir(root, rec["series_path"])
        if series_dir is None:
            error(line_no, "series_path", problem)
        else:
            if series_dir not in manifest.series and series_dir not in series_errors:
                try:
                    manifest.series[series_dir] = probe_series(series_dir)
                except SeriesError as exc:
                    series_errors[series_dir] = str(exc)
                except OSError as exc:  # e.g. a folder we may not list
                    series_errors[series_dir] = f"cannot read the series folder {series_dir} ({exc.strerror or exc})"
            if series_dir in series_errors:
                error(line_no, "series_path", series_errors[series_dir])
            owner = series_patient.setdefault(series_dir, rec["patient_id"])
            if owner != rec["patient_id"]:
                error(line_no, "series_path", f"series already belongs to patient {show(owner)}")

        if len(manifest.errors) > n_errors:
            continue
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
                lesion_mm=lesion,
                diameter_mm=numbers["diameter_mm"],
                truth=rec["truth"],
                truth_source=rec["truth_source"],
            )
        )
    if not manifest.rows and not manifest.errors:
        error(None, None, "no case rows after the header")


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
