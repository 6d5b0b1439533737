"""Figures: valid PNG/SVG bytes, curve construction that reproduces the empirical AUCs, forest rows = analyse()."""

import io
import sys
import xml.etree.ElementTree as ET

import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from readerstudy.analysis import analyse, empirical_auc, holm
from readerstudy.results import figures
from tests.results.test_formats import VANDYKE, simulate_study

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def study():
    return simulate_study()


@pytest.fixture(scope="module")
def result(study):
    return analyse(study, cluster="patient", stratum="size_stratum")


def svg_text(data: bytes) -> str:
    root = ET.fromstring(data)  # raises if the SVG is not well-formed XML
    assert root.tag == f"{SVG}svg"
    return " ".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))


def grids(df):
    """modality -> (readers x cases ratings, truth), cases in one fixed order."""
    truth = df.drop_duplicates("case").set_index("case")["truth"]
    out = {}
    for m, sub in df.groupby("modality"):
        g = sub.pivot(index="reader", columns="case", values="rating").reindex(columns=truth.index)
        out[m] = (g.to_numpy(dtype=float), truth.to_numpy() == 1)
    return out


# ---------------------------------------------------------------------------------------------- ROC


def curve_checks(df):
    for _m, (x, t) in grids(df).items():
        aucs = empirical_auc(x, t)
        curves = [figures.roc_points(t, row) for row in x]
        for (fpf, tpf), auc in zip(curves, aucs, strict=True):
            assert fpf[0] == tpf[0] == 0 and fpf[-1] == tpf[-1] == 1
            assert np.all(np.diff(fpf) >= 0) and np.all(np.diff(tpf) >= 0)
            assert figures.trapezoid_area(fpf, tpf) == pytest.approx(auc, abs=1e-12)
        fpf_avg, tpf_avg = figures.vertical_average(curves, int((~t).sum()))
        assert np.all(np.diff(fpf_avg) >= 0) and np.all(np.diff(tpf_avg) >= -1e-15)
        assert figures.trapezoid_area(fpf_avg, tpf_avg) == pytest.approx(aucs.mean(), abs=1e-12)


def test_curve_areas_equal_empirical_aucs(study):
    # integer 0-100 ratings: many ties, within and across truth classes
    curve_checks(study)


def test_curve_areas_vandyke():
    assert VANDYKE.is_file(), f"missing {VANDYKE}: tests/data is part of the repository (see its README)"
    curve_checks(pd.read_csv(VANDYKE))  # 5-point scale: heavy ties


def test_roc_points_small_example():
    # negatives 1, 2; positives 2, 3: thresholds 3, 2, 1
    fpf, tpf = figures.roc_points(np.array([0, 0, 1, 1]), np.array([1, 2, 2, 3]))
    assert fpf.tolist() == [0, 0, 0.5, 1] and tpf.tolist() == [0, 0.5, 1, 1]
    assert figures.trapezoid_area(fpf, tpf) == 0.875  # 3 of 4 pairs correct + 1 tie at 1/2


