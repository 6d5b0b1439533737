"""Peer-format writers and readers: round trips through analyse(), the files' structure, and clear errors."""

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from openpyxl import Workbook, load_workbook

from readerstudy.analysis import analyse
from readerstudy.results import dictionary, formats
from readerstudy.results.formats import FormatError

VANDYKE = Path(__file__).resolve().parents[1] / "data" / "mrmc" / "vandyke.csv"
REL = 1e-12  # case order changes between formats, so sums may differ in the last bits


def simulate_study(n_readers=5, n_patients=40, seed=7, time_ratio=0.8):
    """A fully crossed liver-lesion study shaped like the web app's long table (all 14 columns).

    Patients have 1-3 lesions (case ids "P001-L2"); ratings 0-100 from a binormal latent score with aided
    separation larger; reading time log-normal with aided/unaided ratio ``time_ratio``.
    """
    rng = np.random.default_rng(seed)
    cases = []
    for p in range(1, n_patients + 1):
        positive = rng.random() < 0.5  # a patient's lesions share the diagnosis
        for lesion in range(1, rng.integers(1, 4) + 1):
            diameter = float(np.round(np.exp(rng.normal(np.log(18), 0.6)), 1))
            cases.append((f"P{p:03d}-L{lesion}", f"P{p:03d}", int(positive), diameter))
    cases = pd.DataFrame(cases, columns=["case", "patient", "truth", "diameter_mm"])
    cases["size_stratum"] = pd.cut(cases["diameter_mm"], [0, 10, 30, np.inf], labels=["<=10", "10-30", ">30"])
    cases["size_stratum"] = cases["size_stratum"].astype(str)
    cases["case_effect"] = rng.normal(0, 0.4, len(cases))
    cases["model_probability"] = 1 / (1 + np.exp(-(2.0 * cases["truth"] - 1 + rng.normal(0, 1, len(cases)))))
    rows = []
    for r in range(1, n_readers + 1):
        reader_effect = rng.normal(0, 0.3)
        for m_index, modality in enumerate(("unaided", "aided")):
            separation = 1.3 if modality == "unaided" else 1.9
            order = rng.permutation(len(cases))
            for position, k in enumerate(order):
                c = cases.iloc[k]
                latent = separation * c["truth"] + rng.normal(0, 1) + 0.3 * c["case_effect"]
                rating = int(np.clip(np.round(50 + 20 * (latent - separation / 2)), 0, 100))
                seconds = float(
                    np.exp(
                        np.log(60)
                        + np.log(time_ratio) * (modality == "aided")
                        + reader_effect
                        + c["case_effect"]
                        + rng.normal(0, 0.3)
                    )
                )
                rows.append({
                    "reader": f"reader{r}", "modality": modality, "case": c["case"], "patient": c["patient"],
                    "truth": int(c["truth"]), "truth_label": "crlm" if c["truth"] else "hemangioma",
                    "rating": rating, "diameter_mm": c["diameter_mm"], "size_stratum": c["size_stratum"],
                    "session": m_index + 1, "position": position, "active_seconds": round(seconds, 3),
                    "submitted_at": f"2025-03-{r:02d}T10:{position % 60:02d}:00Z",
                    "model_probability": float(c["model_probability"]),
                })  # fmt: skip
    return pd.DataFrame(rows, columns=dictionary.COLUMNS)


@pytest.fixture(scope="module")
def study():
    return simulate_study()


@pytest.fixture(scope="module")
def vandyke():
    assert VANDYKE.is_file(), f"missing {VANDYKE}: tests/data is part of the repository (see its README)"
    return pd.read_csv(VANDYKE)


