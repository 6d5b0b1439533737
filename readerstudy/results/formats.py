"""Writers and readers for the peer MRMC programs' input formats (pure: DataFrames in, str/bytes out).

Every writer takes the analysis-ready long table (at least ``reader, modality, case, truth, rating``) and
every reader returns a DataFrame ``reader, modality, case, truth, rating`` with string ids, int truth and
float ratings, so ``read_x(write_x(df))`` gives the same ``analyse()`` result as ``df``.

- iMRMC ``.imrmc`` (FDA iMRMC, Java and R): free-text description, ``NR:``/``N0:``/``N1:``/``NM:`` lines,
  ``BEGIN DATA:``, then rows ``readerID,caseID,modalityID,score``; truth rows have readerID ``-1``,
  modalityID ``0`` and score 0/1. iMRMC itself reads string ids and treats the four size lines as optional
  (it recounts them from the data); RJafroc's ``DfReadDataFile(format = "iMRMC")`` needs all four and also
  integer reader and case ids, so RJafroc users should take the JAFROC workbook instead.
- RJafroc JAFROC workbook (``.xlsx``): sheets ``Truth`` (CaseID, LesionID, Weight, ReaderID, ModalityID,
  Paradigm), ``FP`` (ReaderID, ModalityID, CaseID, FP_Rating) and ``TP`` (ReaderID, ModalityID, CaseID,
  LesionID, TP_Rating). Readable by ``DfReadDataFile(f)`` (old format: the first three Truth columns) and by
  ``DfReadDataFile(f, newExcelFileFormat = TRUE)`` (all six; Paradigm = "ROC", "crossed").
- MRMCaov CSV: ``reader, treatment, case, truth, rating`` (the VanDyke example's names), plus ``patient``
  when the table has one, for ``mrmc(empirical_auc(truth, rating), treatment, reader, case, data)``.

Bad files raise :class:`FormatError` (a ValueError) naming the line, sheet or row at fault.

Formula injection (a reader or modality id such as ``=HYPERLINK(...)`` run by a spreadsheet), per format:
the MRMCaov CSV is opened in spreadsheets, so its text cells go through :func:`readerstudy.csvsafe.safe_cell`
(a leading ``'``; numbers unchanged). The JAFROC workbook stores every string as a text cell, never a formula
(openpyxl would make ``=...`` one), so ids reach RJafroc verbatim and Excel evaluates nothing. The iMRMC file is
a machine format read by iMRMC/RJafroc, not a spreadsheet: ids are written verbatim (a ``'`` would become part
of the id there); imported case and patient ids cannot start with a formula character anyway.
"""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
from collections.abc import Mapping

import numpy as np
import pandas as pd

from readerstudy.csvsafe import safe_frame

RATING_COLUMNS = ["reader", "modality", "case", "truth", "rating"]
IMRMC_TRUTH_READERS = ("-1", "truth")  # iMRMC marks truth rows with either reader id
JAFROC_MAP_PROPERTY = "readerstudy_ids"  # custom document property holding our case/patient ids


class FormatError(ValueError):
    """A peer-format file that cannot be read; the message names the line, sheet or row."""


# --------------------------------------------------------------------------------------------- shared


