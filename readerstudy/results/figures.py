"""Publication figures: empirical ROC curves and a forest plot of the AUC difference by lesion-size stratum.

Figures are built as ``matplotlib.figure.Figure`` objects without pyplot (rendered by the Agg canvas for PNG),
so nothing is registered globally and nothing needs closing; style settings apply only inside this module's
``rc_context`` blocks (rcParams are process-global while a block runs: render from one thread at a time).
``render(fig, "png" | "svg")`` returns the bytes. Sizes follow journal columns (3.5 in single, 7.2 in double).
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from readerstudy.analysis.auc import empirical_auc
from readerstudy.results.labels import stratum_display, stratum_key

SINGLE_COLUMN_IN = 3.5
DOUBLE_COLUMN_IN = 7.2
STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.labelsize": 8,
    "axes.titlesize": 9,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "legend.frameon": False,
    "svg.fonttype": "none",  # keep text as text in SVG (editable, searchable)
    "svg.hashsalt": "readerstudy",  # stable element ids: the same figure gives the same SVG
    "pdf.fonttype": 42,
}
# One colour per reader: the colour-blind-safe Okabe-Ito palette without its black (black draws the reader-averaged
# curves), yellow last (faint on white). Past 7 readers the colours repeat with a marker per round.
COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442"]
MARKERS = ["", "o", "s", "^", "D", "v"]
# One line style per modality, in display order.
LINE_STYLES = ["-", "--", ":", "-."]
MAX_READERS_IN_PANEL_LEGEND = 8
FPF_LABEL = "1 − specificity (false-positive fraction)"
TPF_LABEL = "sensitivity (true-positive fraction)"


def render(fig: Figure, fmt: str = "png", dpi: int = 200) -> bytes:
    """The figure as PNG (at ``dpi``) or SVG bytes; metadata without dates so output is reproducible."""
    fmt = fmt.lower()
    if fmt not in ("png", "svg"):
        raise ValueError(f"figure format {fmt!r}: expected 'png' or 'svg'")
    metadata = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}
    buffer = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buffer, format=fmt, dpi=dpi, bbox_inches="tight", pad_inches=0.03, metadata=metadata)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------ ROC


def roc_points(truth: np.ndarray, rating: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical ROC vertices (FPF, TPF) from (0, 0) to (1, 1), one per distinct rating threshold.

    Joining them with straight lines (a tie between positives and negatives gives a diagonal segment) makes
    the trapezoidal area equal to the Mann-Whitney AUC with ties counted 1/2.
    """
    truth = np.asarray(truth).astype(bool)
    rating = np.asarray(rating, dtype=float)
    thresholds = np.unique(rating)[::-1]  # highest first: "positive if rating >= threshold"
    pos, neg = rating[truth], rating[~truth]
    tpf = np.array([0.0, *((pos[:, None] >= thresholds).mean(axis=0))])
    fpf = np.array([0.0, *((neg[:, None] >= thresholds).mean(axis=0))])
    return fpf, tpf


def trapezoid_area(fpf: np.ndarray, tpf: np.ndarray) -> float:
    """Area under a polyline of ROC vertices ordered by FPF."""
    return float(np.sum(np.diff(fpf) * (tpf[1:] + tpf[:-1]) / 2))


