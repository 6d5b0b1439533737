"""Scale benchmark: launch, statisticians' exports and the analysis run at 10 000 to 200 000 items on PostgreSQL.

    python -m bench.scale [--sizes 10000,50000,100000,200000] [--readers 20] [--formats csv,imrmc,jafroc,mrmcaov]
                          [--full-analysis-max 10000] [--pg-url postgres://postgres@127.0.0.1:5432/readerstudy_scale]
                          [--out bench/scale/results.json] [--no-progress]

Items = readers x cases x 2 modalities: the readers are fixed (20) and the cases vary (250, 1 250, 2 500, 5 000 for
the default sizes), two lesions per patient, a crossover design (2 sessions per reader), as in the study the
platform was built for. Goal at 200 000 items: launch <= 30 s, every export <= 30 s, memory linear in the items.

For each size, in a fresh PostgreSQL database (``CREATE DATABASE ... TEMPLATE`` of one migrated once per run), each
step runs in its own Python process (``DEBUG=false``, the immediate task backend, MEDIA_ROOT in a temp folder):

1. ``setup`` (not a measured step; its time is reported): users, the study, its modalities and members through
   the real studies actions; then, in bulk (``bulk_create``), one patient per two cases with one image-series row
   each (every row points at the same tiny 5-slice series in storage, so readiness finds it readable; no DICOM per
   case), the cases (diameters 3-60 mm, all three size strata), their primary case-series rows, truth (40 %
   positive) and one stand-in DL prediction per case, so the aided modality has one and launch needs no
   acceptance. The import path (DICOM per case, de-identification) is not measured here. Then ``ANALYZE``, as
   autovacuum does soon after such a load in production (without statistics PostgreSQL plans the reads table's
   joins for a handful of rows).
2. ``launch``: ``readerstudy.reading.actions.launch_study`` (the real action: readiness, the stored schedule, every
   session and item, the audit event).
3. ``reads``: set-up, not measured: one read per item, bulk-inserted (``bulk_create`` of ``Read`` rows, ratings
   and reading times from the product's own simulation ``readerstudy.results.simulate.simulate_ratings``, the
   shown prediction stored with aided reads as ``submit_read`` does). ``submit_read`` one read at a time (or the
   ``simulate_reads`` command) would take hours at this size and is measured by ``bench.load``; bulk reads write
   no ``submit_read`` audit events. Then ``ANALYZE``, the sessions are marked started and finished and the study
   is closed through ``studies.actions.close_study``.
4. ``table``: ``readerstudy.results.table.reads_table`` alone (every export and analysis run starts with it).
5. ``export-<kind>``, one per format: ``results.jobs.request_export`` as a statistician, which runs the export
   task at once (immediate backend): the reads table, the file, storage, the finish event.
6. ``analysis-or``: ``results.runs.run_analysis`` on the reads table: the OR analyses (RRRC, FRRC, RRFC;
   jackknife clustered by patient) overall and per size stratum, and the DL model's own AUC.
7. ``analysis``, up to ``--full-analysis-max`` items only: the whole run as a statistician starts it
   (``results.jobs.start_analysis``): step 6 plus the reading-time model (a statsmodels mixed model with crossed
   reader and case effects, whose dense solves grow with the cube of the cases: minutes at 10 000 items, beyond
   reach at 200 000), the ROC and forest figures (PNG and SVG) and the finish event.

Per step: wall time (``time.perf_counter``), CPU time of the step's process (user + system; PostgreSQL's own
server processes not included: on a shared machine CPU time varies less than wall time), SQL statements (counted
through ``connection.execute_wrapper``, not logged; launch's COPY is not among them) and memory: the peak
resident set of the step's process during the step above its resident set just before it
(``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after minus before; the process has imported everything the step
uses and collected garbage first, so the peak before the step is the baseline). PostgreSQL's memory is not in it.
Growth: time and memory per item, and the ratio at the largest size to the smallest, against the ratio of the
sizes (20 for 200 000 / 10 000): a ratio near it is linear, one above it worse than linear.

Prints a table and writes JSON next to itself (machine facts, PostgreSQL version, load average, parameters, every
step of every size). Each size's database is dropped after it, the template and the temp folder at the end.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.harness import ROOT, machine_facts, package_version, write_json
from bench.load.pg import drop_db, ensure_pg, pg_connect, pg_facts, recreate_db, with_db

DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/readerstudy_scale"
DEFAULT_SIZES = "10000,50000,100000,200000"
FORMATS = ("csv", "imrmc", "jafroc", "mrmcaov")
MODALITIES = 2
LESIONS_PER_PATIENT = 2
GOAL_S = {"launch": 30.0, "export": 30.0}
GOAL_ITEMS = 200_000
STEP_TIMEOUT_S = 1800
STUDY_NAME = "Scale bench"
ADMIN, STATISTICIAN = "scale-admin", "scale-statistician"


# --- the steps (each in its own process) ---------------------------------------------------------------------------


class Step:
    """Time, SQL statements and peak memory above the baseline of one measured block."""

    def __init__(self) -> None:
        self.queries = 0
        self.result: dict[str, Any] = {}

    def _count(self, execute, sql, params, many, context):
        self.queries += 1
        return execute(sql, params, many, context)

    def __enter__(self) -> Step:
        from django.db import connection

        gc.collect()
        self._wrapper = connection.execute_wrapper(self._count)
        self._wrapper.__enter__()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self._rss0 = usage.ru_maxrss  # KiB on Linux
        self._cpu0 = usage.ru_utime + usage.ru_stime
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        seconds = time.perf_counter() - self._t0
        usage = resource.getrusage(resource.RUSAGE_SELF)
        peak = usage.ru_maxrss
        self._wrapper.__exit__(None, None, None)
        self.result.update(
            seconds=round(seconds, 3),
            cpu_s=round(usage.ru_utime + usage.ru_stime - self._cpu0, 3),
            queries=self.queries,
            peak_mib=round(peak / 1024, 1),
            mem_mib=round((peak - self._rss0) / 1024, 1),
        )


def _study_and_users():
    from django.contrib.auth import get_user_model

    from readerstudy.studies.models import Study

    User = get_user_model()
    return Study.objects.get(name=STUDY_NAME), User.objects.get(username=ADMIN), User.objects.get(username=STATISTICIAN)


def step_setup(n_cases: int, n_readers: int, seed: int, progress: bool) -> dict:
    import numpy as np
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import transaction
    from tqdm import tqdm

    from fixtures.manifests import write_series
    from inference.models import Prediction
    from readerstudy.studies import actions
    from readerstudy.studies.models import Case, CaseSeries, ImageSeries, Patient, Truth
    from readerstudy.studies.roles import DEFAULT_SERIES_ROLE

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    User = get_user_model()
    admin = User.objects.create_superuser(ADMIN, password=None)
    statistician = User.objects.create_user(STATISTICIAN, password=None)
    unusable = make_password(None)  # nobody logs in: one unusable hash for all
    readers = User.objects.bulk_create(
        [User(username=f"scale-reader{i:02d}", password=unusable) for i in range(1, n_readers + 1)]
    )
    study = actions.create_study(admin, STUDY_NAME, design="crossover", washout_days=28, seed=seed)
    actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False)
    actions.add_modality(admin, study, "aided", "DL-assisted", shows_dl=True)
    for reader in readers:
        actions.add_member(admin, study, reader, "reader")
    actions.add_member(admin, study, statistician, "statistician")

    # One tiny series in storage that every image-series row names (readiness lists its folder).
    prefix = "bench-scale/series"
    files = write_series(Path(settings.MEDIA_ROOT) / prefix)
    slice_files = [p.name for p in files]
    n_patients = -(-n_cases // LESIONS_PER_PATIENT)
    batch = 2000
    bar = tqdm(total=n_cases, desc=f"set-up cases ({n_cases})", unit="case", disable=not progress, file=sys.stderr)
    with transaction.atomic():
        patients = Patient.objects.bulk_create(
            [Patient(study=study, pseudonym=f"P{i:05d}") for i in range(n_patients)], batch_size=batch
        )
        series = ImageSeries.objects.bulk_create(
            [
                ImageSeries(
                    patient=p,
                    storage_prefix=prefix,
                    n_slices=len(files),
                    rows=8,
                    columns=8,
                    slice_positions_mm=[2.5 * i for i in range(len(files))],
                    slice_files=slice_files,
                )
                for p in patients
            ],
            batch_size=batch,
        )
        diameters = rng.uniform(3.0, 60.0, n_cases).round(1)
        positive = rng.random(n_cases) < 0.4
        for start in range(0, n_cases, batch):
            chunk = range(start, min(start + batch, n_cases))
            cases = Case.objects.bulk_create(
                [
                    Case(
                        study=study,
                        patient=patients[k // LESIONS_PER_PATIENT],
                        series=series[k // LESIONS_PER_PATIENT],
                        case_id=f"L{k:05d}",
                        lesion_x_mm=1.0,
                        lesion_y_mm=2.0,
                        lesion_z_mm=5.0,
                        slice_index=2,
                        diameter_mm=float(diameters[k]),
                    )
                    for k in chunk
                ]
            )
            CaseSeries.objects.bulk_create(
                [CaseSeries(case=c, series=c.series, role=DEFAULT_SERIES_ROLE, position=0) for c in cases]
            )
            Truth.objects.bulk_create(
                [
                    Truth(case=c, label="crlm" if positive[k] else "hemangioma", source="histology")
                    for c, k in zip(cases, chunk, strict=True)
                ]
            )
            # A stand-in model: higher probability for positives, overlapping classes.
            probability = 1 / (1 + np.exp(-(rng.normal(0, 1.2, len(cases)) + 1.5 * (positive[chunk] - 0.4))))
            Prediction.objects.bulk_create(
                [
                    Prediction(
                        case=c,
                        model_name="bench-scale",
                        model_version="1",
                        weights_sha256="0" * 64,
                        inputs_sha256=str(c.pk),
                        probability=float(p),
                    )
                    for c, p in zip(cases, probability, strict=True)
                ]
            )
            bar.update(len(cases))
    bar.close()
    analyze()
    return {"seconds": round(time.perf_counter() - t0, 1), "cases": n_cases, "patients": n_patients}


def analyze() -> None:
    """Planner statistics after a bulk load, as autovacuum gathers them soon after one in production (without them
    PostgreSQL plans the reads table's joins for a few rows: nested loops, sorts on disk)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def step_launch() -> dict:
    from readerstudy.reading.actions import launch_study
    from readerstudy.reading.models import SessionItem

    study, admin, _ = _study_and_users()
    with Step() as step:
        n_items = launch_study(admin, study)
    if SessionItem.objects.filter(study=study).count() != n_items:
        raise RuntimeError("launch wrote a different number of items than it reported")
    return step.result | {"items": n_items}


def step_reads(seed: int, progress: bool) -> dict:
    from datetime import timedelta

    import numpy as np
    from django.db import transaction
    from django.utils import timezone
    from tqdm import tqdm

    from inference.models import Prediction
    from readerstudy.reading.models import Read, ReadingSession, SessionItem
    from readerstudy.results.simulate import SimulatedCase, parse_effects, simulate_ratings
    from readerstudy.studies import actions

    t0 = time.perf_counter()
    study, admin, _ = _study_and_users()
    modalities = [(m.pk, m.shows_dl) for m in study.modalities.order_by("order")]
    shows_dl = dict(modalities)
    readers = sorted(set(SessionItem.objects.filter(study=study).values_list("reader_id", flat=True)))
    cases = [
        SimulatedCase(c.pk, int(c.truth.positive), c.size_stratum)
        for c in study.cases.analysed().select_related("truth", "study").order_by("case_id")
    ]
    effects = parse_effects("<=10:0.15,10-30:0.6,>30:0.4")  # the simulate_reads command's default
    cells = simulate_ratings(np.random.default_rng(seed), readers, cases, modalities, aided_effect=effects)
    prediction = dict(Prediction.objects.filter(case__study=study).values_list("case_id", "pk"))
    items = SessionItem.objects.filter(study=study).values_list("pk", "reader_id", "case_id", "modality_id")
    n_items = len(cells)
    submitted = study.launched_at + timedelta(minutes=1)
    batch = 5000
    bar = tqdm(total=n_items, desc="bulk reads", unit="read", disable=not progress, file=sys.stderr)
    with transaction.atomic():
        rows: list[Read] = []
        for item_pk, reader_pk, case_pk, modality_pk in items.iterator(chunk_size=batch):
            rating, seconds = cells[(reader_pk, case_pk, modality_pk)]
            rows.append(
                Read(
                    item_id=item_pk,
                    study=study,
                    reader_id=reader_pk,
                    case_id=case_pk,
                    modality_id=modality_pk,
                    rating=rating,
                    submitted_at=submitted,
                    active_seconds=seconds,
                    viewer_state={"simulated": True},
                    idempotency_key=f"scale-{item_pk}",
                    prediction_id=prediction[case_pk] if shows_dl[modality_pk] else None,  # as submit_read
                )
            )
            if len(rows) == batch:
                Read.objects.bulk_create(rows)
                bar.update(len(rows))
                rows = []
        Read.objects.bulk_create(rows)
        bar.update(len(rows))
        ReadingSession.objects.filter(study=study).update(
            available_from=study.launched_at,
            started_at=study.launched_at,
            finished_at=submitted,
        )
    bar.close()
    analyze()
    actions.close_study(admin, study, now=timezone.now())
    n_reads = Read.objects.filter(study=study).count()
    if n_reads != n_items:
        raise RuntimeError(f"expected {n_items} reads, stored {n_reads}")
    return {"seconds": round(time.perf_counter() - t0, 1), "reads": n_reads}


def step_table() -> dict:
    from readerstudy.results.table import reads_table

    study, _, _ = _study_and_users()
    with Step() as step:
        table = reads_table(study)
    return step.result | {"rows": len(table)}


def step_export(kind: str) -> dict:
    import openpyxl  # noqa: F401  (imported before the baseline: the JAFROC writer's library)

    from readerstudy.results import dictionary, formats, jobs  # noqa: F401
    from readerstudy.results.models import Export

    study, _, statistician = _study_and_users()
    with Step() as step:
        export = jobs.request_export(statistician, study, kind)
    export.refresh_from_db()
    if export.status != Export.Status.DONE:
        raise RuntimeError(f"export {kind} ended {export.status}: {export.message}")
    return step.result | {"rows": export.n_reads, "file_mib": round(export.file.size / 2**20, 2)}


def _analysis_parameters(study) -> dict:
    return {
        "cov": "jackknife",
        "analyses": ["rrrc", "frrc", "rrfc"],
        "size_bins_mm": list(study.size_bins_mm),
        "cluster_by_patient": True,  # two lesions per patient: what default_parameters chooses
    }


def step_analysis_or() -> dict:
    """The reads table and the OR analyses (RRRC, FRRC, RRFC; overall and per stratum) with the model's AUC."""
    from readerstudy.results.runs import run_analysis
    from readerstudy.results.table import reads_table

    study, _, _ = _study_and_users()
    with Step() as step:
        result = run_analysis(reads_table(study), _analysis_parameters(study))
    if "error" in result["mrmc"]:
        raise RuntimeError(f"analysis failed: {result['mrmc']['error']}")
    return step.result | {"reads": result["summary"]["n_reads"]}


def step_analysis() -> dict:
    """The whole analysis run, as a statistician starts it (adds the reading-time model and the figures)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # imported before the baseline

    from readerstudy.results import figures, jobs, reading_time  # noqa: F401
    from readerstudy.results.models import AnalysisRun

    study, _, statistician = _study_and_users()
    with Step() as step:
        run = jobs.start_analysis(statistician, study, _analysis_parameters(study))
    run.refresh_from_db()
    if run.status != AnalysisRun.Status.DONE:
        raise RuntimeError(f"analysis ended {run.status}: {run.message}")
    return step.result | {"reads": run.result["summary"]["n_reads"]}


def run_step(args: argparse.Namespace) -> int:
    import django

    django.setup()
    from django.db import connections

    name = args.step
    if name == "setup":
        res = step_setup(args.cases, args.readers, args.seed, not args.no_progress)
    elif name == "launch":
        res = step_launch()
    elif name == "reads":
        res = step_reads(args.seed, not args.no_progress)
    elif name == "table":
        res = step_table()
    elif name.startswith("export-"):
        res = step_export(name.removeprefix("export-"))
    elif name == "analysis-or":
        res = step_analysis_or()
    elif name == "analysis":
        res = step_analysis()
    elif name == "migrate":
        from django.core.management import call_command

        t0 = time.perf_counter()
        call_command("migrate", interactive=False, verbosity=0)
        res = {"seconds": round(time.perf_counter() - t0, 1)}
    else:
        raise SystemExit(f"unknown step {name!r}")
    connections.close_all()
    Path(args.result).write_text(json.dumps(res))
    return 0


# --- the driver -------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=DEFAULT_SIZES, help="items per study (readers x cases x 2 modalities)")
    ap.add_argument("--readers", type=int, default=20)
    ap.add_argument("--formats", default=",".join(FORMATS), help=f"export kinds, of {', '.join(FORMATS)}")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument(
        "--full-analysis-max",
        type=int,
        default=10_000,
        help="largest size whose whole analysis run (with the reading-time model and figures) is timed",
    )
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL, help="database to (re)create per size; dropped afterwards")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    ap.add_argument("--no-progress", action="store_true")
    # internal: one step in this process
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--cases", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.step:
        return args
    args.size_list = [int(s) for s in args.sizes.split(",") if s]
    per_case = args.readers * MODALITIES
    if args.readers < 2 or any(n < per_case * 4 or n % per_case for n in args.size_list):
        ap.error(f"each size must be a multiple of readers x {MODALITIES} = {per_case} (at least 4 cases)")
    args.format_list = [f for f in args.formats.split(",") if f]
    if set(args.format_list) - set(FORMATS):
        ap.error(f"--formats: expected some of {', '.join(FORMATS)}")
    db = urlsplit(args.pg_url).path.lstrip("/")
    if not re.fullmatch(r"[A-Za-z0-9_]+", db) or db in ("postgres", "template0", "template1"):
        ap.error(f"refusing to recreate database {db!r}")
    return args


def child(step: str, env: dict, tmp: Path, extra: list[str], progress: bool) -> dict:
    """Run one step in a fresh process; its JSON result, or RuntimeError with the end of its output."""
    result = tmp / f"{step}.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bench.scale", "--step", step, "--result", str(result), *extra]
    if not progress:
        cmd.append("--no-progress")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=None if progress else subprocess.PIPE,
                          text=True, timeout=STEP_TIMEOUT_S)  # fmt: skip
    if proc.returncode != 0 or not result.exists():
        tail = (proc.stdout or "")[-2000:] + (proc.stderr or "")[-3000:]
        raise RuntimeError(f"step {step} failed ({proc.returncode}):\n{tail}")
    res = json.loads(result.read_text())
    if "mem_mib" in res:
        line = f"{res['seconds']:.2f} s ({res['cpu_s']:.2f} s CPU), {res['mem_mib']:.0f} MiB, {res['queries']} SQL"
        print(f"  {step}: {line}", file=sys.stderr)
    else:
        print(f"  {step}: {res['seconds']:.1f} s (set-up)", file=sys.stderr)
    return res


def create_from_template(admin_url: str, db: str, template: str) -> None:
    with pg_connect(admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db}" TEMPLATE "{template}"')


def one_size(n_items: int, args: argparse.Namespace, env: dict, tmp: Path, admin_url: str, template: str) -> dict:
    db = urlsplit(args.pg_url).path.lstrip("/")
    n_cases = n_items // (args.readers * MODALITIES)
    create_from_template(admin_url, db, template)
    media = tmp / f"media-{n_items}"
    env = env | {"MEDIA_ROOT": str(media)}
    progress = not args.no_progress
    try:
        out: dict[str, Any] = {"items": n_items, "cases": n_cases, "readers": args.readers}
        setup = ["--cases", str(n_cases), "--readers", str(args.readers), "--seed", str(args.seed)]
        print(f"{n_items} items ({args.readers} readers x {n_cases} cases x {MODALITIES}): set-up", file=sys.stderr)
        out["setup"] = child("setup", env, tmp, setup, progress)
        print(f"{n_items} items: launch", file=sys.stderr)
        out["launch"] = child("launch", env, tmp, [], progress)
        out["reads"] = child("reads", env, tmp, ["--seed", str(args.seed)], progress)
        print(f"{n_items} items: reads table, exports, analysis", file=sys.stderr)
        out["table"] = child("table", env, tmp, [], progress)
        out["export"] = {kind: child(f"export-{kind}", env, tmp, [], progress) for kind in args.format_list}
        out["analysis-or"] = child("analysis-or", env, tmp, [], progress)
        if n_items <= args.full_analysis_max:
            out["analysis"] = child("analysis", env, tmp, [], progress)
        return out
    finally:
        drop_db(admin_url, db)
        shutil.rmtree(media, ignore_errors=True)


def step_names(formats: list[str]) -> list[str]:
    return ["launch", "table", *(f"export {k}" for k in formats), "analysis-or", "analysis"]


def step_of(size: dict, name: str) -> dict | None:
    return size["export"].get(name.split()[1]) if name.startswith("export ") else size.get(name)


def _ratio(a: float, b: float) -> float | None:
    return round(b / a, 2) if a > 0 else None


def growth(sizes: list[dict], formats: list[str]) -> dict:
    """Per measured step: time, CPU and memory per item at each size; ratios largest / smallest vs the sizes'."""
    out: dict[str, Any] = {}
    for name in step_names(formats):
        measured = [(s["items"], r) for s in sizes if (r := step_of(s, name)) is not None]
        if not measured:
            continue
        (n0, a), (n1, b) = measured[0], measured[-1]
        out[name] = {
            "items": [n for n, _ in measured],
            "us_per_item": [round(1e6 * r["seconds"] / n, 1) for n, r in measured],
            "cpu_us_per_item": [round(1e6 * r["cpu_s"] / n, 1) for n, r in measured],
            "bytes_per_item": [round(r["mem_mib"] * 2**20 / n) for n, r in measured],
            "size_ratio": round(n1 / n0, 2),
            "time_ratio": _ratio(a["seconds"], b["seconds"]),
            "cpu_ratio": _ratio(a["cpu_s"], b["cpu_s"]),
            "mem_ratio": _ratio(a["mem_mib"], b["mem_mib"]),
            "queries": [r["queries"] for _, r in measured],
        }
    return out


def print_report(res: dict) -> None:
    sizes, formats = res["sizes"], res["parameters"]["formats"]
    cols = [c for c in step_names(formats) if c in res["growth"]]
    print(f"\n{res['parameters']['readers']} readers x cases x {MODALITIES} modalities, crossover, PostgreSQL")
    print("per step: wall s / CPU s of the step's process / peak MiB above the step's baseline")
    print(f"{'step':>15} " + " ".join(f"{s['items']:>20}" for s in sizes))
    for c in cols:
        cells = []
        for s in sizes:
            r = step_of(s, c)
            cells.append("-" if r is None else f"{r['seconds']:.1f} / {r['cpu_s']:.1f} / {r['mem_mib']:.0f}")
        print(f"{c:>15} " + " ".join(f"{x:>20}" for x in cells))
    print("\ngrowth, largest size measured / smallest (x size ratio): wall, CPU, memory; us per item at each size")
    for name, g in res["growth"].items():
        print(
            f"{name:>15} x{g['size_ratio']:<5g} {g['time_ratio']!s:>6} {g['cpu_ratio']!s:>6} {g['mem_ratio']!s:>6}  "
            f"{g['us_per_item']}"
        )
    for name, ok in res["goal"].items():
        print(f"goal {name}: {'met' if ok else 'NOT met'}")


def goals(sizes: list[dict], formats: list[str]) -> dict:
    big = next((s for s in sizes if s["items"] == GOAL_ITEMS), None)
    out: dict[str, bool | None] = {}
    if big is not None:
        out[f"launch <= {GOAL_S['launch']:g} s at {GOAL_ITEMS}"] = big["launch"]["seconds"] <= GOAL_S["launch"]
        out[f"every export <= {GOAL_S['export']:g} s at {GOAL_ITEMS}"] = all(
            big["export"][k]["seconds"] <= GOAL_S["export"] for k in formats
        )
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.step:
        return run_step(args)
    db = urlsplit(args.pg_url).path.lstrip("/")
    template = f"{db}_template"
    admin_url = with_db(args.pg_url, "postgres")
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    env = {k: v for k, v in os.environ.items() if k != "TASKS_BACKEND"} | {
        "DJANGO_SETTINGS_MODULE": "readerstudy.settings", "DATABASE_URL": args.pg_url, "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(48), "DEID_SALT": secrets.token_urlsafe(48), "ALLOWED_HOSTS": "127.0.0.1",
        "MEDIA_ROOT": str(tmp / "media"), "PYTHONUNBUFFERED": "1",
    }  # fmt: skip
    template_made = False
    # SIGTERM (a killed make, a CI timeout) ends through the finally below: the databases are dropped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        ensure_pg(admin_url)
        loadavg_before = [round(x, 2) for x in os.getloadavg()]
        print(f"migrating the template database {template} ...", file=sys.stderr)
        recreate_db(admin_url, template)
        template_made = True
        migrate = child("migrate", env | {"DATABASE_URL": with_db(args.pg_url, template)}, tmp, [], False)
        sizes = []
        for n in args.size_list:
            sizes.append(one_size(n, args, env, tmp, admin_url, template))
            write_json(args.out.with_suffix(".partial.json"), {"benchmark": "scale", "sizes": sizes})
        args.out.with_suffix(".partial.json").unlink(missing_ok=True)
        g = growth(sizes, args.format_list)
        res = {
            "benchmark": "scale",
            "machine": {
                **machine_facts(),
                "cpu_affinity": len(os.sched_getaffinity(0)),
                "loadavg_before": loadavg_before,
                "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                "postgresql": pg_facts(admin_url),
                "packages": {n: package_version(n) for n in ("django", "psycopg", "pandas", "numpy", "openpyxl")},
            },
            "parameters": {
                "readers": args.readers,
                "modalities": MODALITIES,
                "lesions_per_patient": LESIONS_PER_PATIENT,
                "design": "crossover, 2 sessions per reader",
                "formats": args.format_list,
                "seed": args.seed,
                "memory": "peak RSS of the step's own process above its RSS before the step (ru_maxrss delta)",
                "cpu": "user + system CPU of the step's own process (PostgreSQL's server processes not included)",
                "reads": "bulk-inserted in set-up (simulate_ratings), not through submit_read",
                "full_analysis_max": args.full_analysis_max,
                "migrate_template_s": migrate["seconds"],
            },
            "sizes": sizes,
            "growth": g,
            "goal": goals(sizes, args.format_list),
        }
        print_report(res)
        write_json(args.out, res)
        print(f"wrote {args.out}")
        return 0 if all(v is not False for v in res["goal"].values()) else 1
    finally:
        if template_made:
            with suppress(Exception):
                drop_db(admin_url, template)
        shutil.rmtree(tmp, ignore_errors=True)
