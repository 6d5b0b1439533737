"""Train the radiomics CRLM-vs-hemangioma classifier: features of each lesion mask -> L1-logistic regression.

    python -m inference.pipeline.train_radiomics --data DIR --out DIR [--params YAML] [--folds 5]
        [--test-fraction 0.25] [--cal-fraction 0.2] [--seed 7]

``DIR`` has the layout of :func:`fixtures.phantom.generate_demo_study` (``manifest.csv``, the series and, for the
lesion masks, ``masks/<patient>.npz``; without a mask file a sphere of the manifest diameter stands in). For the
demo, train on phantoms of another seed than the demo study's 20261123::

    python -m fixtures.phantom /tmp/cls-train --seed 11 --patients 120 --lesions 360 --atypical-fraction 0.2
    python -m inference.pipeline.train_radiomics --data /tmp/cls-train --out fixtures/models

Method, all splits by patient (no patient on both sides of any split):

1. Features: :mod:`inference.pipeline.radiomics_features` with the settings of ``--params`` (default
   ``radiomics_params.yaml``, IBSI-aligned: 1 mm isotropic resampling, [-100, 400] HU re-segmentation, 25 HU bins,
   no normalisation), on each lesion's reference mask.
2. A ``test-fraction`` of the patients is held out (the patients :func:`~inference.pipeline.train_classifier.
   split_patients` gives every classifier's training command); a ``cal-fraction`` of all patients, drawn from the
   rest, is the calibration set (:func:`~inference.pipeline.train_classifier.split_patients_three`); the remaining
   patients are the development set.
3. The scikit-learn pipeline: mean imputation -> zero-variance filter -> redundancy filter (features ranked by
   univariate AUC, a feature dropped when its Spearman |rho| with a better one exceeds 0.95) -> standardisation ->
   L1-logistic regression (liblinear, balanced class weights), ``C`` chosen from :data:`C_GRID` by the mean AUC of
   an inner patient-grouped 3-fold CV (ties: the smaller C, the sparser model).
4. Cross-validation on the development set (stratified patient-grouped ``--folds``): the out-of-fold probabilities
   of all development lesions are pooled into one CV AUC with the clustered DeLong CI
   (:func:`readerstudy.analysis.model_auc`, patients as clusters); the per-fold AUCs are listed too.
5. The model fitted on the whole development set (C chosen again) is the stored model.
6. Platt scaling of its logit (:func:`inference.pipeline.calibration.fit_platt`) is fitted on the calibration
   patients and stored in the model file (``calibration``; the classifier applies it). The balanced class weights
   shift the fitted intercept away from the data's prevalence, so the raw probability is not calibrated even when
   the ranking is good; the rescaling is monotone and leaves the AUC as it is.
7. The held-out patients give the card's ``validation_metrics``
   (:func:`~inference.pipeline.train_classifier.held_out_metrics`): AUC with the clustered DeLong CI, overall, by
   size stratum and by appearance, accuracy at 0.5, and the calibration (Brier, slope, intercept, ECE) after and
   before scaling.

Writes ``OUT/radiomics_classifier.yaml`` (see :mod:`inference.pipeline.radiomics`) and its model card
``OUT/radiomics_classifier.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_selection import VarianceThreshold
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from inference.pipeline.calibration import fit_calibration
from inference.pipeline.model_card import write_card
from inference.pipeline.radiomics import load_model_file, sphere_mask
from inference.pipeline.radiomics_features import DEFAULT_PARAMS, extract, feature_names, load_params
from inference.pipeline.train_classifier import (
    PHANTOM_LIMITATIONS,
    held_out_metrics,
    lesion_appearance,
    read_masks,
    split_patients_three,
)

NAME = "radiomics-l1-logistic-demo"
VERSION = "1.0"
FILENAME = "radiomics_classifier.yaml"
C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)
CORRELATION_LIMIT = 0.95
LABELS = {"crlm": 1, "hemangioma": 0}


@dataclass
class Lesion:
    patient: str
    case_id: str
    truth: int
    features: dict[str, float]
    seconds: float
    diameter_mm: float
    appearance: str | None = None  # the phantom's look, when its masks record it


def extract_lesions(data: Path, params: dict[str, Any], progress: bool = True) -> list[Lesion]:
    """Features of every manifest lesion (series read once each; the reference mask when ``masks/`` has it)."""
    from tqdm import tqdm

    from imaging.series import read_series

    data = Path(data)
    manifest = data / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: not found (expected the fixtures.phantom study layout)")
    with manifest.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    volumes: dict[str, Any] = {}
    labels: dict[str, np.ndarray | None] = {}
    looks: dict[str, list[str] | None] = {}
    out = []
    for line, row in enumerate(tqdm(rows, desc="radiomics features", disable=not progress), start=2):
        truth = row["truth"].strip().lower()
        if truth not in LABELS:
            raise ValueError(f"{manifest}:{line}: truth {row['truth']!r}, expected one of {sorted(LABELS)}")
        sp = row["series_path"]
        if sp not in volumes:
            volumes = {sp: read_series(data / sp)}  # manifests list a patient's lesions together
        vol = volumes[sp]
        pid = row["patient_id"]
        if pid not in labels:
            mask_file = data / "masks" / f"{pid}.npz"
            labels[pid], looks[pid] = read_masks(mask_file) if mask_file.is_file() else (None, None)
        mask: np.ndarray | None = None
        appearance = None
        if labels[pid] is not None and "-L" in row["case_id"]:
            n = int(row["case_id"].rsplit("-L", 1)[1])
            mask = np.asarray(labels[pid] == n)
            appearance = lesion_appearance(looks[pid], n)
        if mask is None or not mask.any():
            centre = vol.lps_to_index([float(row[f"lesion_{a}_mm"]) for a in "xyz"])
            mask = sphere_mask(vol.hu.shape, vol.spacing_mm, centre, float(row["diameter_mm"]))
        t = time.perf_counter()
        features = extract(vol.hu, mask, vol.spacing_mm, params)
        seconds = time.perf_counter() - t
        out.append(Lesion(pid, row["case_id"], LABELS[truth], features, seconds, float(row["diameter_mm"]), appearance))
    return out


def _univariate_auc(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC of each column (ties count half)."""
    ranks = rankdata(x, axis=0)
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    return (ranks[y == 1].sum(axis=0) - n_pos * (n_pos + 1) / 2) / max(n_pos * n_neg, 1)


