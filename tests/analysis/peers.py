"""Map every number in the peer programs' JSON files to the same quantity in our result dict.

Each ``*_value(ours, path)`` returns our value for one leaf of the peer JSON (or SKIP for run metadata);
an unmapped path raises, so a test that walks all leaves checks every number the peer reported.
"""

import math

from scipy import stats

SKIP = object()
VC = {
    "var_R": "var_r",
    "var_TR": "var_tr",
    "var_error": "var_error",
    "cov1": "cov1",
    "cov2": "cov2",
    "cov3": "cov3",
    "r1": "r1",
    "r2": "r2",
    "r3": "r3",
}


def leaves(obj, path=()):
    """(path, value) for every number or string in a JSON tree."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from leaves(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from leaves(v, (*path, i))
    else:
        yield path, obj


def _anova(ours, key):
    t, r = len(ours["modalities"]), ours["n_readers"]
    a = ours["anova"]
    return {
        "MS_T": a["ms_t"],
        "MS_R": a["ms_r"],
        "MS_TR": a["ms_tr"],
        "SS_T": a["ms_t"] * (t - 1),
        "SS_R": a["ms_r"] * (r - 1),
        "SS_TR": a["ms_tr"] * (t - 1) * (r - 1),
    }[key]


def _test(d, key):
    """A difference / single-modality entry (MRMCaov and RJafroc spellings)."""
    key = {
        "Estimate": "estimate",
        "StdErr": "se",
        "DF": "df",
        "PrGTz": "p",
        "CILower": "ci_lower",
        "CIUpper": "ci_upper",
    }.get(key, key)
    if key == "comparison":
        return " - ".join(d["modalities"])
    if key in ("ci_lower", "ci_upper"):
        return d["ci"][key == "ci_upper"]
    if key == "estimate" and "auc" in d:
        return d["auc"]
    return d[{"MS_R_": "ms_r", "Cov2": "cov2", "Var_Error_": "var_error"}.get(key, key)]


def mrmcaov_value(ours, path):  # noqa: C901
    """Leaf of MRMCaov's ``results[<cov>]`` block (``ours`` analysed with frrc_truncate=False)."""
    match path:
        case ("cov_method",):
            return SKIP
        case ("anova", key):
            return _anova(ours, key)
        case ("cov_matrix", "labels", i):
            return ours["covariance"]["labels"][i].replace(":", ".")
        case ("cov_matrix", "matrix", i, j):
            return ours["covariance"]["matrix"][i][j]
        case (_, "design"):
            return SKIP
        case (_, "var_components", key):
            return ours["var_components"][VC[key]]
        case (analysis, "global_test", key):
            res = ours[analysis.lower()]
            return {
                "MS_T": ours["anova"]["ms_t"],
                "MS_TR": ours["anova"]["ms_tr"],
                "F": res.get("f"),
                "X2": res.get("chisq"),
            }.get(key, res.get(key))
        case (analysis, "diffs", i, key):
            return _test(ours[analysis.lower()]["differences"][i], key)
        case (analysis, "single_modality", i, "modality"):
            return ours["modalities"][i]
        case (analysis, "single_modality", i, key):
            return _test(ours[analysis.lower()]["single"][ours["modalities"][i]], key)
        case ("FRRC", "per_reader_diffs", i, "reader"):
            return ours["frrc"]["per_reader"][i]["reader"]
        case ("FRRC", "per_reader_diffs", i, key):
            return _test(ours["frrc"]["per_reader"][i], key)
        case ("FRRC", "reader_means", i, key):
            m, r = divmod(i, ours["n_readers"])
            mod, rdr = ours["modalities"][m], ours["readers"][r]
            auc, se = ours["auc"][mod][rdr], ours["auc_se"][mod][rdr]
            half = stats.norm.ppf(0.975) * se
            return {
                "modality": mod,
                "reader": rdr,
                "auc": auc,
                "se": se,
                "ci_lower": max(auc - half, 0.0),
                "ci_upper": min(auc + half, 1.0),
            }[key]
    raise KeyError(path)


