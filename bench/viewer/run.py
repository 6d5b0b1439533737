"""Benchmark: the reading page (Cornerstone3D bundle) in headless Chromium against a live Django server.

    python -m bench.viewer [--out bench/viewer/results.json] [--cases N] [--port P] [--slices S]

Builds a throwaway study (SQLite database and media folder in a temp dir: phantom CT series, one reader,
crossover design, a reference-mask prediction for every case), starts ``manage.py runserver --noreload --nostatic``
on 127.0.0.1 (static files then go through WhiteNoise, as in production, not through runserver's own handler),
logs in with Playwright/Chromium and measures:

1. navigation to the reading page -> first image rendered (``readingApp.ready``): cold (fresh browser context:
   empty HTTP cache) and warm (same context: bundle and the case's DICOM slices come from the HTTP cache);
2. click on "Submit rating" -> next case rendered, over ``--cases`` cases (the next case prefetched first, as
   while a reader reads), split into the POST, the app's fixed 600 ms "Saved" pause and the rest;
3. slice scrolling in the first unaided case (no segmentation) and in the first aided case with the DL overlay
   on, then off (``o``): trusted ArrowDown/ArrowUp key presses, one at a time, each waited for until Cornerstone's
   IMAGE_RENDERED event fires on the viewer element with the viewport on the target slice (the app's
   ``readingApp.sliceIndex`` alone is not enough: it is also set on STACK_NEW_IMAGE, before the render).

Timestamps are taken in the page (``performance.now()``: the ready flag is instrumented by an init script, the
click and the key events by capture listeners), so Playwright's polling does not add to them. Baselines, in
the same run: fetching all DICOM slices of one case with plain HTTP (urllib, the session cookie, sequential)
and navigating to the server-rendered worklist page (HTML + CSS, no bundle) in the warm context.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import ROOT, free_port, machine_facts, start_server, stop_server, write_json
from bench.viewer.report import browser_steps, print_table
from bench.viewer.study import bench_env, build_study
from fixtures.browser import CHROMIUM, launch_chromium


class BenchTimeout(Exception):
    pass


def run(args: argparse.Namespace, tmp: Path, bar) -> dict:
    from playwright.sync_api import sync_playwright

    env = bench_env(tmp)
    os.environ.update(
        {
            k: env[k]
            for k in (
                "DJANGO_SETTINGS_MODULE",
                "DATABASE_URL",
                "MEDIA_ROOT",
                "DEBUG",
                "ALLOWED_HOSTS",
                "DJANGO_ALLOW_ASYNC_UNSAFE",
            )
        }
    )
    os.environ.pop("TASKS_BACKEND", None)
    bar.set_postfix_str("migrate + study")
    t = time.perf_counter()
    study = build_study(tmp, args.cases)
    setup_s = time.perf_counter() - t
    items = study["items"]
    n_transitions = min(args.cases, len(items) - 1)
    bar.update()

    port = args.port or free_port()
    base = f"http://127.0.0.1:{port}"
    reading_url = f"{base}/reading/session/{study['session_id']}/"
    bar.set_postfix_str("server")
    server = None
    try:
        cmd = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--nostatic"]
        server = start_server(cmd, env, port, tmp / "server.log", timeout_s=40, name="the server")
        bar.update()
        with sync_playwright() as p:
            bar.set_postfix_str("browser")
            browser = launch_chromium(p)
            try:
                res = browser_steps(browser, args, base, reading_url, items, n_transitions, bar)
            finally:
                browser.close()
    finally:
        stop_server(server)
    res["study"] = {
        "design": "crossover, 2 modalities (unaided / DL-assisted), 1 reader",
        "n_patients": study["n_patients"],
        "n_cases": study["n_lesions"],
        "items_in_session": len(items),
        "slices_per_series": sorted({i["n_slices"] for i in items}),
        "series_mib": round(statistics.fmean(i["series_bytes"] for i in items) / 2**20, 2),
        "setup_s": round(setup_s, 2),
    }
    res["server"] = {
        "kind": "django runserver --noreload --nostatic (threaded; static files via WhiteNoise with finders)",
        "debug": study["debug"],
        "database": "sqlite (temp file)",
    }
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.viewer", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")), help="JSON output path")
    parser.add_argument("--cases", type=int, default=6, help="submit -> next case transitions to time")
    parser.add_argument("--port", type=int, default=0, help="server port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--slices", type=int, default=30, help="slices scrolled per overlay state")
    parser.add_argument("--warmup-slices", type=int, default=3, help="untimed slices before each scroll run")
    parser.add_argument("--cold", type=int, default=2, help="cold loads (a fresh browser context each)")
    parser.add_argument("--warm", type=int, default=3, help="warm loads")
    parser.add_argument("--fetches", type=int, default=5, help="repetitions of the HTTP GET baseline")
    parser.add_argument("--timeout", type=int, default=240, help="give up after this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (database, media, server log)")
    args = parser.parse_args(argv)
    if args.cases < 1 or args.slices < 1 or args.cold < 1 or args.warm < 1:
        parser.error("--cases, --slices, --cold and --warm must be >= 1")
    if not Path(CHROMIUM).exists():
        parser.error(f"Chromium not found at {CHROMIUM} (set CHROMIUM=...)")
    if not (ROOT / "frontend" / "dist" / ".vite" / "manifest.json").exists():
        parser.error("the viewer bundle is not built: cd frontend && npm ci && npm run build")

    from tqdm import tqdm

    def on_signal(signum, _frame):
        if signum == signal.SIGALRM:
            raise BenchTimeout(f"the benchmark ran past --timeout {args.timeout} s")
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(args.timeout)
    tmp = Path(tempfile.mkdtemp(prefix="bench-viewer-"))
    n_steps = 2 + args.cold + args.warm + 1 + 2 + args.cases  # setup, server, loads, baselines, 2 scrolls, cases
    started = time.perf_counter()
    load_before = os.getloadavg()
    try:
        with tqdm(total=n_steps, desc="viewer bench", unit="step", file=sys.stderr) as bar:
            result = run(args, tmp, bar)
    except BaseException:
        log = tmp / "server.log"
        if log.exists():
            print(f"--- server log (tail) ---\n{log.read_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        signal.alarm(0)
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    import django
    import playwright

    result.update(
        {
            **machine_facts(),
            "django": django.get_version(),
            "playwright": getattr(playwright, "__version__", None),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "total_s": round(time.perf_counter() - started, 1),
            "args": {k: v for k, v in vars(args).items() if k != "out"},
            "method": __doc__.strip(),
        }
    )
    result["machine"]["cpu_count"] = os.cpu_count()
    print_table(result)
    write_json(Path(args.out), result, default=float)
    print(f"wrote {args.out} ({result['total_s']} s)")
    return 0
