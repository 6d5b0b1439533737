"""Per-case inference time by stage (read, segment, lesions, classify, seg), printed and saved as JSON.

    python -m bench.inference [--cases 6] [--out bench/inference/results.json]            # CPU, phantom UNet
    python -m bench.inference --device cuda --backend totalsegmentator [--series DIR ...]  # a GPU node

Phantom mode generates demo-sized phantoms (40 x 256 x 256, 2.5 x 1.5 x 1.5 mm; seed 424242, not the demo
study's) as DICOM series, runs the shipped phantom UNet and demo classifier on each case (target = the
largest lesion) and also reports per-lesion Dice by size stratum against the phantoms' truth. Goal: <= 5 s
per case on CPU.

TotalSegmentator mode needs the separate venv (requirements-totalseg.txt) and the real weights (Dataset297 and
Dataset591 under $TOTALSEG_WEIGHTS_PATH or $TOTALSEG_HOME_DIR/nnunet/results; they cannot be downloaded on this
network: see the error it prints). It times the pipeline on ``--series`` folders (target = the volume centre,
so the classifier runs on the fallback crop: timing only) or, without ``--series``, on the phantoms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
STAGES = ("read", "segment", "lesions", "classify", "seg")


def _phantom_cases(folder: Path, n: int, seed: int) -> list[dict]:
    from fixtures.phantom import deterministic_uid, make_anatomy, make_phantom, plan_lesions, write_ct_series

    cases = []
    for p in range(n):
        rng = np.random.default_rng([seed, p])
        anatomy = make_anatomy(rng)
        specs = plan_lesions(rng, 3, anatomy)
        ph = make_phantom(rng, specs, anatomy=anatomy)
        series = folder / f"B{p:03d}"
        write_ct_series(
            ph, series, f"B{p:03d}", deterministic_uid(seed, p, "study"), deterministic_uid(seed, p, "series")
        )
        target = int(np.argmax([s.diameter_mm for s in specs]))
        cases.append(
            {
                "series": series,
                "phantom": ph,
                "target": specs[target].center_lps_mm,
                "diameter": specs[target].diameter_mm,
            }
        )
    return cases


def _table(rows: list[dict]) -> str:
    head = f"{'case':<8}" + "".join(f"{s:>10}" for s in STAGES) + f"{'total':>10}  target"
    lines = [head, "-" * len(head)]
    for r in rows:
        t = r["timings"]
        lines.append(
            f"{r['case']:<8}"
            + "".join(f"{t[s]:>10.3f}" for s in STAGES)
            + f"{sum(t.values()):>10.3f}  "
            + ("matched" if r["target_matched"] else "fallback")
        )
    for name, fn in (("median", statistics.median), ("max", max)):
        lines.append(
            f"{name:<8}"
            + "".join(f"{fn([r['timings'][s] for r in rows]):>10.3f}" for s in STAGES)
            + f"{fn([sum(r['timings'].values()) for r in rows]):>10.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inference", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["phantom", "totalsegmentator"], default="phantom")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--seed", type=int, default=424242)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--series", type=Path, nargs="*", default=None, help="series folders (totalsegmentator mode)")
    parser.add_argument("--unet", type=Path, default=REPO / "fixtures" / "models" / "phantom_unet.pt")
    parser.add_argument("--classifier", type=Path, default=REPO / "fixtures" / "models" / "lesion_classifier.pt")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "inference" / "results.json")
    args = parser.parse_args(argv)

    import torch

    from inference.pipeline.classify import Classifier
    from inference.pipeline.evaluate import per_lesion_metrics, summarise_by_stratum
    from inference.pipeline.run import predict_case
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
    classifier = Classifier(args.classifier, device=args.device, threads=args.threads)
    load_s = time.perf_counter() - t0

    rows, lesion_rows = [], []
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        if args.series:
            from imaging.series import read_series

            cases = []
            for s in args.series:
                vol = read_series(s)
                centre = vol.index_to_lps((np.array(vol.shape) - 1) / 2)
                cases.append({"series": s, "phantom": None, "target": tuple(centre), "diameter": 20.0})
        else:
            cases = _phantom_cases(Path(tmp), args.cases, args.seed)
        for n, case in enumerate(cases):
            pred = predict_case(
                case["series"],
                case["target"],
                backend=backend,
                classifier=classifier,
                target_diameter_mm=case["diameter"],
            )
            rows.append(
                {
                    "case": f"case{n}",
                    "timings": pred.timings,
                    "target_matched": pred.target_matched,
                    "probability": round(pred.probability, 4),
                    "n_lesions": len(pred.lesions),
                    "seg_bytes": len(pred.seg_bytes),
                }
            )
            ph = case["phantom"]
            if ph is not None:
                lesion_rows += per_lesion_metrics(
                    pred.labelmap >= 2,
                    ph.lesion_labels,
                    ph.spacing_mm,
                    truth_diameters_mm=[s.diameter_mm for s in ph.lesions],
                )
    table = _table(rows)
    totals = [sum(r["timings"].values()) for r in rows]
    result = {
        "backend": args.backend,
        "device": args.device,
        "threads": args.threads,
        "cases": len(rows),
        "model_load_s": round(load_s, 3),
        "per_case_s": {"median": round(statistics.median(totals), 3), "max": round(max(totals), 3)},
        "per_stage_median_s": {s: round(statistics.median(r["timings"][s] for r in rows), 4) for s in STAGES},
        "goal_s_per_case": 5.0 if args.backend == "phantom" and args.device == "cpu" else None,
        "rows": rows,
        "lesion_dice_by_stratum": summarise_by_stratum(lesion_rows) if lesion_rows else None,
        "models": {
            "segmentation": {"name": backend.name, "version": backend.version, "sha256": backend.weights_sha256},
            "classifier": {"name": classifier.name, "version": classifier.version, "sha256": classifier.weights_sha256},
        },
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "cuda": torch.cuda.is_available(),
        },
    }
    print(table)
    print(
        f"\nmodel load {load_s:.2f} s; per case median {result['per_case_s']['median']:.2f} s, "
        f"max {result['per_case_s']['max']:.2f} s ({args.backend}, {args.device}, {args.threads} threads)"
    )
    if lesion_rows:
        for stratum, s in result["lesion_dice_by_stratum"].items():
            if s["n"]:
                print(
                    f"  {stratum:>6}: n={s['n']:>2} detected {s['detection_rate']:.0%}  Dice mean {s['dice_mean']:.2f}"
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {args.out}")
    return 0
