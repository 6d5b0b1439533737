"""What the DL output did to the readers: how each reader's rating of a case moved between the unaided and the
aided read, split by whether the DL output was right or wrong.

For every reader and case read in both modalities (crossover or sequential; pairs come from the same reader and
case), with the plan's threshold T on the rating scale:

- the reader's call is positive when rating >= T; the DL's call is positive when 100 * probability >= T (the
  probability on the 0-100 rating scale), so one threshold defines both;
- the DL output is **right** when its call equals the truth, **wrong** otherwise;
- the pair is **helped** when the unaided call was wrong and the aided call right, **harmed** when the unaided
  call was right and the aided one wrong, **unchanged** when both calls are the same;
- a **switch** is a change of call across T; a switch **towards the DL** ends on the DL's call;
- the **change towards the DL** is (aided - unaided) when the DL's call is positive and (unaided - aided) when it
  is negative: positive values moved towards the DL's answer, negative values away from it.

Confidence intervals (95 % by default): per reader, Wilson intervals for proportions and a t interval over cases
for the mean change; overall (readers pooled, each pair weighted equally), a two-way bootstrap that resamples
readers and patients (cases clustered by patient when a patient column is given) with a fixed seed, percentile
intervals. No peer program has these analytics; they are descriptive, not a test of the AUC difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from readerstudy.analysis.api import plain
from readerstudy.analysis.errors import AnalysisInputError

BOOTSTRAP_REPLICATES = 2000
BOOTSTRAP_SEED = 20261203


@dataclass(frozen=True)
class Pairs:
    """One row per reader x case read in both modalities."""

    reader: np.ndarray
    case: np.ndarray
    patient: np.ndarray
    truth: np.ndarray
    unaided: np.ndarray
    aided: np.ndarray
    dl_probability: np.ndarray


def paired_reads(df: pd.DataFrame, unaided: str, aided: str, *, probability_column: str = "model_probability") -> Pairs:
    """The unaided and aided rating of each reader x case (both must exist), with the case's DL probability."""
    needed = {"reader", "modality", "case", "truth", "rating", probability_column}
    missing = sorted(needed - set(df.columns))
    if missing:
        raise AnalysisInputError(f"missing column(s) {missing} for the AI-interaction analysis")
    modalities = set(df["modality"].astype(str))
    for m in (unaided, aided):
        if m not in modalities:
            raise AnalysisInputError(f"modality {m!r} is not in the reads (found {sorted(modalities)})")
    data = df.assign(modality=df["modality"].astype(str), reader=df["reader"].astype(str), case=df["case"].astype(str))
    wide = data.pivot_table(index=["reader", "case"], columns="modality", values="rating", aggfunc="first")
    wide = wide[[unaided, aided]].dropna()
    if wide.empty:
        raise AnalysisInputError(f"no reader read a case in both {unaided!r} and {aided!r}")
    cases = data.drop_duplicates("case").set_index("case")
    probability = data.loc[data["modality"] == aided].groupby("case")[probability_column].first()
    case_ids = wide.index.get_level_values("case")
    dl = pd.to_numeric(probability.reindex(case_ids), errors="coerce").to_numpy(dtype=float)
    if np.isnan(dl).any():
        raise AnalysisInputError(f"case {case_ids[int(np.isnan(dl).argmax())]!r} has no DL probability")
    patient = cases["patient"].reindex(case_ids) if "patient" in cases.columns else pd.Series(case_ids)
    return Pairs(
        reader=wide.index.get_level_values("reader").to_numpy(),
        case=np.asarray(case_ids),
        patient=patient.astype(str).to_numpy(),
        truth=cases["truth"].reindex(case_ids).astype(int).to_numpy(),
        unaided=wide[unaided].to_numpy(dtype=float),
        aided=wide[aided].to_numpy(dtype=float),
        dl_probability=dl,
    )


def _measures(p: Pairs, threshold: float) -> dict[str, np.ndarray]:
    """Per pair: the indicators and the signed change (arrays over pairs)."""
    truth = p.truth == 1
    dl_call = 100.0 * p.dl_probability >= threshold
    before, after = p.unaided >= threshold, p.aided >= threshold
    toward = np.where(dl_call, p.aided - p.unaided, p.unaided - p.aided)
    return {
        "dl_right": dl_call == truth,
        "helped": (before != truth) & (after == truth),
        "harmed": (before == truth) & (after != truth),
        "unchanged": before == after,
        "switched": before != after,
        "switched_toward_dl": (before != after) & (after == dl_call),
        "change_toward_dl": toward,
    }