def common_value(ours, path):  # noqa: C901
    """Top-level study counts and AUCs, shared by the peer files."""
    match path:
        case ("n_readers",):
            return ours["n_readers"]
        case ("n_modalities",):
            return len(ours["modalities"])
        case ("n_cases",):
            return ours["n_cases"]
        case ("n_pos",):
            return ours["n_positive"]
        case ("n_neg",):
            return ours["n_negative"]
        case ("reader_modality_auc", i, "modality"):
            return ours["modalities"][i // ours["n_readers"]]
        case ("reader_modality_auc", i, "reader"):
            return ours["readers"][i % ours["n_readers"]]
        case ("reader_modality_auc", i, "auc" | "empirical_auc"):
            m, r = divmod(i, ours["n_readers"])
            return ours["auc"][ours["modalities"][m]][ours["readers"][r]]
        case ("modality_auc", mod):
            return ours["modality_auc"][mod]
        case ("peer" | "peer_version" | "R_version" | "dataset" | "csv" | "metric" | "note" | "cov_method", *_):
            return SKIP
        case ("timing_s", *_):
            return SKIP
    raise KeyError(path)


def rjafroc_value(ours, path):  # noqa: C901
    """Leaf of an RJafroc file (``ours`` analysed with jackknife and frrc_truncate=True).

    RJafroc, like the Iowa program, puts max(Cov2 - Cov3, 0) into var(TR) (and so var(R)); we report the
    untruncated ANOVA estimates (refdata README), so those two are compared after that substitution.
    """
    t, r = len(ours["modalities"]), ours["n_readers"]
    vc = ours["var_components"]
    excess = max(vc["cov2"] - vc["cov3"], 0.0) - (vc["cov2"] - vc["cov3"])
    match path:
        case ("modality_levels", i):
            return ours["modalities"][i]
        case ("reader_levels", i):
            return ours["readers"][i]
        case ("anova", key):
            return _anova(ours, key)
        case ("var_components", "var_TR"):
            return vc["var_tr"] + excess
        case ("var_components", "var_R"):
            return vc["var_r"] - excess / t
        case ("var_components", key):
            return vc[VC[key]]
        case ("individual_modality", i, key):
            mod = ours["modalities"][i]
            return {
                "DF": r - 1,
                "msREachTrt": ours["anova"]["ms_r_by_modality"][i],
                "varEachTrt": ours["frrc"]["single"][mod]["var_error"],
                "cov2EachTrt": ours["frrc"]["single"][mod]["cov2"],
                "_row": f"trt{i + 1}",
            }[key]
        case ("individual_reader", j, key):
            row = ours["frrc"]["per_reader"][j * (t * (t - 1) // 2)]
            return {
                "DF": t - 1,
                "msTEachRdr": ours["anova"]["ms_t_by_reader"][j],
                "varEachRdr": row["var_error"],
                "cov1EachRdr": row["cov1"],
                "_row": f"rdr{j + 1}",
            }[key]
        case ("results", analysis, "global_test", key):
            res = ours[analysis.lower()]
            return {"MS_T": ours["anova"]["ms_t"], "F": res.get("f"), "X2": res.get("chisq")}.get(key, res.get(key))
        case ("results", analysis, "diffs", i, "comparison"):
            pair = ours[analysis.lower()]["differences"][i]["modalities"]
            return "-".join(f"trt{ours['modalities'].index(m) + 1}" for m in pair)
        case ("results", analysis, "diffs", i, key):
            return _test(ours[analysis.lower()]["differences"][i], key)
        case ("results", "FRRC", "single_modality", i, "DF"):
            return ours["n_cases"] - 1  # RJafroc prints K-1 here but its interval is the normal (z) one
        case ("results", analysis, "single_modality", i, "modality"):
            return ours["modalities"][i]
        case ("results", analysis, "single_modality", i, key):
            return _test(ours[analysis.lower()]["single"][ours["modalities"][i]], key)
        case ("results", "FRRC", "per_reader_diffs", i, "_row"):
            d = ours["frrc"]["per_reader"][i]
            return f"rdr{ours['readers'].index(d['reader']) + 1}::" + "-".join(
                f"trt{ours['modalities'].index(m) + 1}" for m in d["modalities"]
            )
        case ("results", "FRRC", "per_reader_diffs", i, key):
            return _test(ours["frrc"]["per_reader"][i], key)
    return common_value(ours, path)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def roi_run_value(ours, path):
    """Leaf of one run in rjafroc_datasetROI_clustered.json ``all``: RJafroc or MRMCaov spellings."""
    vc = ours["var_components"]
    excess = max(vc["cov2"] - vc["cov3"], 0.0) - (vc["cov2"] - vc["cov3"])
    match path:
        case ("case_variable" | "cov_method" | "design" | "timing_s",):
            return SKIP
        case ("reader_modality_auc", m, r) if isinstance(r, int):
            return ours["auc"][ours["modalities"][m]][ours["readers"][r]]
        case ("modality_auc", m):
            return ours["modality_auc"][ours["modalities"][m]]
        case ("var_components", "var_TR"):
            return vc["var_tr"] + excess
        case ("var_components", "var_R"):
            return vc["var_r"] - excess / len(ours["modalities"])
        case ("var_components", key) | (_, "var_components", key):
            return vc[VC[key]]
        case (analysis, "diff", key):
            return _test(ours[analysis.lower()]["differences"][0], key)
        case (analysis, "global_test", key):
            res = ours[analysis.lower()]
            return {
                "MS(T)": ours["anova"]["ms_t"],
                "MS(T:R)": ours["anova"]["ms_tr"],
                "Cov1": vc["cov1"],
                "Cov2": vc["cov2"],
                "Cov3": vc["cov3"],
                "Denominator": res["denominator"],
                "F": res.get("f"),
                "X2": res.get("chisq"),
                "p-value": res["p"],
            }.get(key, res.get(key))
    return common_value(ours, path)
