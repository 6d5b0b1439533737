"""Radiomics classifier backend: IBSI-aligned features of the lesion mask -> L1-logistic probability of CRLM.

The model file is one YAML document (its sha256 is the model's identity, like a DL model's weights)::

    name: radiomics-l1-logistic-demo
    version: "1.0"
    extraction: {setting: ..., imageType: ..., featureClass: ...}   # radiomics_params.yaml at training time
    model:
      type: l1-logistic
      features: [original_shape_MeshVolume, ...]   # every extracted feature, in order
      impute: [...]      # training means, replace a NaN feature (undefined for the mask, e.g. a 1-voxel lesion)
      selected: [...]    # the features left after the variance and correlation filters, in order
      mean: [...]        # standardisation of the selected features
      scale: [...]
      coef: [...]        # L1-logistic coefficients on the standardised features (zeros: dropped by the L1)
      intercept: -0.1
    calibration: {method: platt, score: logit, slope: 0.9, intercept: -0.4, fitted_on: ...}   # optional

Inference needs numpy and scipy only (scikit-learn is a training dependency): ``logit = coef . (x - mean) / scale
+ intercept`` on the selected features, the probability its logistic, after Platt scaling ``slope * logit +
intercept`` when the file has a ``calibration`` (fitted on calibration patients by the training command; a file
without one, as written before calibration, gives the plain logistic). ``python -m
inference.pipeline.train_radiomics`` writes the file and its model card; a test checks that this arithmetic gives
scikit-learn's ``predict_proba``.

The lesion mask is the segmented instance matched to the target; when no lesion matched, a sphere of the
manifest's diameter at the manifest centre stands in (as the DL classifier crops at the manifest centre).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference.pipeline.calibration import apply_platt
from inference.pipeline.radiomics_features import extract, feature_names, validate_params
from inference.pipeline.segment import file_sha256

__all__ = ["RadiomicsClassifier", "linear_logit", "load_model_file", "sphere_mask"]


def sphere_mask(
    shape: Sequence[int], spacing_zyx: Sequence[float], centre_index: Sequence[float] | np.ndarray, diameter_mm: float
) -> np.ndarray:
    """A ball of ``diameter_mm`` around ``centre_index`` (at least the nearest voxel)."""
    grids = np.ogrid[tuple(slice(0, int(n)) for n in shape)]
    dist2 = sum(((g - float(c)) * float(s)) ** 2 for g, c, s in zip(grids, centre_index, spacing_zyx, strict=True))
    ball = np.asarray(dist2 <= (float(diameter_mm) / 2.0) ** 2)
    if not ball.any():
        nearest = tuple(int(np.clip(round(float(c)), 0, int(n) - 1)) for c, n in zip(centre_index, shape, strict=True))
        ball = np.zeros(tuple(int(n) for n in shape), dtype=bool)
        ball[nearest] = True
    return ball


def load_model_file(path: Path) -> dict[str, Any]:
    """The YAML model document, checked: extraction settings valid, vectors of matching lengths."""
    import yaml

    with open(path, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    if not isinstance(doc, dict) or not {"name", "version", "extraction", "model"} <= set(doc):
        raise ValueError(f"{path}: expected a radiomics model (name, version, extraction, model)")
    doc["extraction"] = validate_params(doc["extraction"])
    model = doc["model"]
    if model.get("type") != "l1-logistic":
        raise ValueError(f"{path}: model type {model.get('type')!r}, expected 'l1-logistic'")
    if list(model["features"]) != feature_names(doc["extraction"]):
        raise ValueError(f"{path}: the model's feature list does not match its extraction settings")
    n_sel = len(model["selected"])
    if len(model["impute"]) != len(model["features"]) or not all(
        len(model[k]) == n_sel for k in ("mean", "scale", "coef")
    ):
        raise ValueError(f"{path}: model vectors of inconsistent lengths")
    if not set(model["selected"]) <= set(model["features"]):
        raise ValueError(f"{path}: selected features that are not extracted")
    cal = doc.get("calibration")
    if cal is not None and not (
        isinstance(cal, dict)
        and cal.get("method") == "platt"
        and all(isinstance(cal.get(k), int | float) and np.isfinite(cal[k]) for k in ("slope", "intercept"))
    ):
        raise ValueError(f"{path}: calibration must be Platt scaling with a finite slope and intercept")
    return doc


def linear_logit(features: Mapping[str, float], model: Mapping[str, Any]) -> float:
    """The model's logit for one lesion's feature values (NaN -> the training mean)."""
    names = list(model["features"])
    x = np.array([features[n] for n in names], dtype=np.float64)
    x = np.where(np.isfinite(x), x, np.asarray(model["impute"], dtype=np.float64))
    pos = {n: k for k, n in enumerate(names)}
    sel = x[[pos[n] for n in model["selected"]]]
    z = (sel - np.asarray(model["mean"], dtype=np.float64)) / np.asarray(model["scale"], dtype=np.float64)
    return float(z @ np.asarray(model["coef"], dtype=np.float64) + float(model["intercept"]))


class RadiomicsClassifier:
    """A trained radiomics model (``name``, ``version``, ``weights_sha256`` = the model file's sha256)."""

    uses_mask = True  # predict_case passes the matched lesion's mask

    def __init__(self, path: Path, device: str = "cpu") -> None:
        self.weights_path = Path(path)
        if not self.weights_path.is_file():
            raise FileNotFoundError(
                f"{self.weights_path}: radiomics model not found "
                "(train: python -m inference.pipeline.train_radiomics --data DIR --out DIR)"
            )
        self.weights_sha256 = file_sha256(self.weights_path)
        self.doc = load_model_file(self.weights_path)
        self.name = str(self.doc["name"])
        self.version = str(self.doc["version"])
        self.params: dict[str, Any] = self.doc["extraction"]
        self.model: dict[str, Any] = self.doc["model"]
        self.calibration: dict[str, Any] | None = self.doc.get("calibration")
        self.device = "cpu"  # features and a dot product: no accelerator needed, whatever the run's device

    def features(self, hu: np.ndarray, spacing_mm: Sequence[float], mask: np.ndarray) -> dict[str, float]:
        return extract(hu, mask, spacing_mm, self.params)

    def predict(
        self,
        hu: np.ndarray,
        spacing_mm: Sequence[float],
        centre_index: Sequence[float] | np.ndarray,
        diameter_mm: float,
        *,
        z_range: tuple[int, int] | None = None,
        mask: np.ndarray | None = None,
    ) -> tuple[float, np.ndarray]:
        """``(probability of CRLM, [raw logit])`` for the lesion ``mask`` (a sphere of ``diameter_mm`` without one);
        the probability is the Platt-scaled logit's logistic when the model carries a calibration."""
        if mask is None or not np.any(mask):
            mask = sphere_mask(hu.shape, spacing_mm, centre_index, diameter_mm)
        logit = linear_logit(self.features(hu, spacing_mm, mask), self.model)
        return float(apply_platt(logit, self.calibration)), np.array([logit])