def assert_same_analysis(a, b, analyses=("rrrc", "frrc", "rrfc")):
    """Same per-reader AUCs, modality AUCs and OR tests (to REL)."""
    assert a["modalities"] == b["modalities"] and a["readers"] == b["readers"]
    assert (a["n_cases"], a["n_positive"], a["n_negative"]) == (b["n_cases"], b["n_positive"], b["n_negative"])
    for m in a["modalities"]:
        assert a["modality_auc"][m] == pytest.approx(b["modality_auc"][m], rel=REL)
        for r in a["readers"]:
            assert a["auc"][m][r] == pytest.approx(b["auc"][m][r], rel=REL)
    for name in analyses:
        x, y = a[name], b[name]
        assert x["p"] == pytest.approx(y["p"], rel=1e-9)
        for dx, dy in zip(x["differences"], y["differences"], strict=True):
            assert dx["modalities"] == dy["modalities"]
            for key in ("estimate", "se", "p"):
                assert dx[key] == pytest.approx(dy[key], rel=1e-9, abs=1e-15)
            assert dx["ci"] == pytest.approx(dy["ci"], rel=1e-9)


ROUND_TRIPS = {
    "imrmc": lambda df: formats.read_imrmc(formats.write_imrmc(df, "round trip")),
    "jafroc": lambda df: formats.read_jafroc(formats.write_jafroc(df)),
    "mrmcaov": lambda df: formats.read_mrmcaov_csv(formats.write_mrmcaov_csv(df)),
}


@pytest.mark.parametrize("fmt", list(ROUND_TRIPS))
def test_round_trip_simulated_study(study, fmt):
    back = ROUND_TRIPS[fmt](study)
    assert sorted(back["case"].unique()) == sorted(study["case"].unique())  # "P001-L2" ids survive
    assert set(back["modality"]) == {"unaided", "aided"}
    assert set(back["reader"]) == {f"reader{i}" for i in range(1, 6)}
    merged = study.merge(back, on=["reader", "modality", "case"], suffixes=("", "_back"), validate="1:1")
    assert len(merged) == len(study)
    assert (merged["truth"] == merged["truth_back"]).all()
    assert (merged["rating"].astype(float) == merged["rating_back"]).all()
    assert_same_analysis(analyse(back), analyse(study))


@pytest.mark.parametrize("fmt", ["jafroc", "mrmcaov"])
def test_round_trip_keeps_patients_for_clustered_analysis(study, fmt):
    back = ROUND_TRIPS[fmt](study)
    merged = study.merge(back, on=["reader", "modality", "case"], suffixes=("", "_back"))
    assert (merged["patient"] == merged["patient_back"]).all()
    a = analyse(study, cluster="patient", analyses=("rrrc",))
    b = analyse(back, cluster="patient", analyses=("rrrc",))
    assert a["n_clusters"] == b["n_clusters"] == 40
    assert b["rrrc"]["differences"][0]["se"] == pytest.approx(a["rrrc"]["differences"][0]["se"], rel=1e-9)


@pytest.mark.parametrize("fmt", list(ROUND_TRIPS))
def test_round_trip_vandyke(vandyke, fmt):
    back = ROUND_TRIPS[fmt](vandyke)
    assert len(back) == len(vandyke) == 1140
    a, b = analyse(vandyke), analyse(back)
    assert_same_analysis(b, a)
    # the published Van Dyke RRRC result (MRMCaov / RJafroc): AUC 0.897 vs 0.941, p = 0.0517
    d = b["rrrc"]["differences"][0]
    assert d["estimate"] == pytest.approx(-0.04380032, abs=1e-8)
    assert d["p"] == pytest.approx(0.0516657, abs=1e-6)


def test_non_integer_ratings_survive(study):
    df = study.assign(rating=study["rating"] + 0.123456789012)
    for fmt, trip in ROUND_TRIPS.items():
        back = trip(df).set_index(["reader", "modality", "case"])["rating"]
        expect = df.set_index(["reader", "modality", "case"])["rating"]
        assert (back.reindex(expect.index) == expect).all(), fmt


# ------------------------------------------------------------------------------------------ iMRMC file