def vertical_average(curves: Sequence[tuple[np.ndarray, np.ndarray]], n_negative: int) -> tuple[np.ndarray, np.ndarray]:
    """Readers' ROC curves averaged vertically (mean TPF at fixed FPF).

    Every empirical curve on the same ``n_negative`` negative cases has its vertices at FPF = k / n_negative,
    so the curves are evaluated exactly there (just below and just above each vertical jump) and are linear in
    between: the average is exact, not interpolated, and its area equals the mean of the readers' AUCs.
    """
    grid = np.arange(n_negative + 1) / n_negative
    lower, upper = [], []
    for fpf, tpf in curves:
        # TPF reaching each grid FPF from the left (lowest vertex there) and leaving it (highest vertex there)
        lo = np.interp(grid, fpf, tpf, left=0.0, right=1.0)  # np.interp takes the last of tied xp: fixed below
        hi = lo.copy()
        k = np.rint(fpf * n_negative).astype(int)
        for j in np.unique(k):
            at = k == j
            lo[j], hi[j] = tpf[at].min(), tpf[at].max()
        lower.append(lo)
        upper.append(hi)
    lo_mean, hi_mean = np.mean(lower, axis=0), np.mean(upper, axis=0)
    fpf_avg = np.repeat(grid, 2)
    tpf_avg = np.column_stack([lo_mean, hi_mean]).ravel()
    return fpf_avg, tpf_avg


def _display(modality: str) -> str:
    text = str(modality)
    return f"Modality {text}" if text.isdigit() else text.replace("_", " ").capitalize()


def _reader_label(reader: str) -> str:
    return f"Reader {reader}" if str(reader).isdigit() else str(reader)


