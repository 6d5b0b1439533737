"""Per-case inference time of each backend (the segmentation, then each lesion classifier), as ratios to a reference
operation timed in the same run; printed with a progress bar and saved as JSON.

    python -m bench.inference [--cases 6] [--threads 2] [--classifiers densenet-crops,radiomics,...]
    python -m bench.inference --device cuda [--backend totalsegmentator] [--series DIR ...]     # a GPU node

**Cases.** Phantom mode (default) generates demo-sized multi-phase phantoms with the demo study's generator (seed
424242, not the demo study's; 40 x 256 x 256 at 2.5 x 1.5 x 1.5 mm, plus arterial and delayed series), 3 lesions
per patient; each patient is one case whose target is its largest lesion. ``--series`` times real series folders
instead (target = the volume centre, so the classifiers run on the fallback crop: timing only; the multi-series
classifier is left out, a bare folder has no phases).

**What is timed, per case,** through the product's own path, :func:`inference.pipeline.run.predict_case` once per
classifier on the same read volume: ``read`` (the primary series; ``read_others``: the further phases, which only
the multi-series classifier needs), ``segment`` (the segmentation backend, once per case: the later calls reuse
it, as precompute does per series), ``lesions`` (instances and target match), ``classify`` (each backend; first
case warmed up before timing), ``seg`` (labelmap + DICOM SEG). Per backend: the median and maximum per-case
seconds and the median's ratio to the **baseline**, a fixed torch operation (a 3D convolution, 8 -> 8 channels,
3x3x3, on a 1 x 8 x 32 x 96 x 96 tensor, on the run's device and threads) timed before every case in the same
process: the ratios carry across machines and loads better than seconds do, and say what share of a case each
backend costs. ``radiomics`` is numpy (features and a dot product): it runs on the CPU whatever ``--device``.

**Devices.** ``--device cuda`` moves every torch model and tensor to the GPU (the same device argument that
``manage.py precompute --device`` and ``task_worker --device`` pass to ``inference.precompute.load_models``) and
fails at once, exit 2, when torch sees no GPU. TotalSegmentator needs its venv and real weights (see the error).
Goal on CPU: <= 5 s per case for the phantom pipeline.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "fixtures" / "models"
STAGES = ("read", "segment", "lesions", "classify", "seg")
PHASES = ("arterial", "delayed")
PRIMARY_ROLE = "portal-venous"
# inference.precompute.load_classifier's files (that module is the Django layer: the bench loads the pipeline's).
CLASSIFIERS: dict[str, str] = {
    "densenet-crops": "lesion_classifier.pt",
    "radiomics": "radiomics_classifier.yaml",
    "slice-topk": "slice_classifier.pt",
    "multi-series": "multiseries_classifier.pt",
}


def load_classifier(name: str, models: Path, device: str, threads: int) -> Any:
    """One lesion classifier backend from ``models`` on ``device``."""
    path = models / CLASSIFIERS[name]
    if name == "radiomics":
        from inference.pipeline.radiomics import RadiomicsClassifier

        return RadiomicsClassifier(path)  # numpy: the CPU whatever the device
    if name == "slice-topk":
        from inference.pipeline.slice_classifier import SliceClassifier

        return SliceClassifier(path, device=device, threads=threads)
    if name == "multi-series":
        from inference.pipeline.multiseries import MultiSeriesClassifier

        return MultiSeriesClassifier(path, device=device, threads=threads)
    from inference.pipeline.classify import Classifier

    return Classifier(path, device=device, threads=threads)


def reference_op(device: str) -> Callable[[], float]:
    """The baseline: a fixed 3D convolution on ``device``; the callable runs it once and returns its seconds."""
    import torch

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 8, 32, 96, 96, generator=gen).to(device)
    w = torch.randn(8, 8, 3, 3, 3, generator=gen).to(device)

    def run() -> float:
        t = time.perf_counter()
        with torch.inference_mode():
            float(torch.nn.functional.conv3d(x, w, padding=1).sum())  # .item(): waits for the device
        return time.perf_counter() - t

    run()  # warm-up (allocations, kernel selection)
    return run


class SegmentOnce:
    """The segmentation backend, run once per volume and timed; predict_case's later calls reuse the result."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.name, self.version, self.weights_sha256 = backend.name, backend.version, backend.weights_sha256
        self.device = getattr(backend, "device", "cpu")
        self.seconds = 0.0
        self._key: tuple | None = None
        self._seg: Any = None

    def segment(self, volume: Any, workdir: Path) -> Any:
        key = tuple(volume.file_sha256)
        if key != self._key:
            t = time.perf_counter()
            self._seg, self._key = self.backend.segment(volume, workdir), key
            self.seconds = time.perf_counter() - t
        return self._seg

    def forget(self) -> None:
        """Segment the next volume again, even the same one (after the warm-up)."""
        self._key = None