class RedundancyFilter(TransformerMixin, BaseEstimator):
    """Greedy: features by decreasing |AUC - 0.5|; one is kept unless its Spearman |rho| with a kept one exceeds
    ``limit``."""

    def __init__(self, limit: float = CORRELATION_LIMIT) -> None:
        self.limit = limit

    def fit(self, x: np.ndarray, y: np.ndarray) -> RedundancyFilter:
        order = np.argsort(-np.abs(_univariate_auc(x, np.asarray(y)) - 0.5), kind="stable")
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = np.atleast_2d(np.nan_to_num(np.corrcoef(rankdata(x, axis=0), rowvar=False), nan=0.0))
        keep: list[int] = []
        for c in order:
            if all(abs(rho[c, k]) <= self.limit for k in keep):
                keep.append(int(c))
        self.support_ = np.array(sorted(keep), dtype=int)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)[:, self.support_]


def make_pipeline(c: float, seed: int) -> Pipeline:
    """The scikit-learn pipeline of the module docstring (step 3) for one ``C``."""
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="mean", keep_empty_features=True)),
            ("variance", VarianceThreshold(0.0)),
            ("redundancy", RedundancyFilter()),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(l1_ratio=1.0, solver="liblinear", C=c, class_weight="balanced",
                                         max_iter=1000, random_state=seed)),
        ]
    )  # fmt: skip


