"""Benchmark: all three OR analyses with jackknife covariance on simulated 10 readers x 2 modalities x N cases.

    python -m bench.analysis [--sizes 200,2000,20000,200000] [--out bench/analysis/results.json]

For each N: wall time of ``analyse()`` on the long table (validation included) and of the analysis of the
already shaped array, peak traced memory of ``analyse()`` (tracemalloc, in a separate run so tracing does
not slow the timed one), and the ratio to the time numpy needs to sort all ratings once, measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import tracemalloc
from pathlib import Path

import numpy as np

from readerstudy.analysis import analyse, analyse_study
from readerstudy.analysis.simulate import roe_metz, to_long

GOALS_S = {2_000: 0.1, 20_000: 1.0, 200_000: 10.0}


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_one(n_cases: int, cov: str, seed: int = 1) -> dict:
    """Time and trace one simulated study of ``n_cases`` cases."""
    rng = np.random.default_rng(seed)
    n_pos = int(0.4 * n_cases)
    study = roe_metz(10, 2, n_cases - n_pos, n_pos, rng, delta=0.1)
    table = to_long(study)
    repeats = 7 if n_cases <= 2_000 else 3 if n_cases <= 20_000 else 1
    ratings = table["rating"].to_numpy()
    sort_s = best_time(lambda: np.sort(ratings), max(repeats, 3))
    analyse_s = best_time(lambda: analyse(table, cov=cov), repeats)
    core_s = best_time(lambda: analyse_study(study, cov=cov), repeats)
    tracemalloc.start()
    analyse(table, cov=cov)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "n_cases": n_cases,
        "n_ratings": int(ratings.size),
        "analyse_s": analyse_s,
        "core_s": core_s,
        "sort_s": sort_s,
        "ratio_to_sort": analyse_s / sort_s,
        "peak_mib": peak / 2**20,
        "peak_bytes_per_rating": peak / ratings.size,
        "goal_s": GOALS_S.get(n_cases),
        "meets_goal": None if n_cases not in GOALS_S or cov != "jackknife" else analyse_s <= GOALS_S[n_cases],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.analysis", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,2000,20000,200000", help="comma-separated case counts N")
    parser.add_argument("--cov", default="jackknife", choices=("jackknife", "delong", "unbiased"))
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")), help="JSON output path")
    args = parser.parse_args(argv)
    rows = []
    header = (
        f"{'N':>8} {'ratings':>9} {'analyse s':>10} {'core s':>8} {'sort s':>8} {'x sort':>7} "
        f"{'peak MiB':>9} {'B/rating':>9} goal (jackknife)"
    )
    print(f"10 readers x 2 modalities, cov={args.cov}, all of RRRC/FRRC/RRFC")
    print(header)
    for n in (int(s) for s in args.sizes.split(",")):
        r = bench_one(n, args.cov)
        rows.append(r)
        goal = "" if r["meets_goal"] is None else f"<= {r['goal_s']} s: {'ok' if r['meets_goal'] else 'MISSED'}"
        print(
            f"{n:>8} {r['n_ratings']:>9} {r['analyse_s']:>10.4f} {r['core_s']:>8.4f} {r['sort_s']:>8.4f} "
            f"{r['ratio_to_sort']:>7.1f} {r['peak_mib']:>9.1f} {r['peak_bytes_per_rating']:>9.0f} {goal}",
            flush=True,
        )
    info = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu_count": os.cpu_count(),
        "cov": args.cov,
        "design": "10 readers x 2 modalities, 40% positive",
        "results": rows,
    }
    Path(args.out).write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0