def _id(value: object) -> str:
    """An id as text: integral floats (Excel, pandas) lose their '.0' so that 3.0 and '3' are the same id."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _number(value: float) -> str:
    """Shortest text that reads back as the same float (integers without a decimal point)."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _ratings(df: pd.DataFrame, columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Validated copy of the rating columns (plus ``columns`` if present) with string ids."""
    missing = [c for c in RATING_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"missing column(s) {missing}; expected at least {RATING_COLUMNS}")
    if df.empty:
        raise ValueError("the ratings table has no rows")
    out = df[[*RATING_COLUMNS, *(c for c in columns if c in df.columns)]].copy()
    for col in ("reader", "modality", "case", *(c for c in columns if c in df.columns)):
        if out[col].isna().any():
            raise ValueError(f"column {col!r}: empty value in row {int(out[col].isna().to_numpy().argmax())}")
        out[col] = [_id(v) for v in out[col]]
    truth = pd.to_numeric(out["truth"], errors="coerce")
    if not truth.isin([0, 1]).all():
        row = int((~truth.isin([0, 1])).to_numpy().argmax())
        raise ValueError(f"column 'truth': expected 0 or 1, found {out['truth'].iloc[row]!r} in row {row}")
    out["truth"] = truth.astype(int)
    rating = pd.to_numeric(out["rating"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(rating)
    if bad.any():
        row = int(bad.argmax())
        raise ValueError(f"column 'rating': expected a finite number, found {out['rating'].iloc[row]!r} in row {row}")
    out["rating"] = rating
    per_case = out.groupby("case")["truth"].nunique()
    if (per_case > 1).any():
        raise ValueError(f"case {per_case[per_case > 1].index[0]!r} has both truth values; expected one per case")
    dup = out.duplicated(["reader", "modality", "case"])
    if dup.any():
        r = out[dup].iloc[0]
        raise ValueError(f"reader {r['reader']!r} rated case {r['case']!r} in modality {r['modality']!r} twice")
    return out.reset_index(drop=True)


def _check_plain_ids(df: pd.DataFrame, fmt: str, columns: tuple[str, ...] = ("reader", "modality", "case")) -> None:
    """Ids in comma/whitespace-delimited formats must not contain commas or whitespace."""
    for col in columns:
        bad = [v for v in pd.unique(df[col]) if v == "" or re.search(r"[\s,]", v)]
        if bad:
            raise ValueError(
                f"{fmt}: {col} id {bad[0]!r} is empty or contains a comma or whitespace, which {fmt} "
                "cannot store; rename it"
            )


def _id_order(ids: pd.Series) -> pd.Series:
    """Sort key for ids: numeric when every id is a number (so 2 comes before 10), else the text."""
    numeric = pd.to_numeric(ids, errors="coerce")
    return numeric if numeric.notna().all() else ids


def _cases(df: pd.DataFrame) -> pd.DataFrame:
    """One row per case (case, truth[, patient]), negatives first, each class in id order."""
    cols = ["case", "truth", *(["patient"] if "patient" in df.columns else [])]
    cases = df.drop_duplicates("case")[cols]
    cases = cases.assign(_key=_id_order(cases["case"])).sort_values(["truth", "_key"], kind="stable")
    return cases.drop(columns="_key").reset_index(drop=True)


# ------------------------------------------------------------------------------------------------ iMRMC


def _description_lines(description: str) -> list[str]:
    """Free text that neither iMRMC nor RJafroc can mistake for a size or BEGIN line.

    iMRMC parses any header line containing 'N0:' (etc.) as a count and stops at 'BEGIN DATA:', so colons in
    the description become ' -'.
    """
    lines = [line.strip().replace(":", " -") for line in str(description).splitlines()]
    lines = [line for line in lines if line]
    return lines or ["reader study export"]


def write_imrmc(df: pd.DataFrame, description: str = "") -> str:
    """The ratings as iMRMC ``.imrmc`` text: description, NR/N0/N1/NM, ``BEGIN DATA:``, truth rows, ratings."""
    table = _ratings(df)
    _check_plain_ids(table, "iMRMC")
    clash = sorted(set(table["reader"]) & set(IMRMC_TRUTH_READERS))
    if clash:
        raise ValueError(f"iMRMC: reader id {clash[0]!r} is reserved for truth rows; rename the reader")
    cases = _cases(table)
    n1 = int(cases["truth"].sum())
    lines = [
        *_description_lines(description),
        f"NR: {table['reader'].nunique()}",
        f"N0: {len(cases) - n1}",
        f"N1: {n1}",
        f"NM: {table['modality'].nunique()}",
        "BEGIN DATA:",
    ]
    lines += [f"-1,{c},0,{t}" for c, t in zip(cases["case"], cases["truth"], strict=True)]
    position = {c: i for i, c in enumerate(cases["case"])}
    ordered = table.assign(_k=table["case"].map(position)).sort_values(["modality", "reader", "_k"], kind="stable")
    lines += [
        f"{r},{c},{m},{_number(x)}"
        for r, c, m, x in zip(ordered["reader"], ordered["case"], ordered["modality"], ordered["rating"], strict=True)
    ]
    return "\n".join(lines) + "\n"


def read_imrmc(text: str) -> pd.DataFrame:
    """Parse ``.imrmc`` text into ``reader, modality, case, truth, rating`` (line numbers in errors are 1-based)."""
    lines = text.splitlines()
    begin = next((i for i, line in enumerate(lines) if line.strip().upper().startswith("BEGIN DATA")), None)
    if begin is None:
        raise FormatError(
            "iMRMC: no 'BEGIN DATA:' line; expected a study description, a line 'BEGIN DATA:', then rows "
            "'readerID,caseID,modalityID,score'"
        )
    declared: dict[str, tuple[int, int]] = {}  # key -> (value, line number)
    for i, line in enumerate(lines[:begin]):
        m = re.match(r"\s*(N0|N1|NR|NM)\s*:\s*(.*)$", line, re.IGNORECASE)
        if m:
            try:
                declared[m.group(1).upper()] = (int(m.group(2).strip()), i + 1)
            except ValueError:
                value = m.group(2).strip()
                raise FormatError(f"iMRMC line {i + 1}: {m.group(1)} is {value!r}, expected an integer") from None

    truth: dict[str, int] = {}
    records: list[tuple[str, str, str, float]] = []
    seen: dict[tuple[str, str, str], int] = {}
    for i in range(begin + 1, len(lines)):
        line = lines[i].strip().rstrip(",")  # iMRMC drops trailing commas (spreadsheet exports)
        if not line:
            continue
        fields = [re.sub(r"\s", "", f) for f in line.split(",")]  # iMRMC removes all whitespace inside fields
        if len(fields) != 4:
            raise FormatError(
                f"iMRMC line {i + 1}: {lines[i]!r} has {len(fields)} fields; expected readerID,caseID,modalityID,score"
            )
        reader, case, modality, score_text = fields
        try:
            score = float(score_text)
        except ValueError:
            raise FormatError(f"iMRMC line {i + 1}: score {score_text!r} is not a number") from None
        if not math.isfinite(score):
            raise FormatError(f"iMRMC line {i + 1}: score {score_text!r} is not a finite number")
        if reader in IMRMC_TRUTH_READERS:
            if score not in (0.0, 1.0):
                raise FormatError(f"iMRMC line {i + 1}: truth of case {case!r} is {score_text!r}; expected 0 or 1")
            if case in truth:
                raise FormatError(f"iMRMC line {i + 1}: second truth row for case {case!r}")
            truth[case] = int(score)
            continue
        key = (reader, case, modality)
        if key in seen:
            raise FormatError(
                f"iMRMC line {i + 1}: reader {reader!r} case {case!r} modality {modality!r} "
                f"already rated on line {seen[key]}"
            )
        seen[key] = i + 1
        records.append((reader, modality, case, score))
    if not records:
        raise FormatError("iMRMC: no rating rows after 'BEGIN DATA:'")
    for reader, _modality, case, _score in records:
        if case not in truth:
            raise FormatError(
                f"iMRMC line {seen[(reader, case, _modality)]}: case {case!r} has no truth row (readerID -1)"
            )
    df = pd.DataFrame.from_records(records, columns=["reader", "modality", "case", "rating"])
    df["truth"] = df["case"].map(truth).astype(int)
    df = df[RATING_COLUMNS]
    found = {  # iMRMC counts cases from the truth rows
        "NR": df["reader"].nunique(),
        "N0": sum(t == 0 for t in truth.values()),
        "N1": sum(t == 1 for t in truth.values()),
        "NM": df["modality"].nunique(),
    }
    for key, (value, line_no) in declared.items():
        if value != found[key]:
            raise FormatError(f"iMRMC line {line_no}: {key}: {value} but the data have {found[key]}")
    return df


# ----------------------------------------------------------------------------------------------- JAFROC


def jafroc_case_numbers(df: pd.DataFrame) -> dict[str, int]:
    """The integer JAFROC CaseID of each case id: negatives 1..K1, then positives K1+1..K (RJafroc's order)."""
    cases = _cases(_ratings(df))
    return {c: i + 1 for i, c in enumerate(cases["case"])}


def _append_text(ws: object, values: list) -> None:
    """``ws.append(values)``, but a string stays a string: openpyxl makes any ``=...`` string a formula cell."""
    ws.append(values)
    for cell in ws[ws.max_row]:
        if cell.data_type == "f":
            cell.data_type = "s"  # stored as text: ids reach RJafroc verbatim and Excel evaluates nothing


def write_jafroc(df: pd.DataFrame) -> bytes:
    """The ratings as an RJafroc JAFROC ROC workbook (xlsx bytes).

    JAFROC needs integer case ids: see :func:`jafroc_case_numbers`. The map back to our case (and patient)
    ids is stored as a custom document property, which RJafroc ignores (its new-format reader rejects extra
    worksheets) and :func:`read_jafroc` uses.
    """
    from openpyxl import Workbook
    from openpyxl.packaging.custom import StringProperty

    table = _ratings(df, ("patient",))
    # the Truth sheet lists readers and modalities comma/space separated; cases become integers anyway
    _check_plain_ids(table, "JAFROC", ("reader", "modality"))
    cases = _cases(table)
    if cases["truth"].nunique() < 2:
        raise ValueError("JAFROC: the ROC workbook needs both non-diseased and diseased cases")
    number = {c: i + 1 for i, c in enumerate(cases["case"])}
    readers = sorted(table["reader"].unique())
    modalities = sorted(table["modality"].unique())

    wb = Workbook()
    truth_ws = wb.active
    truth_ws.title = "Truth"
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
                ", ".join(readers),
                ", ".join(modalities),
                paradigm[i] if i < len(paradigm) else None,
            ],
        )
    ordered = table.assign(number=table["case"].map(number)).sort_values(["modality", "reader", "number"])
    fp_ws = wb.create_sheet("FP")
    _append_text(fp_ws, ["ReaderID", "ModalityID", "CaseID", "FP_Rating"])
    tp_ws = wb.create_sheet("TP")
    _append_text(tp_ws, ["ReaderID", "ModalityID", "CaseID", "LesionID", "TP_Rating"])
    for r, m, k, t, x in zip(
        ordered["reader"], ordered["modality"], ordered["number"], ordered["truth"], ordered["rating"], strict=True
    ):
        value = int(x) if float(x).is_integer() else float(x)
        if t == 1:
            _append_text(tp_ws, [r, m, int(k), 1, value])
        else:
            _append_text(fp_ws, [r, m, int(k), value])
    ids = {"case": {str(n): c for c, n in number.items()}}
    if "patient" in cases.columns:
        ids["patient"] = {str(number[c]): p for c, p in zip(cases["case"], cases["patient"], strict=True)}
    wb.custom_doc_props.append(StringProperty(name=JAFROC_MAP_PROPERTY, value=json.dumps(ids)))
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def _sheet_rows(ws: object, sheet: str, n_cols: int) -> list[tuple[int, tuple]]:
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


