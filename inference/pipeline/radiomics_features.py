"""Radiomics features of one lesion mask: an IBSI-aligned subset with pyradiomics' definitions and names.

Why not pyradiomics itself: the registry's pyradiomics 3.1.0 (the newest) does not install on Python 3.11. Its
only file is an sdist whose ``pyproject.toml`` says version ``3.0.1a1``, so pip discards it ("inconsistent
version: expected '3.1.0', but metadata has '3.0.1a1'"); built from that sdist directly, the C extension fails
(``radiomics/src/_cmatrices.c:6:10: fatal error: cmatrices.h: No such file or directory``: the headers are not in
the sdist). pyradiomics 3.0.1 has wheels for CPython <= 3.9 only and an sdist whose ``setup.py`` imports numpy
without declaring it, so a plain ``pip install`` fails ("No module named 'numpy'"); with
``--no-build-isolation`` it builds against numpy 2.4 and runs, but a dependency that needs a hand-made build
step (and SimpleITK, 50 MB) for three feature classes is not worth it. The numbers here were checked against that
hand-built pyradiomics 3.0.1 (the reference values in ``tests/inference/test_radiomics.py`` come from it) and
against hand computations.

The subset (:data:`FEATURES`), all on the original image (``imageType: Original``):

* **shape** (3D, on the morphological mask): mesh volume and surface area from marching cubes at 0.5 on the
  zero-padded mask (scikit-image; the same mesh as pyradiomics on the test shapes), voxel volume, surface to
  volume ratio, sphericity, maximum 3D diameter (between mesh vertices), major/minor/least axis lengths
  (4 sqrt of the eigenvalues of the voxel centres' covariance), elongation, flatness.
* **firstorder** (on the re-segmented intensity mask, raw HU): energy, total energy, entropy and uniformity of
  the discretised histogram (log2), minimum, 10th/90th percentiles, maximum, mean, median, interquartile range,
  range, mean and robust (10-90 %) mean absolute deviation, RMS, skewness, kurtosis (pyradiomics: not the excess
  kurtosis; IBSI's is this minus 3), variance.
* **glcm**: 3D, distance 1, 13 directions, symmetric, one matrix per direction (pairs of voxels both inside the
  intensity mask), gray levels absent from the ROI removed, features per direction and then averaged
  (IBSI "3D averaged"; pyradiomics' default). 22 features (:data:`FEATURES`); not MCC, sum average (twice the
  joint average for a symmetric GLCM), sum variance (= cluster tendency), dissimilarity/homogeneity (aliases).

Pre-processing (IBSI chapter 2; settings in ``radiomics_params.yaml``): crop to the mask's bounding box plus
``padDistance`` voxels; resample to ``resampledPixelSpacing`` (x, y, z mm; grid centres aligned) with the
``interpolator`` for the image and trilinear interpolation of the mask kept where >= ``maskThreshold`` (a lesion
too small to survive that keeps its nearest-neighbour mask); re-segment the intensity mask to ``resegmentRange``;
no normalisation; fixed bin width discretisation ``floor((x - x_min) / binWidth) + 1`` with ``x_min`` the
re-segmentation lower bound (IBSI), or, without a range, the ROI minimum rounded down to a multiple of the bin
width (pyradiomics). Features that are undefined for a mask (a single voxel has no GLCM pair and no axes) are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "DEFAULT_PARAMS",
    "FEATURES",
    "discretise",
    "extract",
    "feature_names",
    "firstorder_features",
    "glcm_features",
    "glcm_matrices",
    "load_params",
    "preprocess",
    "shape_features",
    "validate_params",
]

DEFAULT_PARAMS = Path(__file__).with_name("radiomics_params.yaml")
FEATURES: dict[str, tuple[str, ...]] = {
    "shape": (
        "MeshVolume", "VoxelVolume", "SurfaceArea", "SurfaceVolumeRatio", "Sphericity", "Maximum3DDiameter",
        "MajorAxisLength", "MinorAxisLength", "LeastAxisLength", "Elongation", "Flatness",
    ),
    "firstorder": (
        "Energy", "TotalEnergy", "Entropy", "Minimum", "10Percentile", "90Percentile", "Maximum", "Mean", "Median",
        "InterquartileRange", "Range", "MeanAbsoluteDeviation", "RobustMeanAbsoluteDeviation", "RootMeanSquared",
        "Skewness", "Kurtosis", "Variance", "Uniformity",
    ),
    "glcm": (
        "Autocorrelation", "JointAverage", "ClusterProminence", "ClusterShade", "ClusterTendency", "Contrast",
        "Correlation", "DifferenceAverage", "DifferenceEntropy", "DifferenceVariance", "JointEnergy", "JointEntropy",
        "Imc1", "Imc2", "Idm", "Idmn", "Id", "Idn", "InverseVariance", "MaximumProbability", "SumEntropy",
        "SumSquares",
    ),
}  # fmt: skip
SETTINGS = {
    "resampledPixelSpacing", "interpolator", "maskThreshold", "padDistance", "normalize", "resegmentRange",
    "binWidth", "distances", "symmetricalGLCM", "voxelArrayShift", "label",
}  # fmt: skip
INTERPOLATORS = {"sitkNearestNeighbor": 0, "sitkLinear": 1, "sitkBSpline": 3}
EPS = float(np.spacing(1))  # pyradiomics' epsilon inside log2
# One direction of each of the 13 pairs of opposite 3D neighbour offsets (z, y, x).
DIRECTIONS = [(dz, dy, dx) for dz in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dz, dy, dx) > (0, 0, 0)]


def load_params(path: Path | str = DEFAULT_PARAMS) -> dict[str, Any]:
    """The extraction settings of a pyradiomics-style YAML parameter file, checked by :func:`validate_params`."""
    import yaml

    with open(path, encoding="utf-8") as fh:
        return validate_params(yaml.safe_load(fh))


def validate_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse what this implementation does not do (rather than silently computing something else)."""
    if not isinstance(params, Mapping):
        raise ValueError("radiomics parameters: expected a mapping with setting, imageType, featureClass")
    setting = _checked_setting(dict(params.get("setting") or {}))
    image_types = dict(params.get("imageType") or {"Original": {}})
    if set(image_types) != {"Original"}:
        raise ValueError(f"radiomics imageType {sorted(image_types)}: only Original is implemented")
    classes = dict(params.get("featureClass") or {})
    for name, wanted in classes.items():
        if name not in FEATURES:
            raise ValueError(f"radiomics featureClass {name!r}: expected one of {sorted(FEATURES)}")
        missing = sorted(set(wanted or FEATURES[name]) - set(FEATURES[name]))
        if missing:
            raise ValueError(f"radiomics {name} feature(s) {missing} not implemented")
    return {"setting": setting, "imageType": image_types, "featureClass": classes}


