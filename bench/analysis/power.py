"""Benchmark: power and sample size from a pilot, as the command line and in process.

    python -m bench.analysis.power [--repeats 7] [--out bench/analysis/results_power.json]

The pilot is a simulated Roe-Metz study of Van Dyke's size (5 readers x 2 modalities x 114 cases). Wall times
are the best of ``--repeats`` runs and are also given as ratios to baselines measured in the same run: the
start-up of a bare ``python -c pass`` and of one importing numpy, pandas and scipy.special (what the command
line cannot do without) for the command lines, one empirical AUC covariance (jackknife) of the pilot for the
in-process calls. CPU seconds (user + system) are printed too: on a busy machine wall time counts waiting.
The goal: the 10 x 10 (readers x cases) power grid from the command line, start-up included, in under 1 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import ROOT, machine_facts, package_version, write_json
from readerstudy.analysis import auc_covariance, cases_for_power, pilot_variance, power_grid
from readerstudy.analysis.simulate import roe_metz, to_long

GOAL_GRID_CLI_S = 1.0
GRID_READERS = "3,4,5,6,7,8,9,10,11,12"
GRID_CASES = "100,200,300,400,500,600,700,800,900,1000"


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def command(args: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one process, start-up included; a failure stops the benchmark.

    CPU time is what the machine's load changes least: on a busy machine the wall time also counts waiting."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def best_command(args: list[str], repeats: int) -> tuple[float, float]:
    runs = [command(args) for _ in range(repeats)]
    return min(w for w, _ in runs), min(c for _, c in runs)


def imported_modules(csv: Path) -> dict[str, bool]:
    """Which heavy modules the grid command line imports (scipy.stats should not be one)."""
    code = (
        "import sys; from readerstudy.analysis.power import main; "
        f"main([{str(csv)!r}, '--readers', '6', '--cases', '200', '--effect', '0.05', "
        f"'--grid-readers', {GRID_READERS!r}, '--grid-cases', {GRID_CASES!r}]); "
        "print(','.join(m for m in ('scipy.stats', 'scipy.special', 'pandas') if m in sys.modules), file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    loaded = set(proc.stderr.strip().splitlines()[-1].split(",")) if proc.returncode == 0 else set()
    return {m: m in loaded for m in ("scipy.stats", "scipy.special", "pandas")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.analysis.power", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs per figure (the best is kept)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_power.json")), help="JSON output")
    args = parser.parse_args(argv)

    study = roe_metz(5, 2, 69, 45, np.random.default_rng(2), delta=0.3)
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "pilot.csv"
        to_long(study).to_csv(csv, index=False)
        base = ["-m", "readerstudy.analysis.power", str(csv), "--readers", "6", "--effect", "0.05"]
        grid = ["--cases", "200", "--grid-readers", GRID_READERS, "--grid-cases", GRID_CASES]
        cli = {
            "python_startup": ["-c", "pass"],
            "import_numpy_pandas_scipy_special": ["-c", "import numpy, pandas, scipy.special"],
            "cli_power": [*base, "--cases", "200"],
            "cli_grid_10x10": [*base, *grid],
            "cli_sample_size": [*base, "--target-power", "0.8"],
        }
        measured = {name: best_command(a, args.repeats) for name, a in cli.items()}
        wall = {name: w for name, (w, _) in measured.items()}
        cpu = {name: c for name, (_, c) in measured.items()}
        modules = imported_modules(csv)
        pilot = pilot_variance(csv)
        flat = study.ratings.reshape(-1, study.ratings.shape[-1])
        inproc = {
            "auc_covariance (baseline)": lambda: auc_covariance(flat, study.truth, "jackknife"),
            "pilot_variance (read CSV + components)": lambda: pilot_variance(csv),
            "power_grid 10x10, 3 analyses": lambda: power_grid(pilot, range(3, 13), range(100, 1001, 100), 0.05),
            "power_grid 100x100, 3 analyses": lambda: power_grid(pilot, range(2, 102), range(50, 5050, 50), 0.05),
            "cases_for_power, 3 analyses": lambda: cases_for_power(pilot, 6, 0.8, 0.05),
        }
        calls = {name: best_time(fn, args.repeats) for name, fn in inproc.items()}

    startup, cov_s = wall["python_startup"], calls["auc_covariance (baseline)"]
    load = os.getloadavg()[0]
    print(f"pilot: simulated 5 readers x 2 modalities x 114 cases; best of {args.repeats}; load average {load:.1f}")
    imports = wall["import_numpy_pandas_scipy_special"]
    print(f"{'command line':<36} {'wall s':>7} {'CPU s':>7} {'x start-up':>10} {'x imports':>9}")
    for name, s in wall.items():
        print(f"{name:<36} {s:>7.3f} {cpu[name]:>7.3f} {s / startup:>10.1f} {s / imports:>9.2f}")
    print(f"{'in process':<40} {'s':>8} {'x auc_covariance':>18}")
    for name, s in calls.items():
        print(f"{name:<40} {s:>8.4f} {s / cov_s:>18.1f}")
    meets = wall["cli_grid_10x10"] <= GOAL_GRID_CLI_S
    print(f"10 x 10 grid from the command line: {wall['cli_grid_10x10']:.3f} s wall, {cpu['cli_grid_10x10']:.3f} s "
          f"CPU, goal <= {GOAL_GRID_CLI_S} s: {'ok' if meets else 'MISSED'}; modules imported: {modules}")  # fmt: skip
    write_json(
        Path(args.out),
        {
            **machine_facts(),
            "numpy": np.__version__,
            "scipy": package_version("scipy"),
            "pandas": package_version("pandas"),
            "repeats": args.repeats,
            "load_average_1min": load,
            "command_line_s": wall,
            "command_line_cpu_s": cpu,
            "command_line_x_startup": {k: v / startup for k, v in wall.items()},
            "command_line_x_imports": {k: v / imports for k, v in wall.items()},
            "in_process_s": calls,
            "in_process_x_auc_covariance": {k: v / cov_s for k, v in calls.items()},
            "modules_imported_by_grid_cli": modules,
            "goal_grid_cli_s": GOAL_GRID_CLI_S,
            "meets_goal": meets,
        },
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