def test_imrmc_text_structure(study):
    text = formats.write_imrmc(study, "CRLM vs hemangioma: unaided vs aided\nsecond line")
    lines = text.splitlines()
    begin = lines.index("BEGIN DATA:")
    header = lines[:begin]
    n_cases = study["case"].nunique()
    n_pos = study.drop_duplicates("case")["truth"].sum()
    assert header == [
        "CRLM vs hemangioma - unaided vs aided",  # a colon in free text would read as a size line in iMRMC
        "second line",
        "NR: 5",
        f"N0: {n_cases - n_pos}",
        f"N1: {n_pos}",
        "NM: 2",
    ]
    data = [line.split(",") for line in lines[begin + 1 :]]
    assert all(len(f) == 4 for f in data)
    truth_rows = [f for f in data if f[0] == "-1"]
    assert len(truth_rows) == n_cases and {f[2] for f in truth_rows} == {"0"}
    assert {f[3] for f in truth_rows} == {"0", "1"}
    assert len(data) == n_cases + len(study)
    first = next(f for f in data if f[0] != "-1")
    assert first[0].startswith("reader") and first[2] in {"aided", "unaided"} and first[3].isdigit()


def test_imrmc_reader_accepts_peer_variants():
    # RJafroc's SaveImrmc style: no spaces after the colon, truth rows with modality "truth", trailing commas
    text = "\n".join([
        "written elsewhere", "N0:2", "N1:2", "NR:1", "NM:2", "BEGIN DATA:",
        "-1,1,truth,0", "-1,2,truth,0", "-1,3,truth,1", "truth,4,0,1,",
        *(f"7,{k},{m},{x}" for m in ("A", "B") for k, x in zip((1, 2, 3, 4), (0.5, 1, 2, 3.25), strict=True)),
        "",
    ])  # fmt: skip
    df = formats.read_imrmc(text)
    assert list(df.columns) == ["reader", "modality", "case", "truth", "rating"]
    assert df["case"].tolist()[:4] == ["1", "2", "3", "4"] and df["truth"].tolist()[:4] == [0, 0, 1, 1]
    assert df["rating"].tolist()[:4] == [0.5, 1.0, 2.0, 3.25]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("NR: 1\nN0: 1\n-1,a,0,0\n", "no 'BEGIN DATA:' line"),
        ("BEGIN DATA:\n-1,a,0,0\n-1,b,0,1\nr1,a,m,0.5\nr1,b,m,high\n", "line 5: score 'high' is not a number"),
        ("BEGIN DATA:\n-1,a,0,0\nr1,a,m\n", "line 3: 'r1,a,m' has 3 fields"),
        ("BEGIN DATA:\n-1,a,0,2\n", "line 2: truth of case 'a' is '2'"),
        ("BEGIN DATA:\n-1,a,0,0\n-1,b,0,1\nr1,a,m,1\nr1,c,m,2\n", "line 5: case 'c' has no truth row"),
        ("BEGIN DATA:\n-1,a,0,0\nr1,a,m,1\nr1,a,m,2\n",
         "line 4: reader 'r1' case 'a' modality 'm' already rated on line 3"),
        ("NR: 2\nBEGIN DATA:\n-1,a,0,0\n-1,b,0,1\nr1,a,m,1\nr1,b,m,2\n", "line 1: NR: 2 but the data have 1"),
        ("N0: many\nBEGIN DATA:\n", "line 1: N0 is 'many', expected an integer"),
        ("BEGIN DATA:\n-1,a,0,0\n", "no rating rows"),
    ],
)  # fmt: skip
def test_imrmc_bad_files(text, message):
    with pytest.raises(FormatError, match=None) as info:
        formats.read_imrmc(text)
    assert message in str(info.value)


def test_imrmc_writer_refuses_ids_it_cannot_store(study):
    with pytest.raises(ValueError, match="case id 'P001 L1' is empty or contains a comma or whitespace"):
        formats.write_imrmc(study.replace({"case": {"P001-L1": "P001 L1"}}))
    with pytest.raises(ValueError, match="reader id '-1' is reserved for truth rows"):
        formats.write_imrmc(study.replace({"reader": {"reader1": "-1"}}))


# --------------------------------------------------------------------------------------- JAFROC workbook


