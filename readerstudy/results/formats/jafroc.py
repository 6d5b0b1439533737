"""RJafroc's JAFROC workbook (.xlsx): write and read."""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
from collections.abc import Mapping

import pandas as pd

from readerstudy.results.formats.common import (
    JAFROC_MAP_PROPERTY,
    RATING_COLUMNS,
    FormatError,
    _cases,
    _check_plain_ids,
    _id,
    _ratings,
)


def jafroc_case_numbers(df: pd.DataFrame) -> dict[str, int]:
    """The integer JAFROC CaseID of each case id: negatives 1..K1, then positives K1+1..K (RJafroc's order)."""
    cases = _cases(_ratings(df))
    return {c: i + 1 for i, c in enumerate(cases["case"])}


def _append_text(ws: object, values: list) -> None:
    """``ws.append(values)`` on a write-only sheet, but a string stays a string: openpyxl makes any ``=...`` string a
    formula cell, so each string goes in as a cell whose type is set back to text."""
    ws.append([_text_cell(ws, v) if isinstance(v, str) else v for v in values])


def _text_cell(ws: object, value: str) -> object:
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(ws, value=value)
    if cell.data_type == "f":
        cell.data_type = "s"  # stored as text: ids reach RJafroc verbatim and Excel evaluates nothing
    return cell


def write_jafroc(df: pd.DataFrame) -> bytes:
    """The ratings as an RJafroc JAFROC ROC workbook (xlsx bytes).

    JAFROC needs integer case ids (see :func:`jafroc_case_numbers`), and RJafroc's default reader
    (``DfReadDataFile(f)``, the old format) also integer reader ids: it sorts ``as.integer(ReaderID)``, so a
    reader name becomes NA and the file fails. Readers are numbered 1..J in id order. The map back to our reader,
    case and patient ids is stored as a custom document property, which RJafroc ignores (its new-format reader
    rejects extra worksheets) and :func:`read_jafroc` uses. Modality ids stay text (both RJafroc readers keep
    them as character).
    """
    from openpyxl import Workbook
    from openpyxl.packaging.custom import StringProperty

    table = _ratings(df, ("patient",))
    # the Truth sheet lists modalities comma/space separated; readers and cases become integers anyway
    _check_plain_ids(table, "JAFROC", ("modality",))
    cases = _cases(table)
    if cases["truth"].nunique() < 2:
        raise ValueError("JAFROC: the ROC workbook needs both non-diseased and diseased cases")
    number = {c: i + 1 for i, c in enumerate(cases["case"])}
    readers = sorted(table["reader"].unique(), key=_reader_key)
    reader_number = {r: j + 1 for j, r in enumerate(readers)}
    modalities = sorted(table["modality"].unique())

    # Write-only (rows stream to the file): a normal workbook keeps a cell object per value. The ratings themselves
    # are added by _with_rows, after openpyxl has written the package.
    wb = Workbook(write_only=True)
    truth_ws = wb.create_sheet("Truth")
    _append_text(truth_ws, ["CaseID", "LesionID", "Weight", "ReaderID", "ModalityID", "Paradigm"])
    paradigm = ["ROC", "crossed"]
    for i, (case, t) in enumerate(zip(cases["case"], cases["truth"], strict=True)):
        # ROC: non-diseased cases have LesionID 0 and weight 0; each diseased case one lesion, LesionID 1, weight 1
        _append_text(
            truth_ws,
            [
                number[case],
                int(t),
                int(t),
                ", ".join(str(n) for n in reader_number.values()),
                ", ".join(modalities),
                paradigm[i] if i < len(paradigm) else None,
            ],
        )
    ordered = table.assign(number=table["case"].map(number), reader_no=table["reader"].map(reader_number))
    ordered = ordered.sort_values(["modality", "reader_no", "number"])
    fp_ws = wb.create_sheet("FP")
    _append_text(fp_ws, ["ReaderID", "ModalityID", "CaseID", "FP_Rating"])
    tp_ws = wb.create_sheet("TP")
    _append_text(tp_ws, ["ReaderID", "ModalityID", "CaseID", "LesionID", "TP_Rating"])
    fp_rows: list[list] = []
    tp_rows: list[list] = []
    columns = [ordered[c].tolist() for c in ("reader_no", "modality", "number", "truth", "rating")]
    for r, m, k, t, x in zip(*columns, strict=True):  # lists: iterating pandas columns is far slower
        value = int(x) if float(x).is_integer() else float(x)
        if t == 1:
            tp_rows.append([int(r), m, int(k), 1, value])
        else:
            fp_rows.append([int(r), m, int(k), value])
    ids = {"case": {str(n): c for c, n in number.items()}, "reader": {str(n): r for r, n in reader_number.items()}}
    if "patient" in cases.columns:
        ids["patient"] = {str(number[c]): p for c, p in zip(cases["case"], cases["patient"], strict=True)}
    wb.custom_doc_props.append(StringProperty(name=JAFROC_MAP_PROPERTY, value=json.dumps(ids)))
    buffer = io.BytesIO()
    wb.save(buffer)
    return _with_rows(buffer.getvalue(), {"FP": fp_rows, "TP": tp_rows})


