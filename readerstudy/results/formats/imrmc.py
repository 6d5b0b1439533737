"""iMRMC input files (FDA iMRMC, Java and R): write and read."""

from __future__ import annotations

import math
import re

import pandas as pd

from readerstudy.results.formats.common import (
    IMRMC_TRUTH_READERS,
    RATING_COLUMNS,
    FormatError,
    _cases,
    _check_plain_ids,
    _number,
    _ratings,
)


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
    columns = [ordered[c].tolist() for c in ("reader", "case", "modality", "rating")]  # lists: iterating is faster
    lines += [f"{r},{c},{m},{_number(x)}" for r, c, m, x in zip(*columns, strict=True)]
    return "\n".join(lines) + "\n"


def read_imrmc(text: str) -> pd.DataFrame:  # noqa: C901
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