def read_jafroc(data: bytes, case_map: Mapping[int, str] | None = None) -> pd.DataFrame:
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
    for row, (case_v, lesion_v, weight_v, *_rest) in _sheet_rows(wb[truth_name], truth_name, 3):
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

    records = []
    seen: dict[tuple[str, str, int], tuple[str, int]] = {}
    for name, n_cols, diseased in ((fp_name, 4, 0), (tp_name, 5, 1)):
        for row, values in _sheet_rows(wb[name], name, n_cols):
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
    if patients and set(df["number"]) <= set(patients):
        df["patient"] = df["number"].map(patients)
    return df[[*RATING_COLUMNS, *(["patient"] if "patient" in df.columns else [])]]


# ---------------------------------------------------------------------------------------------- MRMCaov

MRMCAOV_COLUMNS = ["reader", "treatment", "case", "truth", "rating"]


def write_mrmcaov_csv(df: pd.DataFrame, include_patient: bool = True) -> str:
    """CSV for MRMCaov: ``reader, treatment, case, truth, rating`` (+ ``patient`` if present and wanted).

    In R: ``d <- read.csv(f, colClasses = c(reader = "character", treatment = "character", case = "character"))``
    then ``mrmc(empirical_auc(truth, rating), treatment, reader, case, data = d)``.
    """
    table = _ratings(df, ("patient",) if include_patient else ())
    position = {c: i for i, c in enumerate(_cases(table)["case"])}
    out = table.rename(columns={"modality": "treatment"}).assign(_k=table["case"].map(position))
    out = out.sort_values(["treatment", "reader", "_k"], kind="stable")
    out["rating"] = [_number(x) for x in out["rating"]]
    cols = [*MRMCAOV_COLUMNS, *(["patient"] if "patient" in out.columns else [])]
    # Statisticians open this in spreadsheets too: ids that would run as formulas get a leading "'".
    return safe_frame(out[cols]).to_csv(index=False, lineterminator="\n")