def phantom_cases(folder: Path, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` multi-phase phantom patients (the demo study's generator); the target is each one's largest lesion."""
    from fixtures.phantom import generate_demo_study

    manifest = generate_demo_study(folder, seed, n_patients=n, n_lesions=3 * n, extra_series_roles=PHASES)
    with manifest.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    cases = []
    for pid in dict.fromkeys(r["patient_id"] for r in rows):
        lesions = [r for r in rows if r["patient_id"] == pid]  # label n is case <pid>-L<n>, in order
        target = max(lesions, key=lambda r: float(r["diameter_mm"]))
        extra = dict(part.split("=", 1) for part in target["extra_series"].split(";") if part)
        masks = np.load(folder / "masks" / f"{pid}.npz")
        cases.append(
            {
                "case": pid,
                "series": folder / target["series_path"],
                "others": {role: folder / path for role, path in extra.items()},
                "target": tuple(float(target[f"lesion_{a}_mm"]) for a in "xyz"),
                "diameter": float(target["diameter_mm"]),
                "truth_labels": masks["lesion_labels"],
                "truth_diameters": [float(r["diameter_mm"]) for r in lesions],
            }
        )
    return cases


def series_cases(folders: Sequence[Path]) -> list[dict[str, Any]]:
    from imaging.series import read_series

    cases = []
    for n, folder in enumerate(folders):
        vol = read_series(folder)
        centre = vol.index_to_lps((np.array(vol.shape) - 1) / 2)
        cases.append({"case": f"series{n}", "series": folder, "others": {}, "target": tuple(centre), "diameter": 20.0})
    return cases


def time_case(
    case: dict[str, Any], seg: SegmentOnce, classifiers: dict[str, Any], baseline: Callable[[], float]
) -> dict[str, Any]:
    """One case: the baseline (median of 3), the reads, and predict_case once per classifier."""
    from imaging.series import read_series
    from inference.pipeline.run import predict_case

    base = statistics.median(baseline() for _ in range(3))
    t = time.perf_counter()
    vol = read_series(case["series"])
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    others = {role: read_series(folder) for role, folder in case["others"].items()}
    read_others_s = time.perf_counter() - t
    row: dict[str, Any] = {"case": case["case"], "baseline_s": base, "read_s": read_s, "read_others_s": read_others_s}
    row["spacing_mm"] = vol.spacing_mm
    row["classify_s"], row["probability"] = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-segment-") as work:
        for name, clf in classifiers.items():
            pred = predict_case(
                case["series"], case["target"], backend=seg, classifier=clf, target_diameter_mm=case["diameter"],
                workdir=Path(work), volume=vol, series=others, primary_role=PRIMARY_ROLE,
            )  # fmt: skip
            row["classify_s"][name] = pred.timings["classify"]
            row["probability"][name] = round(pred.probability, 4)
            if "segment_s" not in row:  # the first call segmented: its stages are the case's
                row.update(
                    segment_s=seg.seconds, lesions_s=pred.timings["lesions"], seg_s=pred.timings["seg"],
                    target_matched=pred.target_matched, n_lesions=len(pred.lesions), labelmap=pred.labelmap,
                )  # fmt: skip
    return row


def summarise(rows: list[dict[str, Any]], names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per backend: median and max seconds per case, and the median's ratio to the median baseline."""
    base = statistics.median(r["baseline_s"] for r in rows)
    series: dict[str, list[float]] = {
        "read": [r["read_s"] for r in rows],
        "read_others": [r["read_others_s"] for r in rows],
        "segmentation": [r["segment_s"] for r in rows],
        "lesions": [r["lesions_s"] for r in rows],
        "seg": [r["seg_s"] for r in rows],
    }
    for name in names:
        series[name] = [r["classify_s"][name] for r in rows]
    return {
        k: {
            "median_s": round(statistics.median(v), 4),
            "max_s": round(max(v), 4),
            "x_baseline": round(statistics.median(v) / base, 3),
        }
        for k, v in series.items()
    }


def case_totals(rows: list[dict[str, Any]], name: str) -> list[float]:
    """What precompute spends per case with classifier ``name`` (its further series' read only when it needs it)."""
    return [
        r["read_s"] + r["segment_s"] + r["lesions_s"] + r["classify_s"][name] + r["seg_s"]
        + (r["read_others_s"] if name == "multi-series" else 0.0)
        for r in rows
    ]  # fmt: skip


def table(summary: dict[str, dict[str, float]], base: float) -> str:
    head = f"{'stage / backend':<16}{'median s':>10}{'max s':>10}{'x baseline':>12}"
    lines = [head, "-" * len(head), f"{'baseline':<16}{base:>10.4f}{'':>10}{1.0:>12.2f}"]
    lines += [f"{k:<16}{v['median_s']:>10.4f}{v['max_s']:>10.4f}{v['x_baseline']:>12.2f}" for k, v in summary.items()]
    return "\n".join(lines)


def check_device(device: str) -> str | None:
    """Why ``device`` cannot run here, or None."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        return "--device cuda: torch sees no CUDA device on this machine (run on a GPU node, or --device cpu)"
    return None


def main(argv: list[str] | None = None) -> int:  # noqa: C901 (one linear script: arguments, models, cases, report)
    parser = argparse.ArgumentParser(prog="python -m bench.inference", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=["phantom", "totalsegmentator"], default="phantom")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--seed", type=int, default=424242)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--classifiers", default=",".join(CLASSIFIERS), help="comma-separated backends to time")
    parser.add_argument("--series", type=Path, nargs="*", default=None, help="series folders instead of phantoms")
    parser.add_argument("--models", type=Path, default=MODELS, help="folder of the model files")
    parser.add_argument("--unet", type=Path, default=MODELS / "phantom_unet.pt")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "inference" / "results.json")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    names = [n for n in args.classifiers.split(",") if n]
    unknown = sorted(set(names) - set(CLASSIFIERS))
    if unknown or not names:
        parser.error(f"--classifiers {','.join(unknown)}: expected some of {', '.join(CLASSIFIERS)}")
    problem = check_device(args.device)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    if args.series and "multi-series" in names:
        names.remove("multi-series")
        print("--series: the multi-series classifier is left out (a bare series folder has no phases)", file=sys.stderr)

    import torch
    from tqdm import tqdm

    from bench.harness import machine_facts, write_json
    from inference.pipeline.evaluate import per_lesion_metrics, summarise_by_stratum
    from inference.pipeline.segment import PhantomUNetBackend, TotalSegmentatorBackend, TotalSegmentatorError

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    if args.backend == "phantom":
        backend = PhantomUNetBackend(args.unet, device=args.device, threads=args.threads)
    else:
        try:
            backend = TotalSegmentatorBackend(device=args.device, threads=args.threads)
        except TotalSegmentatorError as exc:
            print(f"cannot run the TotalSegmentator benchmark:\n{exc}", file=sys.stderr)
            return 2
    classifiers = {n: load_classifier(n, args.models, args.device, args.threads) for n in names}
    load_s = time.perf_counter() - t0
    baseline = reference_op(args.device)
    seg = SegmentOnce(backend)

    rows, lesion_rows = [], []
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        cases = series_cases(args.series) if args.series else phantom_cases(Path(tmp), args.cases, args.seed)
        time_case(cases[0], seg, classifiers, baseline)  # warm-up: first-call costs are no per-case cost
        seg.forget()
        bar = tqdm(cases, desc=f"inference ({args.backend}, {args.device})", unit="case", disable=args.no_progress)
        for case in bar:
            row = time_case(case, seg, classifiers, baseline)
            labelmap, spacing = row.pop("labelmap"), row.pop("spacing_mm")
            if "truth_labels" in case:
                lesion_rows += per_lesion_metrics(
                    labelmap >= 2, case["truth_labels"], spacing, truth_diameters_mm=case["truth_diameters"]
                )
            rows.append(row)
            bar.set_postfix_str(f"{case['case']}: segment {row['segment_s']:.2f} s")

    summary = summarise(rows, names)
    base = statistics.median(r["baseline_s"] for r in rows)
    per_case = {n: statistics.median(case_totals(rows, n)) for n in names}
    result = {
        "backend": args.backend,
        "device": args.device,
        "threads": args.threads,
        "cases": len(rows),
        "model_load_s": round(load_s, 3),
        "baseline": {
            "what": "torch conv3d 8->8 channels, 3x3x3, input 1x8x32x96x96, on the run's device; median of 3 per case",
            "median_s": round(base, 4),
        },
        "per_backend": summary,
        "per_case_pipeline_s": {n: round(v, 3) for n, v in per_case.items()},
        "per_case_pipeline_x_baseline": {n: round(v / base, 2) for n, v in per_case.items()},
        "goal_s_per_case": 5.0 if args.backend == "phantom" and args.device == "cpu" else None,
        "rows": [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows],
        "lesion_dice_by_stratum": summarise_by_stratum(lesion_rows) if lesion_rows else None,
        "models": {
            "segmentation": {"name": backend.name, "version": backend.version, "sha256": backend.weights_sha256},
            **{
                n: {"name": c.name, "version": c.version, "sha256": c.weights_sha256, "device": c.device}
                for n, c in classifiers.items()
            },
        },
        "environment": {
            **machine_facts(),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "cuda": torch.cuda.is_available(),
            "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
    }
    print(table(summary, base))
    print(
        "\nper case (read + segment + lesions + classify + seg), median: "
        + ", ".join(f"{n} {v:.2f} s ({v / base:.1f}x)" for n, v in per_case.items())
        + f"\nmodel load {load_s:.2f} s; {len(rows)} cases, {args.backend}, {args.device}, {args.threads} threads"
    )
    if lesion_rows:
        for stratum, s in result["lesion_dice_by_stratum"].items():
            if s["n"]:
                rate, dice = s["detection_rate"], s["dice_mean"]
                print(f"  {stratum:>6}: n={s['n']:>2} detected {rate:.0%}  Dice mean {dice:.2f}")
    write_json(args.out, result, default=float)
    print(f"wrote {args.out}")
    return 0