def choose_c(x: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int) -> float:
    """``C`` of the best mean inner-CV AUC (patient-grouped, stratified, 3 folds); 1.0 when no fold can score."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold

    n_splits = min(3, len(set(groups.tolist())))
    if n_splits < 2:
        return 1.0
    splits = list(StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(x, y, groups))
    best, best_auc = 1.0, -1.0
    for c in C_GRID:
        aucs = []
        for tr, va in splits:
            if len(set(y[tr].tolist())) < 2 or len(set(y[va].tolist())) < 2:
                continue
            aucs.append(roc_auc_score(y[va], make_pipeline(c, seed).fit(x[tr], y[tr]).predict_proba(x[va])[:, 1]))
        if aucs and float(np.mean(aucs)) > best_auc + 1e-12:
            best, best_auc = c, float(np.mean(aucs))
    return best


def export_model(pipe: Any, names: Sequence[str]) -> dict[str, Any]:
    """The fitted pipeline as the YAML model's ``model`` block (only the features with a non-zero coefficient)."""
    kept = np.flatnonzero(pipe["variance"].get_support())[pipe["redundancy"].support_]
    coef = pipe["model"].coef_[0]
    nz = np.flatnonzero(coef != 0)
    return {
        "type": "l1-logistic",
        "features": list(names),
        "impute": [float(v) for v in pipe["impute"].statistics_],
        "selected": [str(names[kept[k]]) for k in nz],
        "mean": [float(pipe["scale"].mean_[k]) for k in nz],
        "scale": [float(pipe["scale"].scale_[k]) for k in nz],
        "coef": [float(coef[k]) for k in nz],
        "intercept": float(pipe["model"].intercept_[0]),
    }


def _auc(truth: np.ndarray, probs: np.ndarray, patients: np.ndarray) -> dict[str, Any]:
    from readerstudy.analysis.errors import AnalysisInputError
    from readerstudy.analysis.standalone import model_auc

    try:
        result = model_auc(truth, probs, clusters=patients)
    except AnalysisInputError:  # too few patients per class for the clustered variance: plain DeLong
        result = model_auc(truth, probs)
    return {"auc": result["auc"], "auc_ci_95": result["ci"], "auc_se": result["se"], "auc_method": result["method"]}


