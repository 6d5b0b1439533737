"""Clinical covariates a case manifest may carry: one declarative entry each, so a new covariate is one line here.

Each :class:`Covariate` names its manifest column, its type, unit, bounds or choices and a description; the same
entry parses and checks a manifest cell (:meth:`Covariate.parse`, every problem a message naming what was
expected), formats the stored value for people (:meth:`Covariate.display`) and describes the export column
(``results.dictionary``). Values are stored on the case (``Case.clinical``: column -> value, only the cells that
were filled; an empty cell means "not recorded"), next to an optional free-text ``case_text`` (a short clinical
history) that readers may be shown (``Study.show_clinical``).

Cells are hostile: numbers must be plain finite decimals inside their bounds (no ``nan``, ``inf``, ``1e999`` or
formulas), choices are matched exactly, and ``case_text`` is bounded in length, may hold line breaks and tabs but
no other control characters; it is stored as plain text and shown only as text (autoescaped templates,
``textContent`` in the reading page), never as HTML. Patient-level covariates (age, sex, ...) must agree across the
lesions of one patient (the manifest check says which rows differ). No Django here.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

Kind = Literal["integer", "float", "choice", "yes/no"]
Value = int | float | str | bool

CELL_MAX = 64  # characters of a covariate cell (numbers and codes are short; longer is no value of ours)
CASE_TEXT_COLUMN = "case_text"
CASE_TEXT_MAX = 2000  # characters: a short clinical history, not a report
YES_NO = {"yes": True, "no": False, "1": True, "0": False}
_PLAIN_INTEGER = re.compile(r"-?[0-9]{1,9}")
_PLAIN_DECIMAL = re.compile(r"-?[0-9]{1,12}(\.[0-9]{1,12})?")


@dataclass(frozen=True)
class Covariate:
    name: str  # the manifest column and the key in Case.clinical
    label: str  # for people (reading page, report)
    kind: Kind
    description: str
    unit: str = ""
    minimum: float | None = None  # inclusive bounds of integer and float covariates
    maximum: float | None = None
    choices: tuple[tuple[str, str], ...] = ()  # (code in the manifest, label) of a choice covariate
    patient_level: bool = True  # the same for every lesion of a patient (checked across rows)

    def expected(self) -> str:
        """What a cell must hold, in words (the error messages and the data dictionary say it)."""
        unit = f" {self.unit}" if self.unit else ""
        if self.kind == "integer":
            return f"a whole number from {self.minimum:g} to {self.maximum:g}{unit}, or empty (not recorded)"
        if self.kind == "float":
            return f"a decimal number from {self.minimum:g} to {self.maximum:g}{unit}, or empty (not recorded)"
        if self.kind == "choice":
            codes = ", ".join(f"{code} ({label})" for code, label in self.choices)
            return f"one of {codes}, or empty (not recorded)"
        return "yes or no (also 1 or 0), or empty (not recorded)"

    def parse(self, text: str) -> tuple[Value | None, str | None]:
        """(value, None) for a valid cell, (None, None) for an empty one, (None, why) for anything else."""
        if text == "":
            return None, None
        if len(text) > CELL_MAX:
            return None, f"{_show(text)} is longer than {CELL_MAX} characters; expected {self.expected()}"
        if self.kind == "choice":
            codes = [code for code, _ in self.choices]
            if text not in codes:
                return None, f"{_show(text)} is not one of {', '.join(codes)}; expected {self.expected()}"
            return text, None
        if self.kind == "yes/no":
            if text.lower() not in YES_NO:
                return None, f"{_show(text)} is not yes or no; expected {self.expected()}"
            return YES_NO[text.lower()], None
        return self._number(text)

    def _number(self, text: str) -> tuple[Value | None, str | None]:
        value: int | float
        if self.kind == "integer":
            if not _PLAIN_INTEGER.fullmatch(text):
                return None, f"{_show(text)} is not a whole number; expected {self.expected()}"
            value = int(text)
        else:
            # Plain decimals only: float() would take "nan", "inf", "1e999" and "1_0".
            if not _PLAIN_DECIMAL.fullmatch(text):
                return None, f"{_show(text)} is not a plain decimal number; expected {self.expected()}"
            value = float(text)
        assert self.minimum is not None and self.maximum is not None
        if not self.minimum <= value <= self.maximum:
            return None, f"{text} is outside {self.minimum:g} to {self.maximum:g}; expected {self.expected()}"
        return value, None

    def display(self, value: Value) -> str:
        """The stored value for people: "61 years", "female", "12.5 ng/mL", "yes"."""
        if self.kind == "choice":
            return dict(self.choices).get(str(value), str(value))
        if self.kind == "yes/no":
            return "yes" if value else "no"
        return f"{value:g} {self.unit}".strip() if isinstance(value, float) else f"{value} {self.unit}".strip()

    def dictionary_type(self) -> str:
        """The export column's type for the data dictionary."""
        if self.kind == "choice":
            return f"string (one of {', '.join(code for code, _ in self.choices)}), or empty"
        if self.kind == "yes/no":
            return "integer (0 or 1), or empty"
        return f"{self.kind} from {self.minimum:g} to {self.maximum:g}, or empty"


# The registry. Order is the order of the export columns and of the reading page's list.
COVARIATES: tuple[Covariate, ...] = (
    Covariate("age", "Age", "integer", "Patient's age at the CT examination, in whole years.", "years", 0, 120),
    Covariate(
        "sex",
        "Sex",
        "choice",
        "Patient's sex as recorded in the clinical record.",
        choices=(("F", "female"), ("M", "male"), ("O", "other"), ("U", "unknown")),
    ),
    Covariate(
        "cea_ng_ml",
        "CEA",
        "float",
        "Serum carcinoembryonic antigen (CEA) closest to the CT examination.",
        "ng/mL",
        0,
        100_000,
    ),
    Covariate(
        "prior_colorectal_cancer",
        "Prior colorectal cancer",
        "yes/no",
        "History of colorectal cancer treated before this CT examination (1 = yes, 0 = no).",
    ),
)
BY_NAME: dict[str, Covariate] = {c.name: c for c in COVARIATES}
COLUMNS: tuple[str, ...] = (*BY_NAME, CASE_TEXT_COLUMN)  # every optional clinical manifest column
assert len(BY_NAME) == len(COVARIATES) and CASE_TEXT_COLUMN not in BY_NAME


def case_text_problem(text: str) -> str | None:
    """Why ``text`` cannot be a case text (too long, control characters), or None when it can."""
    expected = f"expected plain text of at most {CASE_TEXT_MAX} characters (line breaks and tabs allowed)"
    if len(text) > CASE_TEXT_MAX:
        return f"{len(text)} characters; {expected}"
    odd = next(
        (c for c in text if c not in "\n\t" and unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp")), None
    )
    if odd is not None:
        return f"contains the control character U+{ord(odd):04X}; {expected}"
    return None


def clean_case_text(text: str) -> str:
    """Line breaks as ``\\n`` (a spreadsheet may save ``\\r\\n``), surrounding blanks removed."""
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def display_rows(clinical: dict[str, Value]) -> list[dict[str, str]]:
    """The recorded covariates of a case in registry order, for people: ``[{name, label, value}]``.

    Keys that the registry no longer knows are left out (a stored case outlives a removed entry)."""
    return [
        {"name": c.name, "label": c.label, "value": c.display(clinical[c.name])}
        for c in COVARIATES
        if clinical.get(c.name) is not None
    ]


def _show(value: str, limit: int = 40) -> str:
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} characters)"