def _checked_setting(setting: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(setting) - SETTINGS)
    if unknown:
        raise ValueError(f"radiomics setting(s) {unknown} not implemented (known: {sorted(SETTINGS)})")
    if setting.get("normalize"):
        raise ValueError("radiomics setting normalize: true is not implemented (CT numbers are calibrated)")
    if list(setting.get("distances", [1])) != [1]:
        raise ValueError("radiomics setting distances: only [1] is implemented")
    if not setting.get("symmetricalGLCM", True):
        raise ValueError("radiomics setting symmetricalGLCM: only true is implemented")
    if setting.get("interpolator", "sitkLinear") not in INTERPOLATORS:
        raise ValueError(f"radiomics setting interpolator: expected one of {sorted(INTERPOLATORS)}")
    if float(setting.get("binWidth", 25)) <= 0:
        raise ValueError("radiomics setting binWidth: expected a positive number")
    return setting


def feature_names(params: Mapping[str, Any]) -> list[str]:
    """``original_<class>_<Feature>`` (pyradiomics' names) of every enabled feature, in a fixed order."""
    classes = params.get("featureClass") or {}
    return [
        f"original_{cls}_{name}"
        for cls in FEATURES
        if cls in classes
        for name in FEATURES[cls]
        if name in (classes[cls] or FEATURES[cls])
    ]