COUNTS = ("helped", "harmed", "unchanged", "switched", "switched_toward_dl")


def _wilson(k: int, n: int, z: float) -> list[float | None]:
    if n == 0:
        return [None, None]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def _t_ci(values: np.ndarray, alpha: float) -> list[float | None]:
    from scipy.special import stdtrit

    n = values.size
    if n < 2:
        return [None, None]
    half = float(stdtrit(n - 1, 1 - alpha / 2)) * float(values.std(ddof=1)) / math.sqrt(n)
    mean = float(values.mean())
    return [mean - half, mean + half]


def _summary(m: dict[str, np.ndarray], keep: np.ndarray, z: float, alpha: float) -> dict:
    n = int(keep.sum())
    out: dict = {"n_pairs": n}
    for name in COUNTS:
        k = int(m[name][keep].sum())
        out[name] = {"count": k, "rate": k / n if n else None, "ci": _wilson(k, n, z)}
    change = m["change_toward_dl"][keep]
    out["change_toward_dl"] = {"mean": float(change.mean()) if n else None, "ci": _t_ci(change, alpha)}
    return out


def _bootstrap(p: Pairs, m: dict[str, np.ndarray], groups: dict[str, np.ndarray], alpha: float) -> dict:
    """Percentile CIs of the pooled rates and mean change: readers and patients resampled together."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    readers, reader_idx = np.unique(p.reader, return_inverse=True)
    patients, patient_idx = np.unique(p.patient, return_inverse=True)
    stats: dict[str, dict[str, list[float]]] = {g: {name: [] for name in (*COUNTS, "change_toward_dl")} for g in groups}
    for _ in range(BOOTSTRAP_REPLICATES):
        # Weight of a pair = times its reader was drawn x times its patient was drawn (two-way bootstrap).
        reader_draws = np.bincount(rng.integers(0, readers.size, readers.size), minlength=readers.size)
        patient_draws = np.bincount(rng.integers(0, patients.size, patients.size), minlength=patients.size)
        w = reader_draws[reader_idx] * patient_draws[patient_idx]
        for g, keep in groups.items():
            wg = w * keep
            total = wg.sum()
            for name in COUNTS:
                stats[g][name].append(float((wg * m[name]).sum() / total) if total else np.nan)
            stats[g]["change_toward_dl"].append(float((wg * m["change_toward_dl"]).sum() / total) if total else np.nan)
    lo, hi = 100 * alpha / 2, 100 * (1 - alpha / 2)
    return {
        g: {name: [float(np.nanpercentile(v, lo)), float(np.nanpercentile(v, hi))] for name, v in s.items()}
        for g, s in stats.items()
    }


def ai_interaction(
    df: pd.DataFrame,
    *,
    unaided: str,
    aided: str,
    threshold: float,
    probability_column: str = "model_probability",
    alpha: float = 0.05,
) -> dict:
    """Helped / harmed / unchanged counts, switch rates and the mean change towards the DL's answer, per reader and
    overall, each split by whether the DL output was right or wrong (``all``, ``dl_right``, ``dl_wrong``)."""
    from scipy.special import ndtri

    if not math.isfinite(threshold):
        raise AnalysisInputError(f"threshold {threshold!r}: expected a finite rating")
    pairs = paired_reads(df, unaided, aided, probability_column=probability_column)
    m = _measures(pairs, threshold)
    z = float(ndtri(1 - alpha / 2))
    groups = {"all": np.ones_like(m["dl_right"]), "dl_right": m["dl_right"], "dl_wrong": ~m["dl_right"]}
    overall = {g: _summary(m, keep, z, alpha) for g, keep in groups.items()}
    for g, cis in _bootstrap(pairs, m, groups, alpha).items():
        for name, ci in cis.items():
            overall[g][name]["ci"] = ci  # pooled over readers: the two-way bootstrap, not Wilson's
    per_reader = {
        r: {g: _summary(m, keep & (pairs.reader == r), z, alpha) for g, keep in groups.items()}
        for r in sorted(set(pairs.reader))
    }
    return plain(
        {
            "unaided": unaided,
            "aided": aided,
            "threshold": threshold,
            "alpha": alpha,
            "n_readers": len(per_reader),
            "n_pairs": int(pairs.reader.size),
            "n_cases": int(np.unique(pairs.case).size),
            "dl_accuracy": float(m["dl_right"].mean()),
            "overall": overall,
            "readers": per_reader,
            "bootstrap": {
                "replicates": BOOTSTRAP_REPLICATES,
                "seed": BOOTSTRAP_SEED,
                "resampled": "readers x patients",
            },
        }
    )