def test_roc_figure_png_and_svg(study, result):
    fig = figures.roc_curves(study, ["unaided", "aided"], result=result)
    png = figures.render(fig, "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(png))
    image.verify()
    width_200 = Image.open(io.BytesIO(png)).size[0]
    assert 1200 < width_200 <= figures.DOUBLE_COLUMN_IN * 200  # a double column at 200 dpi, cropped tight
    width_100 = Image.open(io.BytesIO(figures.render(fig, "png", dpi=100))).size[0]
    assert width_100 == pytest.approx(width_200 / 2, abs=2)
    text = svg_text(figures.render(fig, "svg"))
    for m in ("unaided", "aided"):
        assert f"{m.capitalize()}: mean AUC {result['modality_auc'][m]:.3f}" in text
        for r in result["readers"]:
            assert f"{r}: AUC {result['auc'][m][r]:.3f}" in text
    assert figures.FPF_LABEL in text and figures.TPF_LABEL in text


def test_roc_figure_without_result_computes_aucs(study, result):
    fig = figures.roc_curves(study, combined=True)
    text = svg_text(figures.render(fig, "svg"))
    for m in ("aided", "unaided"):
        assert f"{m.capitalize()}: mean AUC {result['modality_auc'][m]:.3f}" in text
    for r in result["readers"]:  # one axes: each reader's colour, with their AUC in every modality (sorted)
        assert f"{r}: AUC {result['auc']['aided'][r]:.3f} / {result['auc']['unaided'][r]:.3f}" in text
    assert "AUC Aided / Unaided" in text
    assert len(fig.axes) == 1


def test_roc_figure_bad_input(study):
    with pytest.raises(ValueError, match="modality 'cad' is not in the table"):
        figures.roc_curves(study, ["unaided", "cad"])
    with pytest.raises(ValueError, match="not every reader rated every case"):
        figures.roc_curves(study.iloc[1:])
    with pytest.raises(ValueError, match="expected 'png' or 'svg'"):
        figures.render(figures.roc_curves(study), "gif")


def test_no_global_matplotlib_state(study, result):
    before = dict(matplotlib.rcParams)
    figures.render(figures.roc_curves(study), "svg")
    figures.render(figures.forest_plot(figures.forest_rows(result)), "png")
    assert dict(matplotlib.rcParams) == before
    assert "matplotlib.pyplot" not in sys.modules or not sys.modules["matplotlib.pyplot"].get_fignums()


def test_svg_is_reproducible(study):
    fig = figures.roc_curves(study)
    assert figures.render(fig, "svg") == figures.render(fig, "svg")


# -------------------------------------------------------------------------------------------- forest


def test_forest_rows_equal_analysis(result):
    rows = figures.forest_rows(result, "aided", "unaided")
    assert [r["label"] for r in rows] == ["overall", "<=10", "10-30", ">30"]
    assert result["rrrc"]["differences"][0]["modalities"] == ["aided", "unaided"]  # sorted: aided - unaided
    for row in rows:
        part = result if row["label"] == "overall" else result["strata"][row["label"]]
        d = part["rrrc"]["differences"][0]
        assert row["estimate"] == d["estimate"] and row["ci"] == d["ci"] and row["p"] == d["p"]
        assert row["p_holm"] == (None if row["label"] == "overall" else d["p_holm"])
        assert (row["n_cases"], row["n_positive"], row["n_negative"]) == (
            part["n_cases"], part["n_positive"], part["n_negative"])  # fmt: skip
        assert row["message"] is None
    frrc = figures.forest_rows(result, analysis="frrc")
    assert frrc[1]["estimate"] == result["strata"]["<=10"]["frrc"]["differences"][0]["estimate"]
    assert frrc[1]["ci"] == result["strata"]["<=10"]["frrc"]["differences"][0]["ci"]


def test_forest_rows_flip_when_stored_the_other_way(study, result):
    # "unaided" < "z_aided": the analysis now reports unaided - aided
    renamed = analyse(study.replace({"modality": {"aided": "z_aided"}}), cluster="patient", stratum="size_stratum")
    assert renamed["rrrc"]["differences"][0]["modalities"] == ["unaided", "z_aided"]
    flipped = figures.forest_rows(renamed, "z_aided", "unaided")
    for a, b in zip(flipped, figures.forest_rows(result, "aided", "unaided"), strict=True):
        assert a["estimate"] == pytest.approx(b["estimate"], rel=1e-12)
        assert a["ci"] == pytest.approx(b["ci"], rel=1e-12)
        assert a["ci"][0] < a["estimate"] < a["ci"][1]
        assert a["p"] == pytest.approx(b["p"], rel=1e-12)


def test_forest_rows_with_unanalysable_stratum(study):
    df = study.copy()
    # a stratum holding only positive lesions cannot be analysed: analyse() reports an error for it
    big = df["diameter_mm"] > 30
    df.loc[big & (df["truth"] == 1), "size_stratum"] = ">30"
    df.loc[big & (df["truth"] == 0), "size_stratum"] = "10-30"
    res = analyse(df, stratum="size_stratum")
    assert "error" in res["strata"][">30"]
    rows = figures.forest_rows(res)
    bad = rows[-1]
    assert bad["label"] == ">30" and bad["estimate"] is None and bad["message"] == res["strata"][">30"]["error"]
    assert bad["n_cases"] is None and "only positive (truth 1) cases" in bad["message"]
    ok = rows[1:-1]
    assert [r["label"] for r in ok] == ["<=10", "10-30"]
    assert [r["p_holm"] for r in ok] == holm([r["p"] for r in ok])  # Holm over the 2 analysable strata only
    text = svg_text(figures.render(figures.forest_plot(rows), "svg"))
    assert ">30 mm" in text and "has only positive (truth 1)" in text


def test_forest_plot_svg_and_png(result):
    rows = figures.forest_rows(result)
    fig = figures.forest_plot(rows, title="Aided minus unaided AUC")
    text = svg_text(figures.render(fig, "svg"))
    for label in ("Overall", "≤10 mm", "10–30 mm", ">30 mm", "Holm p", "Aided minus unaided AUC"):
        assert label in text
    for r in rows:
        est = f"{r['estimate']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]".replace("-", "−")
        assert est in text
        assert f"{r['n_cases']} ({r['n_positive']}/{r['n_negative']})" in text
    png = figures.render(fig, "png", dpi=150)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size[0] > 900


def test_forest_plot_needs_rows():
    with pytest.raises(ValueError, match="no rows"):
        figures.forest_plot([])
