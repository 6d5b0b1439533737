"""Turn a run's result JSON (and the study's reader metadata) into the rows the report shows (the template only
formats them)."""

from typing import Any

from readerstudy.studies.models import Membership, Study

ANALYSIS_NAMES = {
    "rrrc": "Random readers, random cases (RRRC, primary)",
    "frrc": "Fixed readers, random cases (FRRC)",
    "rrfc": "Random readers, fixed cases (RRFC)",
}


def _difference_rows(test: dict) -> list[dict]:
    rows = []
    for d in test.get("differences", []):
        rows.append(
            {
                "label": f"{d['modalities'][0]} − {d['modalities'][1]}",
                "estimate": d.get("estimate"),
                "se": d.get("se"),
                "df": d.get("df"),
                "ci_low": (d.get("ci") or [None, None])[0],
                "ci_high": (d.get("ci") or [None, None])[1],
                "p": d.get("p"),
                "p_holm": d.get("p_holm"),
            }
        )
    return rows


def analysis_sections(mrmc: dict, analyses: list[str]) -> list[dict]:
    """One section per stratum (overall first), each with the requested OR analyses."""
    sections = []
    blocks = [("All lesions", mrmc)] + [(f"Stratum {k} mm", v) for k, v in (mrmc.get("strata") or {}).items()]
    for title, block in blocks:
        if "error" in block:
            sections.append({"title": title, "error": block["error"]})
            continue
        tests = []
        for name in analyses:
            test = block.get(name)
            if not test:
                continue
            statistic = ("F", test.get("f")) if "f" in test else ("χ²", test.get("chisq"))
            tests.append(
                {
                    "name": ANALYSIS_NAMES[name],
                    "key": name,
                    "statistic_name": statistic[0],
                    "statistic": statistic[1],
                    "df1": test.get("df1", test.get("df")),
                    "df2": test.get("df2"),
                    "p": test.get("p"),
                    "p_holm": test.get("p_holm"),
                    "differences": _difference_rows(test),
                    "single": [
                        {
                            "modality": m,
                            "auc": s.get("auc"),
                            "se": s.get("se"),
                            "df": s.get("df"),
                            "ci_low": (s.get("ci") or [None, None])[0],
                            "ci_high": (s.get("ci") or [None, None])[1],
                        }
                        for m, s in (test.get("single") or {}).items()
                    ],
                }
            )
        sections.append(
            {
                "title": title,
                "n_cases": block.get("n_cases"),
                "n_positive": block.get("n_positive"),
                "n_negative": block.get("n_negative"),
                "n_readers": block.get("n_readers"),
                "modality_auc": list((block.get("modality_auc") or {}).items()),
                "var_components": list((block.get("var_components") or {}).items()),
                "tests": tests,
            }
        )
    return sections


def reader_auc_rows(mrmc: dict) -> tuple[list[str], list[dict]]:
    """Readers' AUCs: one row per reader, one column per modality."""
    auc = mrmc.get("auc") or {}
    modalities = list(auc)
    readers = list(next(iter(auc.values()), {}))
    rows = [{"reader": r, "values": [auc[m][r] for m in modalities]} for r in readers]
    if modalities:
        rows.append({"reader": "mean", "values": [mrmc["modality_auc"][m] for m in modalities]})
    return modalities, rows


def model_rows(model: dict) -> list[dict[str, Any]]:
    if "error" in model:
        return []
    rows = []
    for name, m in model.items():
        if name == "readers_minus_model":
            continue
        rows.append({"group": name, **m, "ci_low": (m.get("ci") or [None, None])[0],
                     "ci_high": (m.get("ci") or [None, None])[1]})  # fmt: skip
    return rows


def reader_profiles(study: Study) -> list[dict[str, Any]]:
    """What a paper reports about its readers, one row each, under the labels the analysis uses (user names)."""
    return [
        {"reader": username, "specialty": specialty, "years_experience": years, "training": training}
        for username, specialty, years, training in Membership.objects.filter(study=study, role=Membership.Role.READER)
        .order_by("user__username")
        .values_list("user__username", "specialty", "years_experience", "training")
    ]