def test_jafroc_workbook_structure(study):
    wb = load_workbook(io.BytesIO(formats.write_jafroc(study)))
    assert wb.sheetnames == ["Truth", "FP", "TP"]  # nothing else: RJafroc's new-format reader rejects extra sheets
    truth = list(wb["Truth"].iter_rows(values_only=True))
    assert truth[0] == ("CaseID", "LesionID", "Weight", "ReaderID", "ModalityID", "Paradigm")
    cases = study.drop_duplicates("case")
    n0, n1 = int((cases["truth"] == 0).sum()), int(cases["truth"].sum())
    body = truth[1:]
    assert [r[0] for r in body] == list(range(1, n0 + n1 + 1))  # negatives 1..K1 then positives, like RJafroc
    assert [r[1] for r in body] == [0] * n0 + [1] * n1 and [r[2] for r in body] == [0] * n0 + [1] * n1
    assert {r[3] for r in body} == {"1, 2, 3, 4, 5"}  # integer ReaderIDs: RJafroc's default reader needs them
    assert {r[4] for r in body} == {"aided, unaided"}
    assert [r[5] for r in body[:3]] == ["ROC", "crossed", None]
    fp = list(wb["FP"].iter_rows(values_only=True))
    tp = list(wb["TP"].iter_rows(values_only=True))
    assert fp[0] == ("ReaderID", "ModalityID", "CaseID", "FP_Rating")
    assert tp[0] == ("ReaderID", "ModalityID", "CaseID", "LesionID", "TP_Rating")
    assert len(fp) - 1 == 10 * n0 and len(tp) - 1 == 10 * n1
    assert all(r[2] <= n0 for r in fp[1:]) and all(r[2] > n0 and r[3] == 1 for r in tp[1:])
    numbers = formats.jafroc_case_numbers(study)
    first = sorted(cases.loc[cases["truth"] == 0, "case"])[0]
    assert numbers[first] == 1


def test_jafroc_explicit_case_map_and_plain_ids(study):
    data = formats.write_jafroc(study)
    numbers = formats.jafroc_case_numbers(study)
    back = formats.read_jafroc(data, case_map={n: f"case-{c}" for c, n in numbers.items()})
    assert set(back["case"]) == {f"case-{c}" for c in study["case"].unique()}
    # a workbook from elsewhere (no stored map): the integer CaseIDs become the case ids
    wb = load_workbook(io.BytesIO(data))
    del wb.custom_doc_props[formats.JAFROC_MAP_PROPERTY]
    buffer = io.BytesIO()
    wb.save(buffer)
    plain = formats.read_jafroc(buffer.getvalue())
    assert set(plain["case"]) == {str(n) for n in numbers.values()} and "patient" not in plain.columns
    assert sorted(plain["reader"].unique()) == ["1", "2", "3", "4", "5"]  # the ReaderIDs, without the names
    numbered = study.replace({"reader": {f"reader{j}": str(j) for j in range(1, 6)}})
    assert_same_analysis(analyse(plain, analyses=("rrrc",)), analyse(numbered, analyses=("rrrc",)), ("rrrc",))


def _workbook(sheets):
    wb = Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


TRUTH = [("CaseID", "LesionID", "Weight"), (1, 0, 0), (2, 0, 0), (3, 1, 1)]
FP = [("ReaderID", "ModalityID", "CaseID", "FP_Rating"), (1, "A", 1, 10), (1, "A", 2, 20)]
TP = [("ReaderID", "ModalityID", "CaseID", "LesionID", "TP_Rating"), (1, "A", 3, 1, 30)]


def test_jafroc_reads_old_style_names():
    # RJafroc's own SaveJAFROC: sheets TRUTH/NL/LL, NL_Rating/LL_Rating, numeric reader ids
    df = formats.read_jafroc(_workbook({"TRUTH": TRUTH, "NL": FP, "LL": TP}))
    assert df.to_dict("list") == {"reader": ["1"] * 3, "modality": ["A"] * 3, "case": ["1", "2", "3"],
                                  "truth": [0, 0, 1], "rating": [10.0, 20.0, 30.0]}  # fmt: skip