def preprocess(
    hu: np.ndarray, mask: np.ndarray, spacing_zyx: Sequence[float], setting: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float, float]]:
    """``(image, morphological mask, intensity mask, spacing z/y/x)`` after crop, resampling and re-segmentation."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("radiomics: the lesion mask is empty")
    pad = int(setting.get("padDistance", 5))
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(axis=0) - pad, 0)
    hi = np.minimum(idx.max(axis=0) + pad + 1, mask.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    image = np.asarray(hu[box], dtype=np.float64)
    morph = mask[box]
    spacing = np.asarray(spacing_zyx, dtype=np.float64)
    target = setting.get("resampledPixelSpacing")
    if target is not None:
        new = np.asarray(target, dtype=np.float64)[::-1]  # pyradiomics gives x, y, z
        n_old = np.array(image.shape)
        n_new = np.maximum(np.ceil(n_old * spacing / new - 1e-9).astype(int), 1)
        axes = [
            (n - 1) / 2.0 + (np.arange(m) - (m - 1) / 2.0) * s_new / s_old
            for n, m, s_new, s_old in zip(n_old, n_new, new, spacing, strict=True)
        ]
        grid = np.meshgrid(*axes, indexing="ij")
        order = INTERPOLATORS[str(setting.get("interpolator", "sitkLinear"))]
        image = ndimage.map_coordinates(image, grid, order=order, mode="nearest")
        fraction = ndimage.map_coordinates(morph.astype(np.float64), grid, order=1, mode="constant", cval=0.0)
        resampled = fraction >= float(setting.get("maskThreshold", 0.5)) - 1e-9
        if not resampled.any():  # too small to keep half a voxel anywhere: nearest neighbour
            resampled = ndimage.map_coordinates(morph.astype(np.uint8), grid, order=0, mode="constant") > 0
        if not resampled.any():
            raise ValueError("radiomics: the lesion mask vanished on resampling")
        morph, spacing = resampled, new
    intensity = morph.copy()
    reseg = setting.get("resegmentRange")
    if reseg is not None:
        low, high = float(reseg[0]), float(reseg[1])
        intensity &= (image >= low) & (image <= high)
    return image, morph, intensity, (float(spacing[0]), float(spacing[1]), float(spacing[2]))


def discretise(values: np.ndarray, bin_width: float, low: float | None = None) -> np.ndarray:
    """Fixed bin width gray levels ``floor((x - low) / w) + 1`` (``low``: the ROI minimum rounded down to a multiple
    of ``w`` when not given, as pyradiomics)."""
    values = np.asarray(values, dtype=np.float64)
    if low is None:
        low = float(values.min() - np.mod(values.min(), bin_width))
    return (np.floor((values - low) / bin_width) + 1).astype(np.int64)


def shape_features(mask: np.ndarray, spacing_zyx: Sequence[float]) -> dict[str, float]:
    """3D shape features of a boolean mask (spacing in mm, z/y/x)."""
    from scipy.spatial import ConvexHull
    from scipy.spatial.distance import pdist
    from skimage.measure import marching_cubes

    mask = np.asarray(mask, dtype=bool)
    spacing = np.asarray(spacing_zyx, dtype=np.float64)
    n = int(mask.sum())
    verts, faces, _, _ = marching_cubes(np.pad(mask, 1).astype(np.float32), 0.5, spacing=tuple(spacing))
    tri = verts[faces]
    area = float(0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum())
    volume = float(abs(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()) / 6.0)
    try:
        hull = verts[ConvexHull(verts).vertices]
    except Exception:  # flat or degenerate: every vertex
        hull = verts
    diameter = float(pdist(hull).max()) if len(hull) > 1 else 0.0
    coords = np.argwhere(mask) * spacing
    if n > 1:
        centred = coords - coords.mean(axis=0)
        eig = np.sort(np.clip(np.linalg.eigvalsh(centred.T @ centred / n), 0.0, None))[::-1]
    else:
        eig = np.zeros(3)
    major, minor, least = (4.0 * math.sqrt(e) for e in eig)
    return {
        "MeshVolume": volume,
        "VoxelVolume": n * float(np.prod(spacing)),
        "SurfaceArea": area,
        "SurfaceVolumeRatio": area / volume if volume > 0 else math.nan,
        "Sphericity": (36.0 * math.pi * volume**2) ** (1.0 / 3.0) / area if area > 0 else math.nan,
        "Maximum3DDiameter": diameter,
        "MajorAxisLength": major,
        "MinorAxisLength": minor,
        "LeastAxisLength": least,
        "Elongation": math.sqrt(eig[1] / eig[0]) if eig[0] > 0 else math.nan,
        "Flatness": math.sqrt(eig[2] / eig[0]) if eig[0] > 0 else math.nan,
    }


def firstorder_features(
    values: np.ndarray, levels: np.ndarray, voxel_volume_mm3: float, shift: float = 0.0
) -> dict[str, float]:
    """First-order features of the ROI's HU ``values`` and their gray ``levels`` (pyradiomics' definitions)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return dict.fromkeys(FEATURES["firstorder"], math.nan)
    _, counts = np.unique(levels, return_counts=True)
    p = counts / counts.sum()
    mean = float(x.mean())
    dev = x - mean
    m2 = float(np.mean(dev**2))
    energy = float(np.sum((x + shift) ** 2))
    p10, p25, p50, p75, p90 = (float(v) for v in np.percentile(x, [10, 25, 50, 75, 90]))
    robust = x[(x >= p10) & (x <= p90)]
    return {
        "Energy": energy,
        "TotalEnergy": energy * voxel_volume_mm3,
        "Entropy": float(-np.sum(p * np.log2(p + EPS))),
        "Minimum": float(x.min()),
        "10Percentile": p10,
        "90Percentile": p90,
        "Maximum": float(x.max()),
        "Mean": mean,
        "Median": p50,
        "InterquartileRange": p75 - p25,
        "Range": float(x.max() - x.min()),
        "MeanAbsoluteDeviation": float(np.mean(np.abs(dev))),
        "RobustMeanAbsoluteDeviation": float(np.mean(np.abs(robust - robust.mean()))),
        "RootMeanSquared": math.sqrt(energy / x.size),
        "Skewness": float(np.mean(dev**3)) / m2**1.5 if m2 > 0 else 0.0,
        "Kurtosis": float(np.mean(dev**4)) / m2**2 if m2 > 0 else 0.0,
        "Variance": m2,
        "Uniformity": float(np.sum(p**2)),
    }


