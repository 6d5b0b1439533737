"""Parse and check a case manifest; every problem is reported with its row number, column and reason.

Nothing here writes to the database: ``import_cases`` applies the checked rows in one transaction or not at all.
"""

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from readerstudy.studies.series import SeriesError, SeriesInfo, probe_series

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


def read_manifest(path: Path, existing_case_ids: set[str] = frozenset()) -> Manifest:
    """Read and check ``path``; problems are collected in ``Manifest.errors`` (empty means importable)."""
    manifest = Manifest(path=path)
    name = path.name

    def error(row: int | None, column: str | None, reason: str) -> None:
        where = f"{name}" + (f" row {row}" if row is not None else "") + (f" column {column}" if column else "")
        manifest.errors.append(f"{where}: {reason}")

    try:
        raw = path.read_bytes()
    except OSError as exc:
        error(None, None, f"cannot read the file ({exc.strerror})")
        return manifest
    try:
        text = raw.decode("utf-8-sig")  # a BOM from spreadsheet exports is harmless
    except UnicodeDecodeError as exc:
        error(None, None, f"not UTF-8 text (byte {exc.start}); save the manifest as UTF-8 CSV")
        return manifest
    if not text.strip():
        error(None, None, "the file is empty; expected a header line " + ",".join(COLUMNS))
        return manifest

    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(reader)]
    if header != COLUMNS:
        hint = " (the file seems to use ';' as separator; use ',')" if len(header) == 1 and ";" in header[0] else ""
        missing = [c for c in COLUMNS if c not in header]
        unknown = [c for c in header if c not in COLUMNS]
        detail = []
        if missing:
            detail.append("missing " + ", ".join(missing))
        if unknown:
            detail.append("unknown " + ", ".join(unknown))
        if not detail:
            detail.append("columns out of order")
        error(1, None, f"wrong header ({'; '.join(detail)}){hint}; expected {','.join(COLUMNS)}")
        return manifest

    root = path.parent.resolve()
    seen_cases: dict[str, int] = {}
    series_patient: dict[Path, str] = {}
    series_errors: dict[Path, str] = {}
    for line_no, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values):
            continue  # blank line
        if len(values) != len(COLUMNS):
            error(line_no, None, f"{len(values)} fields, expected {len(COLUMNS)}")
            continue
        rec = dict(zip(COLUMNS, (v.strip() for v in values), strict=True))
        n_errors = len(manifest.errors)

        for column in ("patient_id", "case_id"):
            if not rec[column]:
                error(line_no, column, "empty; expected a pseudonymous id")
            elif len(rec[column]) > ID_MAX:
                error(line_no, column, f"longer than {ID_MAX} characters")
        case_id = rec["case_id"]
        if case_id in seen_cases:
            error(line_no, "case_id", f"duplicate case id {case_id!r} (first on row {seen_cases[case_id]})")
        elif case_id in existing_case_ids:
            error(line_no, "case_id", f"case id {case_id!r} already exists in this study")
        elif case_id:
            seen_cases[case_id] = line_no

        numbers: dict[str, float] = {}
        for column in ("lesion_x_mm", "lesion_y_mm", "lesion_z_mm", "diameter_mm"):
            try:
                value = float(rec[column])
            except ValueError:
                error(line_no, column, f"{rec[column]!r} is not a number")
                continue
            if not math.isfinite(value):
                error(line_no, column, f"{rec[column]!r} is not a finite number")
                continue
            numbers[column] = value
        if "diameter_mm" in numbers and numbers["diameter_mm"] <= 0:
            error(line_no, "diameter_mm", f"{rec['diameter_mm']} mm; expected a diameter > 0 mm")

        if rec["truth"] not in TRUTH_LABELS:
            error(line_no, "truth", f"unknown label {rec['truth']!r}; expected one of {', '.join(TRUTH_LABELS)}")
        if rec["truth_source"] not in TRUTH_SOURCES:
            error(
                line_no,
                "truth_source",
                f"unknown source {rec['truth_source']!r}; expected one of {', '.join(TRUTH_SOURCES)}",
            )

        series_dir = _series_dir(root, rec["series_path"])
        if series_dir is None:
            error(line_no, "series_path", f"{rec['series_path']!r} must be a relative path inside {root}")
        else:
            if series_dir not in manifest.series and series_dir not in series_errors:
                try:
                    manifest.series[series_dir] = probe_series(series_dir)
                except SeriesError as exc:
                    series_errors[series_dir] = str(exc)
            if series_dir in series_errors:
                error(line_no, "series_path", series_errors[series_dir])
            owner = series_patient.setdefault(series_dir, rec["patient_id"])
            if owner != rec["patient_id"]:
                error(line_no, "series_path", f"series already belongs to patient {owner!r}")

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
    return manifest


def _series_dir(root: Path, series_path: str) -> Path | None:
    """Resolve a series path relative to the manifest's folder; None when it is absolute or escapes it."""
    if not series_path or Path(series_path).is_absolute():
        return None
    resolved = (root / series_path).resolve()
    if resolved != root and root not in resolved.parents:
        return None
    return resolved