@pytest.mark.parametrize(
    ("sheets", "message"),
    [
        ({"Truth": TRUTH, "FP": FP, "Ratings": TP},
         "no 'TP' or 'LL' sheet (names ignore case); the workbook has ['Truth', 'FP', 'Ratings']"),
        ({"Cases": TRUTH, "FP": FP, "TP": TP}, "no 'Truth' sheet"),
        ({"Truth": TRUTH, "FP": [*FP, (1, "A", 2, "high")], "TP": TP},
         "sheet 'FP' row 4: rating 'high' is not a number"),
        ({"Truth": [*TRUTH, ("x", 0, 0)], "FP": FP, "TP": TP}, "sheet 'Truth' row 5: CaseID 'x' is not an integer"),
        ({"Truth": [*TRUTH, (3, 2, 0)], "FP": FP, "TP": TP}, "sheet 'Truth' row 5: LesionID 2; only ROC data"),
        ({"Truth": TRUTH, "FP": [*FP, (1, "A", 3, 5)], "TP": TP}, "sheet 'FP' row 4: CaseID 3 is diseased"),
        ({"Truth": TRUTH, "FP": [*FP, (1, "A", 9, 5)], "TP": TP},
         "sheet 'FP' row 4: CaseID 9 is not in the 'Truth' sheet"),
        ({"Truth": TRUTH, "FP": [*FP, (1, "A", 2, 5)], "TP": TP},
         "sheet 'FP' row 4: reader '1' modality 'A' CaseID 2 already rated in sheet 'FP' row 3"),
        ({"Truth": TRUTH, "FP": FP, "TP": [*TP, (None, "A", 3, 1, 5)]}, "sheet 'TP' row 3: ReaderID is empty"),
    ],
)  # fmt: skip
def test_jafroc_bad_workbooks(sheets, message):
    with pytest.raises(FormatError) as info:
        formats.read_jafroc(_workbook(sheets))
    assert message in str(info.value)


def test_jafroc_not_a_workbook():
    with pytest.raises(FormatError, match=r"not a readable \.xlsx workbook"):
        formats.read_jafroc(b"reader,modality\n")


def test_jafroc_needs_both_classes(study):
    with pytest.raises(ValueError, match="needs both non-diseased and diseased cases"):
        formats.write_jafroc(study[study["truth"] == 1])


# ----------------------------------------------------------------------------------------- MRMCaov CSV


def test_mrmcaov_csv_columns(study):
    text = formats.write_mrmcaov_csv(study)
    head = pd.read_csv(io.StringIO(text), dtype=str)
    assert list(head.columns) == ["reader", "treatment", "case", "truth", "rating", "patient"]
    assert len(head) == len(study) and set(head["treatment"]) == {"aided", "unaided"}
    assert list(pd.read_csv(io.StringIO(formats.write_mrmcaov_csv(study, include_patient=False))).columns) == [
        "reader", "treatment", "case", "truth", "rating"]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("reader,modality,case,truth,rating\n1,A,1,0,1\n", "missing column(s) ['treatment']"),
        ("reader,treatment,case,truth,rating\n1,A,1,0,1\n1,A,2,1,high\n",
         "line 3: rating 'high' is not a finite number"),
        ("reader,treatment,case,truth,rating\n1,A,1,yes,1\n", "line 2: truth 'yes'; expected 0 or 1"),
        ("reader,treatment,case,truth,rating\n1,,1,0,1\n", "line 2: treatment is empty"),
        ("reader,treatment,case,truth,rating\n", "no data rows"),
    ],
)  # fmt: skip
def test_mrmcaov_bad_files(text, message):
    with pytest.raises(FormatError) as info:
        formats.read_mrmcaov_csv(text)
    assert message in str(info.value)


def test_writers_reject_bad_tables(study):
    with pytest.raises(ValueError, match=r"missing column\(s\) \['rating'\]"):
        formats.write_mrmcaov_csv(study.drop(columns="rating"))
    bad = study.astype({"rating": object})
    bad.loc[3, "rating"] = "n/a"
    with pytest.raises(ValueError, match="column 'rating': expected a finite number, found 'n/a' in row 3"):
        formats.write_imrmc(bad)
    first = study.iloc[0]
    with pytest.raises(ValueError, match=f"reader 'reader1' rated case '{first['case']}' in modality 'unaided' twice"):
        formats.write_jafroc(pd.concat([study, study.head(1)]))


# ------------------------------------------------------------------------------------------ dictionary