def glcm_matrices(levels: np.ndarray, roi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric GLCMs ``[L, L, A]`` (counts, distance 1, one per direction with a pair) over the gray levels present
    in the ROI (returned too). ``levels``: gray levels >= 1 where ``roi``."""
    g = np.where(roi, levels, 0).astype(np.int64)
    present = np.unique(g[roi])
    index = np.zeros(int(g.max()) + 1, dtype=np.int64)
    index[present] = np.arange(present.size)
    n = present.size
    padded = np.pad(g, 1)
    core = padded[1:-1, 1:-1, 1:-1]
    mats = []
    for dz, dy, dx in DIRECTIONS:
        shifted = padded[1 + dz : padded.shape[0] - 1 + dz, 1 + dy : padded.shape[1] - 1 + dy,
                         1 + dx : padded.shape[2] - 1 + dx]  # fmt: skip
        ok = (core > 0) & (shifted > 0)
        if not ok.any():
            continue
        flat = index[core[ok]] * n + index[shifted[ok]]
        m = np.bincount(flat, minlength=n * n).reshape(n, n).astype(np.float64)
        mats.append(m + m.T)
    if not mats:
        return np.zeros((n, n, 0)), present
    return np.stack(mats, axis=-1), present


def glcm_features(matrices: np.ndarray, gray_levels: np.ndarray) -> dict[str, float]:
    """GLCM features per direction, averaged over directions (pyradiomics' definitions; ``Ng`` = the largest gray
    level present, as pyradiomics uses in Idmn/Idn)."""
    if matrices.shape[-1] == 0:
        return dict.fromkeys(FEATURES["glcm"], math.nan)
    p = matrices / matrices.sum(axis=(0, 1), keepdims=True)
    g = np.asarray(gray_levels, dtype=np.float64)
    ng = float(g.max())
    i, j = g[:, None, None], g[None, :, None]
    px, py = p.sum(axis=1), p.sum(axis=0)  # [L, A]
    ux, uy = (g[:, None] * px).sum(axis=0), (g[:, None] * py).sum(axis=0)  # [A]
    sx = np.sqrt((((g[:, None] - ux) ** 2) * px).sum(axis=0))
    sy = np.sqrt((((g[:, None] - uy) ** 2) * py).sum(axis=0))
    diff = np.abs(i - j)[..., 0]
    add = (i + j)[..., 0]
    k_diff = np.arange(0, int(ng))
    k_sum = np.arange(2, 2 * int(ng) + 1)
    p_diff = np.stack([p[diff == k].sum(axis=0) for k in k_diff])  # [K, A]
    p_sum = np.stack([p[add == k].sum(axis=0) for k in k_sum])
    hxy = -(p * np.log2(p + EPS)).sum(axis=(0, 1))
    hx = -(px * np.log2(px + EPS)).sum(axis=0)
    hy = -(py * np.log2(py + EPS)).sum(axis=0)
    pxpy = px[:, None, :] * py[None, :, :]
    hxy1 = -(p * np.log2(pxpy + EPS)).sum(axis=(0, 1))
    hxy2 = -(pxpy * np.log2(pxpy + EPS)).sum(axis=(0, 1))
    centred = add[..., None] - ux - uy
    corm = (p * (i - ux) * (j - uy)).sum(axis=(0, 1))
    corr = np.where(sx * sy == 0, 1.0, corm / (sx * sy + EPS))
    div = np.fmax(hx, hy)
    imc1 = np.where(div == 0, 0.0, (hxy - hxy1) / np.where(div == 0, 1.0, div))
    imc2 = np.where(hxy2 == hxy, 0.0, np.sqrt(np.clip(1 - np.exp(-2 * (hxy2 - hxy)), 0.0, None)))
    kd = k_diff[:, None].astype(np.float64)
    diff_avg = (kd * p_diff).sum(axis=0)
    per_direction = {
        "Autocorrelation": (p * i * j).sum(axis=(0, 1)),
        "JointAverage": ux,
        "ClusterProminence": (p * centred**4).sum(axis=(0, 1)),
        "ClusterShade": (p * centred**3).sum(axis=(0, 1)),
        "ClusterTendency": (p * centred**2).sum(axis=(0, 1)),
        "Contrast": (p * (i - j) ** 2).sum(axis=(0, 1)),
        "Correlation": corr,
        "DifferenceAverage": diff_avg,
        "DifferenceEntropy": -(p_diff * np.log2(p_diff + EPS)).sum(axis=0),
        "DifferenceVariance": (p_diff * (kd - diff_avg) ** 2).sum(axis=0),
        "JointEnergy": (p**2).sum(axis=(0, 1)),
        "JointEntropy": hxy,
        "Imc1": imc1,
        "Imc2": imc2,
        "Idm": (p_diff / (1 + kd**2)).sum(axis=0),
        "Idmn": (p_diff / (1 + kd**2 / ng**2)).sum(axis=0),
        "Id": (p_diff / (1 + kd)).sum(axis=0),
        "Idn": (p_diff / (1 + kd / ng)).sum(axis=0),
        "InverseVariance": (p_diff[1:] / kd[1:] ** 2).sum(axis=0),
        "MaximumProbability": p.max(axis=(0, 1)),
        "SumEntropy": -(p_sum * np.log2(p_sum + EPS)).sum(axis=0),
        "SumSquares": (p * (i - ux) ** 2).sum(axis=(0, 1)),
    }
    return {name: float(np.mean(v)) for name, v in per_direction.items()}


def extract(
    hu: np.ndarray, mask: np.ndarray, spacing_zyx: Sequence[float], params: Mapping[str, Any]
) -> dict[str, float]:
    """Every enabled feature of the lesion ``mask`` on the HU volume ``hu`` (``[z, y, x]``, spacing in mm)."""
    setting = params.get("setting") or {}
    image, morph, roi, spacing = preprocess(hu, mask, spacing_zyx, setting)
    classes = params.get("featureClass") or {}
    out: dict[str, float] = {}
    if "shape" in classes:
        out.update({f"original_shape_{k}": v for k, v in shape_features(morph, spacing).items()})
    values = image[roi]
    bin_width = float(setting.get("binWidth", 25))
    reseg = setting.get("resegmentRange")
    low = float(reseg[0]) if reseg is not None else None
    levels = np.zeros(image.shape, dtype=np.int64)
    if values.size:
        levels[roi] = discretise(values, bin_width, low)
    if "firstorder" in classes:
        first = firstorder_features(
            values, levels[roi], float(np.prod(spacing)), float(setting.get("voxelArrayShift", 0))
        )
        out.update({f"original_firstorder_{k}": v for k, v in first.items()})
    if "glcm" in classes:
        if values.size:
            glcm = glcm_features(*glcm_matrices(levels, roi))
        else:
            glcm = dict.fromkeys(FEATURES["glcm"], math.nan)
        out.update({f"original_glcm_{k}": v for k, v in glcm.items()})
    return {name: out[name] for name in feature_names(params)}