def _with_rows(xlsx: bytes, rows: dict[str, list[list]]) -> bytes:
    """The workbook ``xlsx`` with ``rows[name]`` added below the header row of each sheet ``name``, written as
    openpyxl's write-only sheets write rows (:func:`_rows_xml`; tests compare the two).

    openpyxl builds a cell object per value and serialises it in pure Python: about 75 us per rating, 15-20 s of CPU
    for 200 000 reads (``python -m bench.scale``). Here a rating row is one string."""
    with zipfile.ZipFile(io.BytesIO(xlsx)) as src:
        parts = _sheet_parts(src)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                data = src.read(info)
                name = parts.get(info.filename)
                if name in rows:
                    head, end, tail = data.rpartition(b"</sheetData>")
                    if not end:
                        raise ValueError(f"JAFROC: sheet {name!r} has no sheetData")
                    data = head + _rows_xml(rows[name], first=2).encode() + end + tail
                dst.writestr(info, data)
    return out.getvalue()


def _sheet_parts(z: zipfile.ZipFile) -> dict[str, str]:
    """Sheet name of each worksheet's zip member, from the workbook and its relationships."""
    from xml.etree import ElementTree

    main = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
    rid = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
    targets = {r.get("Id"): r.get("Target", "") for r in ElementTree.fromstring(z.read("xl/_rels/workbook.xml.rels"))}
    parts = {}
    for sheet in ElementTree.fromstring(z.read("xl/workbook.xml")).iter(f"{main}sheet"):
        target = targets[sheet.get(rid)]
        parts[target[1:] if target.startswith("/") else f"xl/{target}"] = sheet.get("name", "")
    return parts


def _rows_xml(rows: list[list], first: int) -> str:
    """``<row>`` elements for ``rows`` (row numbers from ``first``) as openpyxl's write-only sheets write them:
    numbers as ``%.16g``, strings as inline text (never a formula: ids reach RJafroc verbatim), None as no cell."""
    from xml.sax.saxutils import escape

    from openpyxl.cell import WriteOnlyCell
    from openpyxl.utils import get_column_letter

    letters = [get_column_letter(c) for c in range(1, max(map(len, rows), default=0) + 1)]
    text: dict[str, str] = {}  # each distinct string checked and escaped once

    def inline(value: str) -> str:
        if value not in text:
            WriteOnlyCell(value=value)  # openpyxl's own check: raises on characters XML cannot hold
            space = ' xml:space="preserve"' if value.strip() and value != value.strip() else ""
            text[value] = f"<is><t{space}>{escape(value)}</t></is>"
        return text[value]

    out = []
    for n, values in enumerate(rows, start=first):
        cells = []
        for letter, value in zip(letters, values, strict=False):
            if value is None:
                continue
            if isinstance(value, str):
                cells.append(f'<c r="{letter}{n}" t="inlineStr">{inline(value)}</c>')
            elif math.isfinite(value):
                cells.append(f'<c r="{letter}{n}" t="n"><v>{value:.16g}</v></c>')
            else:
                raise ValueError(f"JAFROC: {value!r} is not a finite number")
        out.append(f'<row r="{n}">{"".join(cells)}</row>')
    return "".join(out)