def cross_validate(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> dict[str, Any]:
    """Out-of-fold probabilities pooled into one AUC (clustered DeLong CI), and the per-fold AUCs."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold

    n_splits = min(folds, len(set(groups.tolist())))
    oof = np.full(len(y), np.nan)
    fold_aucs = []
    one_class = 0
    for tr, va in StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(x, y, groups):
        if len(set(y[tr].tolist())) < 2:  # tiny data: nothing to learn, an uninformative constant score
            oof[va], one_class = float(y[tr].mean()), one_class + 1
            continue
        pipe = make_pipeline(choose_c(x[tr], y[tr], groups[tr], seed), seed).fit(x[tr], y[tr])
        oof[va] = pipe.predict_proba(x[va])[:, 1]
        if len(set(y[va].tolist())) == 2:
            fold_aucs.append(float(roc_auc_score(y[va], oof[va])))
    return {
        "folds": n_splits,
        "pooled": "out-of-fold probabilities of every development lesion, one AUC",
        **_auc(y, oof, groups),
        "fold_aucs": fold_aucs,
        "fold_auc_mean": float(np.mean(fold_aucs)) if fold_aucs else None,
        "fold_auc_sd": float(np.std(fold_aucs, ddof=1)) if len(fold_aucs) > 1 else None,
        "folds_trained_on_one_class": one_class,
    }


def train(
    data: Path,
    out_dir: Path,
    *,
    params_path: Path = DEFAULT_PARAMS,
    folds: int = 5,
    test_fraction: float = 0.25,
    cal_fraction: float = 0.2,
    seed: int = 7,
    progress: bool = True,
) -> dict[str, Any]:
    """Extract, cross-validate, fit, calibrate, hold out, save the YAML model and its card; return the card."""
    import yaml

    t0 = time.perf_counter()
    params = load_params(params_path)
    names = feature_names(params)
    lesions = extract_lesions(data, params, progress)
    held_out, cal_patients = split_patients_three([le.patient for le in lesions], test_fraction, cal_fraction, seed)
    dev = [le for le in lesions if le.patient not in held_out | cal_patients]
    cal = [le for le in lesions if le.patient in cal_patients]
    test = [le for le in lesions if le.patient in held_out]
    if len({le.truth for le in dev}) < 2 or len({le.truth for le in test}) < 2:
        raise ValueError("need both classes among the development and the held-out lesions; add data or change --seed")

    def arrays(items: list[Lesion]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.array([[le.features[n] for n in names] for le in items], dtype=np.float64)
        return x, np.array([le.truth for le in items]), np.array([le.patient for le in items])

    x_dev, y_dev, g_dev = arrays(dev)
    x_test, y_test, _ = arrays(test)
    cv = cross_validate(x_dev, y_dev, g_dev, folds, seed)
    c = choose_c(x_dev, y_dev, g_dev, seed)
    pipe = make_pipeline(c, seed).fit(x_dev, y_dev)
    model = export_model(pipe, names)
    # the logit the YAML model computes (radiomics.linear_logit; a test checks they agree)
    cal_logits = pipe.decision_function(arrays(cal)[0]) if cal else np.array([])
    calibration, cal_note = fit_calibration(cal_logits, [le.truth for le in cal], len(cal_patients), "logit")
    out = Path(out_dir) / FILENAME
    out.parent.mkdir(parents=True, exist_ok=True)
    header = "# Radiomics CRLM-vs-hemangioma model (inference/pipeline/radiomics.py); card: radiomics_classifier.json\n"
    doc = {"name": NAME, "version": VERSION, "extraction": params, "model": model}
    if calibration:
        doc["calibration"] = calibration
    out.write_text(header + yaml.safe_dump(doc, sort_keys=False, width=120))
    load_model_file(out)  # what inference will read: fail here, not in precompute
    seconds = np.array([le.seconds for le in lesions])
    card = {
        "task": "probability that a liver lesion is a colorectal liver metastasis (vs hemangioma); demo on phantoms",
        "architecture": "IBSI-aligned radiomics (shape, first-order, GLCM; inference/pipeline/radiomics_features.py) "
        "-> mean imputation -> zero-variance filter -> Spearman |rho| <= 0.95 redundancy filter (by univariate AUC) "
        "-> standardisation -> L1-logistic regression (liblinear, balanced class weights, C by inner patient-grouped "
        "3-fold CV)",
        "params": len(model["coef"]) + 1,
        "config": {
            "extraction": params,
            "C": c,
            "C_grid": list(C_GRID),
            "correlation_limit": CORRELATION_LIMIT,
            **({"calibration": calibration} if calibration else {}),
        },
        "features": {
            "extracted": len(names),
            "after_filters": int(pipe["redundancy"].support_.size),
            "selected": dict(zip(model["selected"], model["coef"], strict=True)),
        },
        "training_data": f"{Path(data).resolve().name}: {len(dev)} lesions of {len(set(g_dev.tolist()))} patients "
        f"(development: cross-validation and the stored fit)",
        "calibration_data": f"{len(cal)} lesions of {len(cal_patients)} other patients",
        "validation_data": f"{len(test)} lesions of {len(held_out)} other patients held out "
        f"({int(y_test.sum())} crlm, {int((1 - y_test).sum())} hemangioma)",
        "cross_validation": cv,
        "training": {
            "feature_seconds_per_lesion": {"mean": float(seconds.mean()), "max": float(seconds.max())},
            "seconds": round(time.perf_counter() - t0, 1),
        },
        "calibration": cal_note,
        "seed": seed,
        "validation_metrics": held_out_metrics(test, pipe.decision_function(x_test), calibration),
        "intended_use": "demo and tests on synthetic phantoms; NOT for real CT",
        "limitations": PHANTOM_LIMITATIONS,
    }
    return write_card(out, NAME, VERSION, card)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.pipeline.train_radiomics", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--data", type=Path, required=True, help="folder with manifest.csv, series/ (and masks/)")
    parser.add_argument("--out", type=Path, required=True, help=f"folder for {FILENAME} and its model card")
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="radiomics settings (YAML)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--test-fraction", type=float, default=0.25, help="held-out patients (validation)")
    parser.add_argument("--cal-fraction", type=float, default=0.2, help="patients for Platt scaling (0: none)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    card = train(
        args.data, args.out, params_path=args.params, folds=args.folds, test_fraction=args.test_fraction,
        cal_fraction=args.cal_fraction, seed=args.seed, progress=not args.no_progress,
    )  # fmt: skip
    keys = ("name", "features", "cross_validation", "validation_metrics", "sha256")
    print(json.dumps({k: card[k] for k in keys}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
