"""Each kind of bad input raises AnalysisInputError with a message naming what is wrong and where."""

import numpy as np
import pandas as pd
import pytest

from readerstudy.analysis import AnalysisInputError, analyse


def table(n_readers=2, n_modalities=2, n_cases=6, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [
        {"reader": f"R{r}", "modality": f"M{m}", "case": f"c{k}", "truth": k % 2, "rating": float(rng.integers(1, 6))}
        for m in range(n_modalities)
        for r in range(n_readers)
        for k in range(n_cases)
    ]
    return pd.DataFrame(rows)


def test_a_valid_table_is_analysed():
    assert analyse(table())["n_cases"] == 6


def test_missing_columns_are_named():
    with pytest.raises(AnalysisInputError, match=r"missing column\(s\) \['truth'\].*found"):
        analyse(table().drop(columns="truth"))
    with pytest.raises(AnalysisInputError, match=r"missing column\(s\) \['patient'\]"):
        analyse(table(), cluster="patient")


def test_case_with_two_truths_names_case_and_rows():
    df = table()
    row = df.index[(df["case"] == "c2") & (df["reader"] == "R1")][0]
    df.loc[row, "truth"] = 1
    with pytest.raises(AnalysisInputError, match=rf"'truth': case 'c2' has 0 in row \d+ but 1 in row {row}"):
        analyse(df)


def test_missing_reads_name_the_cells():
    df = table()
    df = df[~((df["reader"] == "R1") & (df["modality"] == "M0") & df["case"].isin(["c3", "c4"]))]
    with pytest.raises(
        AnalysisInputError,
        match=r"not fully crossed: 2 .*reader 'R1' x modality 'M0' x case 'c3'; "
        r"reader 'R1' x modality 'M0' x case 'c4'",
    ):
        analyse(df)


def test_duplicate_reads_name_the_cell():
    df = table()
    with pytest.raises(AnalysisInputError, match=r"rated more than once.*reader 'R0' x modality 'M0' x case 'c0'"):
        analyse(pd.concat([df, df.iloc[[0]]]))


def test_one_truth_class():
    df = table()
    df["truth"] = 1
    with pytest.raises(AnalysisInputError, match=r"the data set has only positive \(truth 1\) cases"):
        analyse(df)


def test_one_class_stratum_gives_an_error_entry_not_a_crash():
    df = table(n_cases=8)
    df["site"] = np.where(df["case"].isin(["c1", "c3"]), "A", "B")  # stratum A: only positives
    result = analyse(df, stratum="site")
    assert "only positive (truth 1) cases" in result["strata"]["A"]["error"]
    assert result["strata"]["B"]["n_cases"] == 6
    assert result["n_cases"] == 8


def test_non_numeric_ratings_name_row_and_value():
    df = table()
    df["rating"] = df["rating"].astype(object)
    df.loc[4, "rating"] = "high"
    with pytest.raises(AnalysisInputError, match=r"'rating': expected a finite number, found row 4 \('high'\)"):
        analyse(df)
    df.loc[4, "rating"] = np.nan
    with pytest.raises(AnalysisInputError, match=r"row 4 \(nan\)"):
        analyse(df)


def test_truth_must_be_0_or_1():
    df = table()
    df.loc[3, "truth"] = 2
    with pytest.raises(AnalysisInputError, match=r"'truth': expected 0 or 1, found row 3 \(2\)"):
        analyse(df)


@pytest.mark.parametrize("analyses", [("rrrc",), ("rrfc",)])
def test_random_reader_analyses_need_two_readers(analyses):
    df = table(n_readers=1)
    with pytest.raises(AnalysisInputError, match=r"1 reader \('R0'\); random-reader analyses .* at least 2"):
        analyse(df, analyses=analyses)
    assert analyse(df, analyses=("frrc",))["frrc"]["p"] is not None  # fixed readers: one is enough


def test_case_with_two_patients():
    df = table()
    df["patient"] = df["case"]
    df.loc[5, "patient"] = "other"
    with pytest.raises(AnalysisInputError, match="'patient': case 'c5'"):
        analyse(df, cluster="patient")


def test_unknown_options():
    with pytest.raises(AnalysisInputError, match="covariance method 'bootstrap'"):
        analyse(table(), cov="bootstrap")
    with pytest.raises(AnalysisInputError, match="analyses"):
        analyse(table(), analyses=("dbm",))
    with pytest.raises(AnalysisInputError, match="unclustered data only"):
        analyse(
            table().assign(patient=lambda d: d["case"].str[:2].where(d["case"] < "c3", "p9")),
            cov="unbiased",
            cluster="patient",
        )


def test_unreadable_csv(tmp_path):
    with pytest.raises(AnalysisInputError, match="cannot read ratings CSV"):
        analyse(tmp_path / "nope.csv")