def reader_style(index: int) -> dict:
    """Colour (and, past the palette's length, a marker) of the reader at ``index`` in sorted order."""
    marker = MARKERS[(index // len(COLOURS)) % len(MARKERS)]
    style: dict = {"color": COLOURS[index % len(COLOURS)]}
    if marker:
        style.update(marker=marker, markersize=3, markevery=0.1)
    return style


def roc_curves(  # noqa: C901
    df: pd.DataFrame,
    modality_order: Sequence[str] | None = None,
    result: dict | None = None,
    combined: bool = False,
) -> Figure:
    """Empirical ROC curves: one colour per reader, one line style per modality, and a thick black
    reader-averaged curve per modality (in that modality's line style).

    The average is vertical (mean sensitivity at each false-positive fraction, see :func:`vertical_average`),
    so its area is the mean reader AUC, the quantity the OR analysis compares. AUCs in the legends come from
    ``result`` (an ``analyse()`` dict) when given, else from :func:`empirical_auc` on ``df``
    (``reader, modality, case, truth, rating``). One panel per modality (each legend: the mean curve, then each
    reader with their AUC; past 8 readers their range, and the readers' colours in a legend below the panels), or
    one axes for all with ``combined=True`` (the modalities' line styles with their mean AUC, then each reader
    with their AUC in every modality).
    """
    table = df[["reader", "modality", "case", "truth", "rating"]].copy()
    for col in ("reader", "modality", "case"):
        table[col] = table[col].astype(str)
    modalities = [str(m) for m in (modality_order or sorted(table["modality"].unique()))]
    unknown = [m for m in modalities if m not in set(table["modality"])]
    if unknown:
        raise ValueError(f"modality {unknown[0]!r} is not in the table; found {sorted(table['modality'].unique())}")
    truth = table.drop_duplicates("case").set_index("case")["truth"].astype(int)
    n_negative = int((truth == 0).sum())
    if n_negative == 0 or n_negative == len(truth):
        raise ValueError("ROC curves need both positive and negative cases")
    cases = truth.index.to_numpy()
    readers = sorted(table["reader"].unique())
    styles = [reader_style(j) for j in range(len(readers))]

    with matplotlib.rc_context(STYLE):
        n_panels = 1 if combined else len(modalities)
        width = SINGLE_COLUMN_IN if n_panels == 1 else DOUBLE_COLUMN_IN
        fig = Figure(figsize=(width, width / n_panels + 0.5 if n_panels > 1 else width), layout="constrained")
        axes = fig.subplots(1, n_panels, squeeze=False, sharey=True)[0]
        mean_handles: list[Line2D] = []
        reader_aucs: dict[str, list[float]] = {r: [] for r in readers}
        for i, modality in enumerate(modalities):
            ax = axes[0 if combined else i]
            ls = LINE_STYLES[i % len(LINE_STYLES)]
            grid = (table[table["modality"] == modality]
                    .pivot_table(index="reader", columns="case", values="rating", aggfunc="first")
                    .reindex(index=readers, columns=cases))  # fmt: skip
            if grid.isna().any().any():
                raise ValueError(f"modality {modality!r}: not every reader rated every case (fully crossed needed)")
            x = grid.to_numpy(dtype=float)
            t = truth.reindex(cases).to_numpy() == 1
            if result is not None:
                aucs = [float(result["auc"][modality][r]) for r in readers]
                mean_auc = float(result["modality_auc"][modality])
            else:
                aucs = [float(a) for a in empirical_auc(x, t)]
                mean_auc = float(np.mean(aucs))
            curves = [roc_points(t, row) for row in x]
            for (fpf, tpf), style in zip(curves, styles, strict=True):
                ax.plot(fpf, tpf, ls=ls, lw=0.8, alpha=0.85, solid_joinstyle="miter", **style)
            fpf_avg, tpf_avg = vertical_average(curves, n_negative)
            ax.plot(fpf_avg, tpf_avg, color="black", ls=ls, lw=2.0)
            mean = Line2D([], [], color="black", ls=ls, lw=2.0, label=f"{_display(modality)}: mean AUC {mean_auc:.3f}")
            mean_handles.append(mean)
            for r, a in zip(readers, aucs, strict=True):
                reader_aucs[r].append(a)
            if combined:
                continue
            handles = [mean]
            if len(readers) <= MAX_READERS_IN_PANEL_LEGEND:
                handles += [Line2D([], [], ls=ls, lw=0.8, label=f"{_reader_label(r)}: AUC {a:.3f}", **style)
                            for r, a, style in zip(readers, aucs, styles, strict=True)]  # fmt: skip
            else:
                spread = f"{len(readers)} readers: AUC {min(aucs):.3f}–{max(aucs):.3f}"
                handles.append(Line2D([], [], color="0.5", ls=ls, lw=0.8, label=spread))
            ax.set_title(_display(modality))
            ax.legend(handles=handles, loc="lower right", handlelength=2.2)
        for ax in axes:
            ax.plot([0, 1], [0, 1], color="0.6", lw=0.6, ls="--", zorder=0)
            ax.set_xlim(-0.01, 1.01)
            ax.set_ylim(-0.01, 1.01)
            ax.set_aspect("equal")
            ax.set_xticks(np.linspace(0, 1, 6))
            ax.set_yticks(np.linspace(0, 1, 6))
            ax.set_xlabel(FPF_LABEL)
        if combined:
            reader_handles = [
                Line2D([], [], lw=0.8, label=f"{_reader_label(r)}: AUC {' / '.join(f'{a:.3f}' for a in aucs)}", **style)
                for (r, aucs), style in zip(reader_aucs.items(), styles, strict=True)
            ]
            title = "AUC " + " / ".join(_display(m) for m in modalities) if len(modalities) > 1 else None
            axes[0].legend(handles=mean_handles + reader_handles, loc="lower right", handlelength=2.2, title=title)
        elif len(readers) > MAX_READERS_IN_PANEL_LEGEND:
            fig.legend(handles=[Line2D([], [], lw=0.8, label=_reader_label(r), **style)
                                for r, style in zip(readers, styles, strict=True)],
                       loc="outside lower center", ncols=min(len(readers), 6))  # fmt: skip
        axes[0].set_ylabel(TPF_LABEL)
        # Settle the layout once and freeze it: re-running it at every save shifts sizes by a hair, and the
        # same figure should give the same bytes.
        fig.get_layout_engine().execute(fig)
        fig.set_layout_engine("none")
    return fig


# --------------------------------------------------------------------------------------------- forest


def _difference(analysis: dict, first: str, second: str) -> dict | None:
    """``first - second`` from an analysis' differences, flipping estimate and CI if stored the other way."""
    for d in analysis.get("differences", []):
        pair = [str(m) for m in d["modalities"]]
        if pair == [first, second]:
            return {"estimate": d["estimate"], "ci": list(d["ci"]), "p": d["p"], "p_holm": d.get("p_holm")}
        if pair == [second, first]:
            est = None if d["estimate"] is None else -d["estimate"]
            lo, hi = d["ci"]
            ci = [None if hi is None else -hi, None if lo is None else -lo]
            return {"estimate": est, "ci": ci, "p": d["p"], "p_holm": d.get("p_holm")}
    return None


def forest_rows(result: dict, first: str = "aided", second: str = "unaided", analysis: str = "rrrc") -> list[dict]:
    """Rows for :func:`forest_plot` from an ``analyse(..., stratum=...)`` dict: "overall", then each stratum.

    Each row: ``label``; ``n_cases``, ``n_positive``, ``n_negative``; ``estimate`` = AUC(first) - AUC(second)
    and its ``ci`` [lo, hi] (signs flipped when the analysis stored second - first); ``p`` (raw) and
    ``p_holm`` (Holm-adjusted across the analysable strata; None for "overall"); ``message`` (None, or why the
    row has no estimate). ``analysis`` picks "rrrc", "frrc" or "rrfc".
    """

    def row(label: str, part: dict) -> dict:
        out = {"label": label, "n_cases": part.get("n_cases"), "n_positive": part.get("n_positive"),
               "n_negative": part.get("n_negative"), "estimate": None, "ci": None, "p": None, "p_holm": None,
               "message": None}  # fmt: skip
        if "error" in part:
            out["message"] = str(part["error"])
        elif analysis not in part:
            out["message"] = f"no {analysis.upper()} analysis in this result"
        else:
            diff = _difference(part[analysis], first, second)
            if diff is None:
                out["message"] = f"no {first} vs {second} comparison (modalities: {part.get('modalities')})"
            else:
                out.update(diff)
                if label == "overall":
                    out["p_holm"] = None  # Holm adjusts across strata only
        return out

    rows = [row("overall", result)]
    for label in sorted(result.get("strata", {}), key=stratum_key):
        rows.append(row(label, result["strata"][label]))
    return rows


def _num(x: float | None, digits: int = 3) -> str:
    return "NA" if x is None else f"{x:.{digits}f}".replace("-", "−")


def _p(p: float | None) -> str:
    if p is None:
        return "NA"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


FOREST_ANALYSES = {
    "rrrc": "RRRC (random readers and cases; Obuchowski–Rockette, Hillis ddf)",
    "frrc": "FRRC (fixed readers, random cases; Obuchowski–Rockette)",
    "rrfc": "RRFC (random readers, fixed cases; modality × reader ANOVA)",
}


def ci_percent(alpha: float) -> str:
    """0.05 -> "95"."""
    return f"{100 * (1 - alpha):g}"


def forest_title(analysis: str = "rrrc", alpha: float = 0.05) -> str:
    """What a forest plot shows: the analysis and the CI level (Holm across strata)."""
    return f"{FOREST_ANALYSES[analysis]}: {ci_percent(alpha)}% CI; p Holm-adjusted across strata"


def forest_plot(
    rows: Sequence[dict], title: str | None = None, xlabel: str | None = None, alpha: float = 0.05
) -> Figure:
    """Forest plot of AUC differences with (1 - ``alpha``) CI whiskers, one row per entry of ``rows`` (top to
    bottom); ``title``: say which analysis made them (:func:`forest_title`).

    ``rows`` are dicts as made by :func:`forest_rows`: ``label``, ``n_cases``, ``n_positive``,
    ``n_negative``, ``estimate``, ``ci`` [lo, hi], ``p``, ``p_holm`` and ``message``. A row without an
    estimate shows its ``message`` instead of a whisker. The text columns give n (positives/negatives),
    the estimate [95% CI], the raw p and the Holm-adjusted p. Pass ``xlabel`` when the rows are not
    aided minus unaided.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("forest plot: no rows")
    xlabel = xlabel or "Difference in AUC (aided − unaided)"
    with matplotlib.rc_context(STYLE):
        bottom_in, top_in = 0.5, 0.3 + (0.2 if title else 0.0)  # x label below, column headers above
        height = bottom_in + top_in + 0.3 * len(rows)
        fig = Figure(figsize=(DOUBLE_COLUMN_IN, height))
        # Text columns live in figure coordinates; the whisker axes takes the middle third.
        ax = fig.add_axes((0.25, bottom_in / height, 0.30, 1 - (bottom_in + top_in) / height))
        y = np.arange(len(rows))[::-1].astype(float)
        finite = [v for r in rows if r.get("estimate") is not None for v in (r["ci"] or []) + [r["estimate"]]
                  if v is not None]  # fmt: skip
        span = max([abs(v) for v in finite] + [0.05])
        lim = math.ceil(span * 1.15 * 20) / 20  # round up to 0.05
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.axvline(0, color="0.35", lw=0.7, zorder=0)
        ax.set_yticks([])
        ax.spines["left"].set_visible(False)
        ax.set_xlabel(xlabel)
        text = blended_transform_factory(fig.transFigure, ax.transData)
        header_y = len(rows) - 0.4 + 0.15
        for x, label, ha in ((0.01, "Stratum", "left"), (0.23, "n (pos/neg)", "right"),
                             (0.58, f"Difference [{ci_percent(alpha)}% CI]", "left"), (0.88, "p", "right"),
                             (0.99, "Holm p", "right")):  # fmt: skip
            ax.text(x, header_y, label, transform=text, ha=ha, va="bottom", fontweight="bold", clip_on=False)
        for yi, r in zip(y, rows, strict=True):
            bold = "bold" if r.get("label") == "overall" else "normal"
            ax.text(0.01, yi, stratum_display(str(r.get("label"))), transform=text, ha="left", va="center",
                    fontweight=bold)  # fmt: skip
            if r.get("n_cases") is not None:
                n = f"{r['n_cases']} ({r.get('n_positive')}/{r.get('n_negative')})"
                ax.text(0.23, yi, n, transform=text, ha="right", va="center")
            if r.get("estimate") is None:
                message = textwrap.shorten(str(r.get("message") or "not estimable"), width=70, placeholder="…")
                ax.text(0.0, yi, "\n".join(textwrap.wrap(message, 42)), ha="center", va="center",
                        fontsize=6.5, style="italic", color="0.3", clip_on=False,
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0})  # fmt: skip
                continue
            lo, hi = r["ci"]
            ax.plot([lo, hi], [yi, yi], color="black", lw=1.0, solid_capstyle="butt")
            ax.plot([lo, lo], [yi - 0.12, yi + 0.12], color="black", lw=1.0)
            ax.plot([hi, hi], [yi - 0.12, yi + 0.12], color="black", lw=1.0)
            ax.plot([r["estimate"]], [yi], marker="D" if r.get("label") == "overall" else "s", color="black",
                    markersize=5 if r.get("label") == "overall" else 4)  # fmt: skip
            est = f"{_num(r['estimate'])} [{_num(lo)}, {_num(hi)}]"
            ax.text(0.58, yi, est, transform=text, ha="left", va="center", fontweight=bold)
            ax.text(0.88, yi, _p(r.get("p")), transform=text, ha="right", va="center")
            ax.text(0.99, yi, "—" if r.get("p_holm") is None else _p(r["p_holm"]), transform=text, ha="right",
                    va="center")  # fmt: skip
        if title:
            fig.suptitle(title, fontsize=9, x=0.01, y=1 - 0.05 / height, ha="left", va="top")
    return fig


def interaction_plot(interaction: dict) -> Figure:
    """Helped and harmed rates per reader (and all readers, with the bootstrap CI), split by whether the DL output
    was right: bars up for helped, down for harmed, so harm from a wrong DL output reads at a glance."""
    readers = sorted(interaction["readers"])
    labels = [*(_reader_label(r) for r in readers), "all readers"]
    fig = Figure(figsize=(max(6.0, 0.9 * len(labels) + 2), 4.2))
    ax = fig.subplots()
    x = np.arange(len(labels))
    width = 0.38
    for offset, (key, name, colour) in zip(
        (-width / 2, width / 2),
        (("dl_right", "DL output right", "#009E73"), ("dl_wrong", "DL output wrong", "#D55E00")),
        strict=True,
    ):
        groups = [interaction["readers"][r][key] for r in readers] + [interaction["overall"][key]]
        helped = [g["helped"]["rate"] or 0.0 for g in groups]
        harmed = [-(g["harmed"]["rate"] or 0.0) for g in groups]
        ax.bar(x + offset, helped, width, color=colour, label=f"helped ({name})")
        ax.bar(x + offset, harmed, width, color=colour, alpha=0.45, hatch="//", label=f"harmed ({name})")
        overall = interaction["overall"][key]
        for rate, ci, sign in (
            (overall["helped"]["rate"], overall["helped"]["ci"], 1),
            (overall["harmed"]["rate"], overall["harmed"]["ci"], -1),
        ):
            if rate is not None and ci[0] is not None:
                ax.errorbar(
                    x[-1] + offset, sign * rate, yerr=[[rate - ci[0]], [ci[1] - rate]], color="black", capsize=3
                )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel("share of pairs: helped (up), harmed (down)")
    ax.set_title(f"What the DL output did to the readers (calls at rating >= {interaction['threshold']:g})")
    ax.legend(fontsize=7, ncols=2, loc="upper left")
    fig.tight_layout()
    return fig


def decision_curve_plot(curve: dict) -> Figure:
    """Net benefit against threshold probability (runs.decision_curve): one colour per backend (solid), the
    readers one line style per modality (black), treat all (grey) and treat none (the zero line). The y axis runs
    from a little below 0 to a little above the prevalence (the most any strategy can reach), as is usual: treat
    all falls steeply below 0 and would otherwise flatten the curves that matter."""
    thresholds = np.asarray(curve["thresholds"], dtype=float)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(DOUBLE_COLUMN_IN * 0.75, 3.6))
        ax = fig.subplots()
        backends = [c for c in curve["curves"] if c.get("kind") == "backend" and "net_benefit" in c]
        readers = [c for c in curve["curves"] if c.get("kind") == "readers" and "net_benefit" in c]
        for k, c in enumerate(backends):
            ax.plot(thresholds, _values(c["net_benefit"]), color=COLOURS[k % len(COLOURS)], lw=1.3,
                    label=textwrap.shorten(c["name"], width=48, placeholder="…"))  # fmt: skip
        for k, c in enumerate(readers):
            ax.plot(thresholds, _values(c["net_benefit"]), color="black", lw=1.3,
                    linestyle=LINE_STYLES[k % len(LINE_STYLES)], label=c["name"])  # fmt: skip
        ax.plot(thresholds, _values(curve["treat_all"]), color="0.55", lw=1.0, label="treat all")
        ax.plot(thresholds, _values(curve["treat_none"]), color="0.3", lw=0.8, linestyle=(0, (1, 2)),
                label="treat none")  # fmt: skip
        prevalence = float(curve["prevalence"])
        ax.set_ylim(-0.05, max(prevalence * 1.1, 0.05))
        ax.set_xlim(0, 1)
        ax.set_xlabel("threshold probability")
        ax.set_ylabel("net benefit")
        ax.set_title(f"Decision curves ({curve['n']} lesions, prevalence {prevalence:.2f})")
        # Below the axes: inside, it would cover the curves it names.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=2)
        fig.tight_layout()
    return fig


def _values(values: Sequence[float | None]) -> np.ndarray:
    """Stored net benefits (None where not finite) as floats with NaN gaps."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)
