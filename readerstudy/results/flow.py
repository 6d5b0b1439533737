"""The flow of cases from import to analysis (CLAIM, STARD: a diagram of inclusions and exclusions), per stratum.

``case_flow`` counts, at run time, every imported case, the practice cases (read in the practice session only),
the study cases nobody read (only while a study is incomplete), the cases left out because a read of them was not
assessable (complete-case analysis, ``runs.complete_cases``) and the cases analysed, each by size stratum and
truth; the run stores it. ``flow_svg`` draws the stored counts as an inline SVG (boxes down the left, exclusions
to the right), text as text.
"""

from __future__ import annotations

from html import escape

import pandas as pd

from readerstudy.analysis.strata import size_stratum, stratum_labels
from readerstudy.results.labels import stratum_display

BOLD = ' font-weight="bold"'
STEPS = ("imported", "practice", "not_read", "not_assessable", "analysed")
TITLES = {
    "imported": "Imported",
    "practice": "Excluded: practice cases",
    "not_read": "Excluded: not read (study incomplete)",
    "not_assessable": "Excluded: a not-assessable read",
    "analysed": "Analysed",
    "study": "Study cases",
}


def _counts(cases: pd.DataFrame, labels: list[str]) -> dict:
    return {
        "total": len(cases),
        "positive": int((cases["truth"] == 1).sum()),
        "negative": int((cases["truth"] == 0).sum()),
        "by_stratum": {label: int((cases["stratum"] == label).sum()) for label in labels},
    }


def case_flow(imported: pd.DataFrame, reads: pd.DataFrame, not_assessable: list[str], bins: list[float]) -> dict:
    """Counts of cases at each step, overall and per stratum of ``bins``.

    ``imported``: one row per imported case (``case, practice, diameter_mm, truth``); ``reads``: the reads table
    (practice reads already left out, not-assessable reads still in); ``not_assessable``: the case ids that
    complete-case analysis left out.
    """
    labels = stratum_labels(bins)
    cases = imported.assign(
        case=imported["case"].astype(str),
        stratum=[size_stratum(d, bins) for d in imported["diameter_mm"]],
        truth=imported["truth"].astype(int),
    )
    practice = cases["practice"].astype(bool)
    read = cases["case"].isin(set(reads["case"].astype(str)))
    left_out = cases["case"].isin(set(not_assessable))
    groups = {
        "imported": cases,
        "practice": cases[practice],
        "not_read": cases[~practice & ~read],
        "not_assessable": cases[~practice & read & left_out],
        "analysed": cases[~practice & read & ~left_out],
    }
    return {"strata": labels, **{step: _counts(groups[step], labels) for step in STEPS}}


def _line(counts: dict, strata: list[str]) -> str:
    parts = [f"{stratum_display(s)}: {counts['by_stratum'].get(s, 0)}" for s in strata]
    return " · ".join(parts)


def flow_svg(flow: dict) -> str:
    """The stored flow as SVG markup (every text escaped; safe to mark safe in a template).

    Down the left: imported, study cases (practice cases excluded), analysed; to the right, between them, each
    exclusion with its count (the "not read" box only when some study case has no read).
    """
    strata = flow["strata"]
    imported, practice = flow["imported"], flow["practice"]
    study = {
        "total": imported["total"] - practice["total"],
        "positive": imported["positive"] - practice["positive"],
        "negative": imported["negative"] - practice["negative"],
        "by_stratum": {s: imported["by_stratum"].get(s, 0) - practice["by_stratum"].get(s, 0) for s in strata},
    }
    late = [step for step in ("not_read", "not_assessable") if step != "not_read" or flow[step]["total"]]
    layout = [("imported", imported, ["practice"]), ("study", study, late), ("analysed", flow["analysed"], [])]
    width, main_w, side_x, side_w, box_h, gap = 700, 300, 380, 310, 62, 14
    x_mid = 10 + main_w // 2
    parts: list[str] = []

    def box(x: int, y: int, w: int, step: str, counts: dict) -> None:
        lines = [
            f"{TITLES[step]}: {counts['total']} case{'' if counts['total'] == 1 else 's'}",
            f"{counts['positive']} positive, {counts['negative']} negative",
            _line(counts, strata),
        ]
        parts.append(
            f'<g data-testid="flow-{step}" data-total="{counts["total"]}">'
            f'<rect x="{x}" y="{y}" width="{w}" height="{box_h}" fill="#fff" stroke="#333"/>'
            + "".join(
                f'<text x="{x + 6}" y="{y + 17 + 18 * i}"{BOLD if i == 0 else ""}>{escape(line)}</text>'
                for i, line in enumerate(lines)
            )
            + "</g>"
        )

    def arrow(x1: int, y1: int, x2: int, y2: int) -> None:
        parts.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#333" marker-end="url(#flow-arrow)"/>')

    y = 10
    for i, (step, counts, exclusions) in enumerate(layout):
        box(10, y, main_w, step, counts)
        y += box_h
        if i == len(layout) - 1:
            break
        top = y
        for excluded in exclusions:
            y += gap
            box(side_x, y, side_w, excluded, flow[excluded])
            arrow(x_mid, y + box_h // 2, side_x, y + box_h // 2)
            y += box_h
        y += 2 * gap
        arrow(x_mid, top, x_mid, y)
    height = y + 10
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="flow" data-testid="flow-diagram" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="system-ui, sans-serif" font-size="11" '
        'role="img" aria-label="Flow of cases from import to analysis">'
        '<defs><marker id="flow-arrow" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
        '<path d="M0,0 L8,4 L0,8 z" fill="#333"/></marker></defs>'
    )
    return head + "".join(parts) + "</svg>"