def _reader_key(reader: str) -> tuple:
    """Reader ids in natural order (reader2 before reader10), so ReaderID 1..J follows the names."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", reader))


def _sheet_rows(ws: object, n_cols: int) -> list[tuple[int, tuple]]:
    """(Excel row number, first n_cols values) of each non-empty data row below the header."""
    rows = []
    for row_no, row in enumerate(ws.iter_rows(min_row=2, max_col=n_cols, values_only=True), start=2):
        values = tuple(row) + (None,) * (n_cols - len(row))
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
            continue
        rows.append((row_no, values))
    return rows


def _cell_int(value: object, sheet: str, row: int, column: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FormatError(f"JAFROC sheet {sheet!r} row {row}: {column} {value!r} is not an integer") from None
    if not number.is_integer():
        raise FormatError(f"JAFROC sheet {sheet!r} row {row}: {column} {value!r} is not an integer")
    return int(number)


def _cell_rating(value: object, sheet: str, row: int, column: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FormatError(f"JAFROC sheet {sheet!r} row {row}: {column} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise FormatError(f"JAFROC sheet {sheet!r} row {row}: {column} {value!r} is not a finite number")
    return number


def _cell_id(value: object, sheet: str, row: int, column: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise FormatError(f"JAFROC sheet {sheet!r} row {row}: {column} is empty")
    return _id(value)


def read_jafroc(data: bytes, case_map: Mapping[int, str] | None = None) -> pd.DataFrame:  # noqa: C901
    """Parse a JAFROC ROC workbook into ``reader, modality, case, truth, rating`` (+ ``patient`` if stored).

    Case ids come from ``case_map`` (JAFROC CaseID -> id) if given, else from the map :func:`write_jafroc`
    stores in the workbook, else they are the JAFROC CaseIDs as text. Sheets are found by name, ignoring
    case, as RJafroc does: Truth, FP (or NL), TP (or LL). Row numbers in errors are Excel's (header = 1).
    """
    from openpyxl import load_workbook

    try:
        wb = load_workbook(io.BytesIO(data), read_only=False, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise FormatError(f"JAFROC: not a readable .xlsx workbook ({exc})") from exc
    by_name = {name.upper(): name for name in wb.sheetnames}

    def sheet(*names: str) -> str:
        for n in names:
            if n in by_name:
                return by_name[n]
        wanted = " or ".join(repr("Truth" if n == "TRUTH" else n) for n in names)
        raise FormatError(
            f"JAFROC: no {wanted} sheet (names ignore case); the workbook has "
            f"{wb.sheetnames} (expected Truth, FP and TP)"
        )

    truth_name, fp_name, tp_name = sheet("TRUTH"), sheet("FP", "NL"), sheet("TP", "LL")
    truth: dict[int, int] = {}
    for row, (case_v, lesion_v, weight_v, *_rest) in _sheet_rows(wb[truth_name], 3):
        case = _cell_int(case_v, truth_name, row, "CaseID")
        lesion = _cell_int(lesion_v, truth_name, row, "LesionID")
        _cell_rating(weight_v, truth_name, row, "Weight")
        if lesion not in (0, 1):
            raise FormatError(
                f"JAFROC sheet {truth_name!r} row {row}: LesionID {lesion}; only ROC data are "
                "supported (LesionID 0 = non-diseased case, 1 = its one lesion)"
            )
        if case in truth:
            raise FormatError(
                f"JAFROC sheet {truth_name!r} row {row}: CaseID {case} listed twice (FROC data with "
                "several lesions per case are not supported)"
            )
        truth[case] = lesion
    if not truth:
        raise FormatError(f"JAFROC sheet {truth_name!r}: no cases")

    stored: dict = {}
    if JAFROC_MAP_PROPERTY in wb.custom_doc_props.names:
        try:
            stored = json.loads(wb.custom_doc_props[JAFROC_MAP_PROPERTY].value)
        except (TypeError, ValueError):
            stored = {}
    if case_map is not None:
        names = {int(k): str(v) for k, v in case_map.items()}
    else:
        names = {int(k): str(v) for k, v in stored.get("case", {}).items()}
    patients = {int(k): str(v) for k, v in stored.get("patient", {}).items()} if case_map is None else {}
    reader_names = {str(k): str(v) for k, v in stored.get("reader", {}).items()}

    records = []
    seen: dict[tuple[str, str, int], tuple[str, int]] = {}
    for name, n_cols, diseased in ((fp_name, 4, 0), (tp_name, 5, 1)):
        for row, values in _sheet_rows(wb[name], n_cols):
            reader = _cell_id(values[0], name, row, "ReaderID")
            modality = _cell_id(values[1], name, row, "ModalityID")
            case = _cell_int(values[2], name, row, "CaseID")
            if case not in truth:
                raise FormatError(f"JAFROC sheet {name!r} row {row}: CaseID {case} is not in the {truth_name!r} sheet")
            if truth[case] != diseased:
                kind = "diseased" if truth[case] else "non-diseased"
                raise FormatError(
                    f"JAFROC sheet {name!r} row {row}: CaseID {case} is {kind} in the Truth sheet; "
                    f"its rating belongs in the {'TP' if truth[case] else 'FP'} sheet"
                )
            if diseased:
                lesion = _cell_int(values[3], name, row, "LesionID")
                if lesion != 1:
                    raise FormatError(f"JAFROC sheet {name!r} row {row}: LesionID {lesion}; expected 1 (ROC data)")
            rating = _cell_rating(values[n_cols - 1], name, row, "rating")
            key = (reader, modality, case)
            if key in seen:
                raise FormatError(
                    f"JAFROC sheet {name!r} row {row}: reader {reader!r} modality {modality!r} "
                    f"CaseID {case} already rated in sheet {seen[key][0]!r} row {seen[key][1]}"
                )
            seen[key] = (name, row)
            records.append((reader, modality, case, diseased, rating))
    if not records:
        raise FormatError(f"JAFROC: no ratings in sheets {fp_name!r} and {tp_name!r}")
    df = pd.DataFrame.from_records(records, columns=["reader", "modality", "number", "truth", "rating"])
    df["case"] = [names.get(k, str(k)) for k in df["number"]]
    df["reader"] = [reader_names.get(r, r) for r in df["reader"]]
    if patients and set(df["number"]) <= set(patients):
        df["patient"] = df["number"].map(patients)
    return df[[*RATING_COLUMNS, *(["patient"] if "patient" in df.columns else [])]]