def read_mrmcaov_csv(text: str) -> pd.DataFrame:
    """Parse MRMCaov CSV into ``reader, modality, case, truth, rating`` (+ ``patient``); rows in errors are
    CSV line numbers (header = line 1)."""
    try:
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise FormatError(f"MRMCaov CSV: cannot parse ({exc})") from exc
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in MRMCAOV_COLUMNS if c not in raw.columns]
    if missing:
        raise FormatError(
            f"MRMCaov CSV: missing column(s) {missing}; expected {MRMCAOV_COLUMNS}, found {list(raw.columns)}"
        )
    if raw.empty:
        raise FormatError("MRMCaov CSV: no data rows")
    out = pd.DataFrame(
        {"reader": raw["reader"].str.strip(), "modality": raw["treatment"].str.strip(), "case": raw["case"].str.strip()}
    )
    for col in ("reader", "modality", "case"):
        empty = out[col] == ""
        if empty.any():
            src = "treatment" if col == "modality" else col
            raise FormatError(f"MRMCaov CSV line {int(empty.to_numpy().argmax()) + 2}: {src} is empty")
    truth = pd.to_numeric(raw["truth"], errors="coerce")
    bad = ~truth.isin([0, 1])
    if bad.any():
        i = int(bad.to_numpy().argmax())
        raise FormatError(f"MRMCaov CSV line {i + 2}: truth {raw['truth'].iloc[i]!r}; expected 0 or 1")
    rating = pd.to_numeric(raw["rating"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(rating)
    if bad.any():
        i = int(bad.argmax())
        raise FormatError(f"MRMCaov CSV line {i + 2}: rating {raw['rating'].iloc[i]!r} is not a finite number")
    out["truth"] = truth.astype(int)
    out["rating"] = rating
    if "patient" in raw.columns:
        out["patient"] = raw["patient"].str.strip()
    return out