def test_data_dictionary_covers_the_long_table(study):
    expected = "reader modality case patient truth truth_label rating diameter_mm size_stratum session position"
    expected = [*expected.split(), "active_seconds", "submitted_at", "model_probability"]
    expected += ["served_seconds", "not_assessable", "not_assessable_reason", "comment", "n_measurements"]
    expected += ["measurements", "age", "sex", "cea_ng_ml", "prior_colorectal_cancer", "case_text"]
    assert dictionary.COLUMNS == expected
    table = pd.read_csv(io.StringIO(dictionary.dictionary_csv()), dtype=str, keep_default_na=False)
    assert list(table.columns) == ["column", "type", "units", "meaning"]
    assert table["column"].tolist() == expected and (table["meaning"].str.len() > 20).all()
    entry = table.set_index("column")
    assert entry.loc["diameter_mm", "units"] == "mm" and entry.loc["active_seconds", "units"] == "s"
    assert "an edge belongs to the lower bin" in entry.loc["size_stratum", "meaning"]
    assert "paused while the tab was hidden" in entry.loc["active_seconds", "meaning"]
    assert "0 = certainly hemangioma, 100 = certainly metastasis" in entry.loc["rating", "meaning"]
    assert "Empty when the reader marked the lesion not assessable" in entry.loc["rating", "meaning"]
    assert entry.loc["served_seconds", "units"] == "s" and "first received" in entry.loc["served_seconds", "meaning"]
    assert "complete-case" in entry.loc["not_assessable", "meaning"]
    assert "compact JSON" in entry.loc["measurements", "type"]
    assert entry.loc["age", "units"] == "years" and entry.loc["cea_ng_ml", "units"] == "ng/mL"
    assert "F = female" in entry.loc["sex", "meaning"] and "or empty" in entry.loc["prior_colorectal_cancer", "type"]
    dictionary.check_columns(study)  # the simulated table has every column


def test_check_columns_names_the_missing_ones(study):
    with pytest.raises(ValueError, match=r"missing column\(s\) \['patient', 'active_seconds'\]"):
        dictionary.check_columns(study.drop(columns=["active_seconds", "patient"]))
    dictionary.check_columns(study[["reader", "case"]], required=["reader", "case"])


def test_jafroc_ids_rules(study):
    spaced = study.replace({"case": {"P001-L1": "P001 L1"}})  # case ids become integers: any text is fine
    assert "P001 L1" in set(formats.read_jafroc(formats.write_jafroc(spaced))["case"])
    named = study.replace({"reader": {"reader1": "dr smith"}})  # readers become integers too: any name is kept
    assert "dr smith" in set(formats.read_jafroc(formats.write_jafroc(named))["reader"])
    with pytest.raises(ValueError, match="modality id 'dl aided' is empty or contains a comma or whitespace"):
        formats.write_jafroc(study.replace({"modality": {"aided": "dl aided"}}))


def test_jafroc_reader_ids_are_what_rjafrocs_default_reader_takes(study):
    """``DfReadDataFile(f)`` (old format) sorts ``as.integer(ReaderID)`` of the FP and TP sheets: every ReaderID
    must be an integer, numbered in the readers' natural order (reader2 before reader10), names kept in the map."""
    renamed = study.replace({"reader": {"reader2": "reader10"}})
    wb = load_workbook(io.BytesIO(formats.write_jafroc(renamed)))
    ids = [r[0] for sheet in ("FP", "TP") for r in wb[sheet].iter_rows(min_row=2, values_only=True)]
    assert all(isinstance(i, int) for i in ids) and sorted(set(ids)) == [1, 2, 3, 4, 5]
    stored = json.loads(wb.custom_doc_props[formats.JAFROC_MAP_PROPERTY].value)
    assert stored["reader"] == {"1": "reader1", "2": "reader3", "3": "reader4", "4": "reader5", "5": "reader10"}
    back = formats.read_jafroc(formats.write_jafroc(renamed))
    assert sorted(back["reader"].unique()) == sorted(renamed["reader"].unique())
    assert_same_analysis(analyse(back, analyses=("rrrc",)), analyse(renamed, analyses=("rrrc",)), ("rrrc",))
