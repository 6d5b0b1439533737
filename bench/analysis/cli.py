"""Benchmark: the analysis command line on a simulated 20 000-case study, start-up included.

    python -m bench.analysis.cli [--cases 20000] [--repeats 5] [--out bench/analysis/results_cli.json]

A Roe-Metz study (``readerstudy.analysis.simulate``: 10 readers x 2 modalities x N cases, 40% positive) is written
to a temporary CSV, and ``python -m readerstudy.analysis CSV`` (AUC, jackknife, RRRC/FRRC/RRFC, the printed report)
is run ``--repeats`` times, as are, in the same run, the baselines ``python -c pass`` (interpreter start-up) and
``python -c "import numpy, pandas"`` (the imports the command line cannot do without: pandas reads the CSV), and
the command line for sensitivity at a threshold. Figures are the best wall and the best CPU (user + system)
seconds; on a busy machine the wall time also counts waiting for a core, CPU time much less. Also measured: the
numpy sort of all ratings in process, and the cumulative import time of numpy, pandas, scipy and the analysis
API in the command line (``python -X importtime``; None: not imported). The goal: at most 1 s wall for the AUC
command line, start-up included.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import ROOT, machine_facts, package_version, write_json
from readerstudy.analysis.simulate import roe_metz, to_long

GOAL_S = 1.0


def command(args: list[str], cwd: Path = ROOT) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall and CPU (user + system) seconds of one process, start-up included; a failure stops the benchmark."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), proc


def best(args: list[str], repeats: int, cwd: Path = ROOT) -> dict[str, float]:
    runs = [command(args, cwd)[:2] for _ in range(repeats)]
    walls = sorted(w for w, _ in runs)
    return {"wall_s": walls[0], "median_wall_s": walls[len(walls) // 2], "cpu_s": min(c for _, c in runs)}


WATCHED = ("numpy", "pandas", "scipy", "scipy.special", "scipy.stats", "readerstudy.analysis.api")


def imports(csv: Path) -> dict[str, object]:
    """Cumulative import seconds (-X importtime) of the heavy packages the command line loads, wherever imported."""
    _, _, proc = command(["-X", "importtime", "-m", "readerstudy.analysis", str(csv)])
    cumulative: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[1].strip().isdigit():
            cumulative.setdefault(parts[2].strip(), int(parts[1]) / 1e6)
    return {name: cumulative.get(name) for name in WATCHED}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.analysis.cli", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000, help="simulated cases N (default 20000)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure (the best is kept)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_cli.json")), help="JSON output path")
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        help="another checkout (e.g. `git worktree add /tmp/old <commit>`) whose command line is timed in the same run",
    )
    args = parser.parse_args(argv)

    n_pos = int(0.4 * args.cases)
    study = roe_metz(10, 2, args.cases - n_pos, n_pos, np.random.default_rng(1), delta=0.1)
    ratings = study.ratings.ravel()
    sorts = []
    for _ in range(5):
        start = time.perf_counter()
        np.sort(ratings)
        sorts.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "ratings.csv"
        to_long(study).to_csv(csv, index=False)
        figures = {
            "python_pass": best(["-c", "pass"], args.repeats),
            "import_numpy_pandas": best(["-c", "import numpy, pandas"], args.repeats),
            "cli_auc": best(["-m", "readerstudy.analysis", str(csv)], args.repeats),
            "cli_sensitivity": best(
                ["-m", "readerstudy.analysis", str(csv), "--fom", "sensitivity", "--threshold", "1"], args.repeats
            ),
        }
        if args.baseline_tree:
            figures["baseline_tree_cli_auc"] = best(
                ["-m", "readerstudy.analysis", str(csv)], args.repeats, cwd=args.baseline_tree.resolve()
            )
        loaded = imports(csv)
        csv_mib = csv.stat().st_size / 2**20
    cli = figures["cli_auc"]
    result = {
        **machine_facts(),
        "numpy": np.__version__,
        "pandas": package_version("pandas"),
        "baseline_tree": str(args.baseline_tree) if args.baseline_tree else None,
        "design": f"10 readers x 2 modalities x {args.cases} cases, 40% positive, jackknife, RRRC/FRRC/RRFC",
        "n_ratings": int(ratings.size),
        "csv_mib": csv_mib,
        "repeats": args.repeats,
        "sort_s": min(sorts),
        "figures": figures,
        "cli_minus_python_start_s": cli["wall_s"] - figures["python_pass"]["wall_s"],
        "import_s": loaded,
        "goal_s": GOAL_S,
        "meets_goal": cli["wall_s"] <= GOAL_S,
    }
    print(f"{result['design']}: {ratings.size} ratings, CSV {csv_mib:.1f} MiB; numpy sort {min(sorts):.3f} s")
    print(f"{'':28} {'best wall s':>11} {'median s':>9} {'best CPU s':>10}")
    for name, f in figures.items():
        print(f"{name:28} {f['wall_s']:>11.3f} {f['median_wall_s']:>9.3f} {f['cpu_s']:>10.3f}")
    print(f"command line minus python start-up: {result['cli_minus_python_start_s']:.3f} s")
    shown = ", ".join(f"{k} {'not imported' if v is None else f'{v:.3f} s'}" for k, v in loaded.items())
    print(f"imports (cumulative, -X importtime): {shown}")
    print(f"goal <= {GOAL_S} s wall, start-up included: {'ok' if result['meets_goal'] else 'MISSED'}")
    write_json(Path(args.out), result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
