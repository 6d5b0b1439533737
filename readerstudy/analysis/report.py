"""Readable text tables of an :func:`analyse` result (what the command line prints)."""

from __future__ import annotations


def _f(value: object, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 0.01 and value != 0 else f"{value:.{digits}f}"
    return str(value)


def _ci(ci: list) -> str:
    return f"({_f(ci[0])}, {_f(ci[1])})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).rjust(w) for c, w in zip(cells, widths, strict=True))

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _one_sided(res: dict) -> list[str]:
    """The one-sided superiority / non-inferiority test of each difference (when the analysis asked for one)."""
    tests = [(d["modalities"], d["one_sided"]) for d in res["differences"] if "one_sided" in d]
    if not tests:
        return []
    first = tests[0][1]
    level = f"{1 - first['alpha']:.4g}"
    rows = [
        [
            f"{a} - {b} <= {_f(o['null_bound'])}",
            _f(o.get("t", o.get("z"))),
            _f(o["p"]),
            _f(o["lower_bound"]),
            "-" if o["rejected"] is None else ("yes" if o["rejected"] else "no"),
        ]
        for (a, b), o in tests
    ]
    margin = f", margin {_f(first['margin'])}" if first["hypothesis"] == "non-inferiority" else ""
    return [
        f"one-sided {first['hypothesis']}{margin}:",
        *_table(["H0", "t" if "t" in first else "z", "p", f"{level} lower bound", "H0 rejected"], rows),
    ]


def _analysis(name: str, res: dict, fom: str = "auc") -> list[str]:
    stat = ("X2", "chisq") if name == "frrc" else ("F", "f")
    if name == "frrc":
        head = f"{stat[0]} = {_f(res[stat[1]])}, df = {res['df']}, p = {_f(res['p'])}"
    else:
        head = f"F = {_f(res['f'])}, df = ({_f(res['df1'])}, {_f(res['df2'], 3)}), p = {_f(res['p'])}"
    if "p_holm" in res:
        head += f", Holm p = {_f(res['p_holm'])}"
    out = [f"{name.upper()}: {head}"]
    if res["differences"]:
        rows = [
            [
                f"{d['modalities'][0]} - {d['modalities'][1]}",
                _f(d["estimate"]),
                _f(d["se"]),
                _f(d["df"], 3),
                _ci(d["ci"]),
                _f(d["p"]),
            ]
            for d in res["differences"]
        ]
        out += _table(["difference", "estimate", "SE", "df", "95% CI", "p"], rows)
        out += _one_sided(res)
    rows = [[m, _f(s[fom]), _f(s["se"]), _f(s["df"], 3), _ci(s["ci"])] for m, s in res["single"].items()]
    out += _table(["modality", "AUC" if fom == "auc" else fom, "SE", "df", "95% CI"], rows)
    if res.get("per_reader"):
        rows = [
            [
                d["reader"],
                f"{d['modalities'][0]} - {d['modalities'][1]}",
                _f(d["estimate"]),
                _f(d["se"]),
                _ci(d["ci"]),
                _f(d["p"]),
            ]
            for d in res["per_reader"]
        ]
        out += _table(["reader", "difference", "estimate", "SE", "95% CI", "p"], rows)
    return out


def _design(result: dict) -> list[str]:
    """The split-plot groups and the readers left out as incomplete (nothing for a complete fully crossed study)."""
    out = []
    if result.get("design") == "split-plot":
        groups = "; ".join(f"readers {', '.join(g['readers'])}: {g['n_cases']} cases" for g in result["groups"])
        out.append(f"design: split-plot, {len(result['groups'])} reader groups ({groups})")
    dropped = [(r, c) for r, c in result.get("completion", {}).items() if not c["kept"]]
    if dropped:
        shown = ", ".join(f"{r} ({c['reads']}/{c['expected']} reads)" for r, c in dropped)
        out.append(f"left out as incomplete: reader {shown}")
    return out


def format_report(result: dict, title: str = "MRMC analysis") -> str:
    """Counts, reader AUCs, OR variance components and each requested analysis as text tables."""
    clusters = f", {result['n_clusters']} clusters" if result.get("n_clusters") is not None else ""
    out = [
        f"== {title}: {result['n_readers']} readers x {len(result['modalities'])} modalities x "
        f"{result['n_cases']} cases ({result['n_positive']} positive, {result['n_negative']} negative{clusters}); "
        f"covariance: {result['cov_method']}"
    ]
    out += _design(result)
    fom = result.get("fom", "auc")
    if fom != "auc":
        out.append(f"figure of merit: {fom}, a read calls a case positive when its rating >= {result['threshold']}")
    rows = [[r, *(_f(result[fom][m][r]) for m in result["modalities"])] for r in result["readers"]]
    rows.append(["mean", *(_f(result[f"modality_{fom}"][m]) for m in result["modalities"])])
    out += _table(["reader", *result["modalities"]], rows)
    vc = result["var_components"]
    out.append("OR components: " + ", ".join(f"{k} = {_f(v)}" for k, v in vc.items()))
    for name in ("rrrc", "frrc", "rrfc"):
        if name in result:
            out += ["", *_analysis(name, result[name], fom)]
    for label, sub in result.get("strata", {}).items():
        out.append("")
        if "error" in sub:
            out.append(f"== stratum {label}: not analysed: {sub['error']}")
        else:
            out.append(format_report(sub, title=f"stratum {label}"))
    return "\n".join(out)
