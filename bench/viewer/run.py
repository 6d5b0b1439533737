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
import http.cookiejar
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "bench-viewer-pass-1"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
VIEWPORT = {"width": 1400, "height": 900}
SAVED_PAUSE_MS = 600  # frontend/src/app.js SAVED_PAUSE_MS: "Saved" stays up this long before the next case loads
WAIT_MS = 60_000

# Runs before the page's scripts: records when readingApp.ready turns true (and at which position), submit
# clicks, save-status changes, and key events / renders for the scroll measurement.
INIT_SCRIPT = r"""
(() => {
  performance.setResourceTimingBufferSize(100000);  // the default 250 entries fill up after a few cases
  const bench = { marks: [], clicks: [], saves: [] };
  window.__bench = bench;
  let app;
  Object.defineProperty(window, 'readingApp', {
    configurable: true,
    get() { return app; },
    set(v) {
      app = v;
      let ready = v.ready;
      Object.defineProperty(v, 'ready', {
        configurable: true,
        enumerable: true,
        get() { return ready; },
        set(x) {
          ready = x;
          if (x) bench.marks.push({ t: performance.now(), position: v.position, itemId: v.itemId });
        },
      });
    },
  });
  document.addEventListener('click', (e) => {
    const t = performance.now();
    if (e.target instanceof Element && e.target.closest('[data-testid="submit-read"]')) bench.clicks.push(t);
  }, true);
  new MutationObserver((records) => {
    const t = performance.now();
    for (const r of records) {
      const d = r.target.dataset;
      if (d && d.testid === 'save-status') bench.saves.push({ t, state: d.state });
    }
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-state'] });

  // Scroll: arm(target) before a key press; the promise resolves on the first IMAGE_RENDERED of the viewer
  // element with the viewport on `target`, with the in-page time since the key event arrived.
  const RENDERED = 'CORNERSTONE_IMAGE_RENDERED';
  bench.arm = (target) => {
    const el = document.querySelector('[data-testid="viewer"]');
    let t0 = null;
    let events = 0;
    const onKey = () => { if (t0 === null) t0 = performance.now(); };
    document.addEventListener('keydown', onKey, true);
    bench.pending = new Promise((resolve, reject) => {
      const timer = setTimeout(() => { cleanup(); reject(new Error(`slice ${target} not rendered in 5 s`)); }, 5000);
      function cleanup() {
        clearTimeout(timer);
        el.removeEventListener(RENDERED, onRender);
        document.removeEventListener('keydown', onKey, true);
      }
      function onRender() {
        events += 1;
        if (window.readingApp.viewerState().slice_index !== target || t0 === null) return;
        const t1 = performance.now();
        cleanup();
        resolve({ ms: t1 - t0, events });
      }
      el.addEventListener(RENDERED, onRender);
    });
    return true;
  };
})();
"""

FACTS_JS = r"""
() => {
  const facts = { userAgent: navigator.userAgent, hardwareConcurrency: navigator.hardwareConcurrency,
                  devicePixelRatio: window.devicePixelRatio };
  for (const kind of ['webgl2', 'webgl']) {
    const gl = document.createElement('canvas').getContext(kind);
    if (!gl) continue;
    const ext = gl.getExtension('WEBGL_debug_renderer_info');
    facts.webgl = kind;
    facts.webglVendor = ext ? gl.getParameter(ext.UNMASKED_VENDOR_WEBGL) : gl.getParameter(gl.VENDOR);
    facts.webglRenderer = ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
    facts.webglVersion = gl.getParameter(gl.VERSION);
    break;
  }
  const app = window.readingApp;
  if (app) { facts.renderBackend = app.renderBackend; facts.cornerstoneRenderer = app.renderer; }
  const canvas = document.querySelector('[data-testid="viewer"] canvas');
  if (canvas) facts.viewerCanvas = [canvas.width, canvas.height];
  return facts;
}
"""

# Network facts of the current document: the bundle's and the DICOM slices' transferred bytes (0: from cache).
NETWORK_JS = r"""
(itemId) => {
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource');
  const sum = (list, key) => list.reduce((a, e) => a + (e[key] || 0), 0);
  const bundle = res.filter((e) => e.name.includes('/static/assets/'));
  const dicom = res.filter((e) => e.name.includes(`/api/items/${itemId}/images/`));
  return {
    dom_content_loaded_ms: nav ? nav.domContentLoadedEventEnd : null,
    html_response_end_ms: nav ? nav.responseEnd : null,
    bundle_files: bundle.length, bundle_transfer_bytes: sum(bundle, 'transferSize'),
    bundle_body_bytes: sum(bundle, 'decodedBodySize'),
    dicom_files: dicom.length, dicom_transfer_bytes: sum(dicom, 'transferSize'),
  };
}
"""


class BenchTimeout(Exception):
    pass


def pct(values: list[float], q: float) -> float:
    """Percentile with linear interpolation (q in 0..100)."""
    s = sorted(values)
    if not s:
        return math.nan
    k = (len(s) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(values: list[float]) -> dict:
    return {"n": len(values), "median": statistics.median(values) if values else None,
            "p95": pct(values, 95) if values else None, "min": min(values, default=None),
            "max": max(values, default=None), "values": [round(v, 2) for v in values]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- study and server ---------------------------------------------------------------------------------------------


def bench_env(tmp: Path) -> dict:
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "readerstudy.settings",
        "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
        "MEDIA_ROOT": str(tmp / "media"),
        "DEBUG": "1",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_ALLOW_ASYNC_UNSAFE": "true",
        "PYTHONUNBUFFERED": "1",
    })
    env.pop("TASKS_BACKEND", None)
    return env


def build_study(tmp: Path, n_cases: int) -> dict:
    """Migrate the throwaway database and build a launched crossover study; returns what the browser part needs."""
    import django

    django.setup()
    import numpy as np
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connections

    from fixtures.phantom import generate_demo_study
    from inference.actions import record_prediction
    from readerstudy.reading.actions import launch_study
    from readerstudy.reading.models import ReadingSession
    from readerstudy.studies import actions

    call_command("migrate", interactive=False, verbosity=0)
    n_lesions = max(8, n_cases + 2)
    n_patients = max(4, math.ceil(n_lesions / 2))
    data = tmp / "data"
    manifest = generate_demo_study(data, seed=20260501, n_patients=n_patients, n_lesions=n_lesions)
    User = get_user_model()
    admin = User.objects.create_superuser("bench-admin", password=PASSWORD)
    reader = User.objects.create_user("bench-reader", password=PASSWORD)
    study = actions.create_study(admin, "Viewer bench", design="crossover", washout_days=28, seed=5)
    actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False)
    actions.add_modality(admin, study, "aided", "DL-assisted", shows_dl=True)
    actions.add_member(admin, study, reader, "reader")
    actions.import_cases(admin, study, manifest)
    # Stand-in predictions from the phantom's reference masks: they exercise the overlay path, not a model.
    for case in study.cases.select_related("series", "patient"):
        masks = np.load(data / "masks" / f"{case.patient.pseudonym}.npz")
        labelmap = masks["liver_mask"].astype(np.uint8)
        labelmap[masks["lesion_labels"] > 0] = 2
        record_prediction(
            admin, case, model_name="reference-mask", model_version="bench", weights_sha256="0" * 64,
            inputs_sha256=str(case.pk), probability=0.8, labelmap=labelmap,
            labels=[{"value": 1, "name": "liver"}, {"value": 2, "name": "lesion"}],
        )
    launch_study(admin, study)
    session = ReadingSession.objects.get(study=study, reader=reader, index=1)
    items = []
    for item in session.items.select_related("modality", "case__series").order_by("position"):
        series = item.case.series
        files = [Path(series.path) / f for f in series.slice_files]
        items.append({"id": item.pk, "position": item.position, "aided": item.modality.shows_dl,
                      "n_slices": series.n_slices, "series_bytes": sum(f.stat().st_size for f in files)})
    connections.close_all()
    return {"session_id": session.pk, "items": items, "n_patients": n_patients, "n_lesions": n_lesions,
            "debug": settings.DEBUG}


def start_server(env: dict, port: int, log_path: Path) -> subprocess.Popen:
    log = log_path.open("wb")
    cmd = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--nostatic"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}):\n{log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the server did not answer in 40 s:\n{log_path.read_text()[-2000:]}")


def stop_server(proc: subprocess.Popen | None) -> None:
    """SIGTERM our server's process group (started with start_new_session), SIGKILL after 5 s."""
    if proc is None or proc.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


# --- browser steps ------------------------------------------------------------------------------------------------


def new_context(browser, base: str):
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(INIT_SCRIPT)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", "bench-reader")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/reading/")
    return context, page, errors


def wait_ready(page, position: int) -> None:
    page.wait_for_function(
        "p => window.readingApp && window.readingApp.ready && window.readingApp.position === p",
        arg=position, timeout=WAIT_MS,
    )


def load_reading_page(page, url: str, item: dict) -> dict:
    """Navigate to the reading page; in-page ms from navigation start to the first ready mark."""
    start = time.perf_counter()
    page.goto(url)
    wait_ready(page, item["position"])
    wall_ms = (time.perf_counter() - start) * 1000
    marks = page.evaluate("() => window.__bench.marks")
    ready_ms = next(m["t"] for m in marks if m["position"] == item["position"])
    return {"ready_ms": ready_ms, "wall_ms": wall_ms, **page.evaluate(NETWORK_JS, item["id"])}


def fetch_case_http(base: str, cookies: list[dict], item: dict) -> dict:
    """Baseline: GET every DICOM slice of one item, sequentially, with the browser's session cookie."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in cookies if c["name"] in ("sessionid", "csrftoken"))
    start = time.perf_counter()
    total = 0
    for i in range(item["n_slices"]):
        req = urllib.request.Request(f"{base}/api/items/{item['id']}/images/{i}", headers={"Cookie": cookie})
        with opener.open(req, timeout=30) as r:
            total += len(r.read())
    return {"ms": (time.perf_counter() - start) * 1000, "bytes": total}


def page_navigation(page, url: str) -> dict:
    start = time.perf_counter()
    page.goto(url, wait_until="load")
    wall_ms = (time.perf_counter() - start) * 1000
    load_ms = page.evaluate("() => performance.getEntriesByType('navigation')[0].loadEventEnd")
    return {"load_ms": load_ms, "wall_ms": wall_ms}


def wait_prefetched(page, item: dict) -> float:
    """Wait until every slice of `item` (the next case) was fetched by the page's prefetch; returns seconds."""
    start = time.perf_counter()
    page.wait_for_function(
        "([id, n]) => performance.getEntriesByType('resource')"
        ".filter((e) => e.name.includes(`/api/items/${id}/images/`)).length >= n",
        arg=[item["id"], item["n_slices"]], timeout=WAIT_MS, polling=50,
    )
    page.wait_for_timeout(300)  # fetched is not yet decoded into Cornerstone's cache: a little slack
    return time.perf_counter() - start


def submit_and_time(page, position: int, rating: int, to_aided: bool) -> dict:
    slider = page.get_by_test_id("rating-slider")
    slider.focus()
    slider.fill(str(rating))
    n_clicks = page.evaluate("() => window.__bench.clicks.length")
    page.get_by_test_id("submit-read").click()
    wait_ready(page, position + 1)
    b = page.evaluate("() => { const b = window.__bench; return {clicks: b.clicks, marks: b.marks, saves: b.saves}; }")
    clicked = b["clicks"][n_clicks]
    ready = next(m["t"] for m in b["marks"] if m["position"] == position + 1 and m["t"] > clicked)
    saved = next((s["t"] for s in b["saves"] if s["state"] == "ok" and s["t"] > clicked), None)
    total = ready - clicked
    post = None if saved is None else saved - clicked
    return {"from": position, "to_aided": to_aided, "total_ms": total, "post_ms": post,
            "load_ms": None if saved is None else ready - saved - SAVED_PAUSE_MS}


def scroll(page, n_slices: int, count: int, warmup: int) -> dict:
    """Trusted ArrowDown/ArrowUp presses, one at a time, each waited for until its slice is rendered."""
    s = page.evaluate("() => window.readingApp.viewerState().slice_index")
    page.get_by_test_id("viewer").focus()
    direction = 1 if s + 1 < n_slices else -1
    latencies, events = [], 0
    start = None
    for i in range(warmup + count):
        if i == warmup:
            start = time.perf_counter()
        if not 0 <= s + direction < n_slices:
            direction = -direction
        target = s + direction
        page.evaluate("t => window.__bench.arm(t)", target)
        page.keyboard.press("ArrowDown" if direction > 0 else "ArrowUp")
        r = page.evaluate("() => window.__bench.pending")
        if i >= warmup:
            latencies.append(r["ms"])
            events += r["events"]
        s = target
    wall_s = time.perf_counter() - start
    mean_ms = statistics.fmean(latencies)
    return {"slices": count, "warmup": warmup, "latency_ms": summary(latencies), "render_events_until_target":
            events / count, "render_bound_slices_per_s": 1000 / mean_ms, "driven_slices_per_s": count / wall_s}


# --- main ---------------------------------------------------------------------------------------------------------


def fmt(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def run(args: argparse.Namespace, tmp: Path, bar) -> dict:
    from playwright.sync_api import sync_playwright

    env = bench_env(tmp)
    os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "MEDIA_ROOT", "DEBUG",
                                           "ALLOWED_HOSTS", "DJANGO_ALLOW_ASYNC_UNSAFE")})
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
        server = start_server(env, port, tmp / "server.log")
        bar.update()
        with sync_playwright() as p:
            bar.set_postfix_str("browser")
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                res = browser_steps(browser, args, base, reading_url, items, n_transitions, bar)
            finally:
                browser.close()
    finally:
        stop_server(server)
    res["study"] = {"design": "crossover, 2 modalities (unaided / DL-assisted), 1 reader",
                    "n_patients": study["n_patients"], "n_cases": study["n_lesions"],
                    "items_in_session": len(items), "slices_per_series": sorted({i["n_slices"] for i in items}),
                    "series_mib": round(statistics.fmean(i["series_bytes"] for i in items) / 2**20, 2),
                    "setup_s": round(setup_s, 2)}
    res["server"] = {"kind": "django runserver --noreload --nostatic (threaded; static files via WhiteNoise "
                             "with finders)", "debug": study["debug"], "database": "sqlite (temp file)"}
    return res


def browser_steps(browser, args, base, reading_url, items, n_transitions, bar) -> dict:
    facts: dict = {"chromium": browser.version}
    all_errors: list[str] = []

    # 1. Cold: a fresh context per run (empty HTTP cache), then warm: the same URL again in the last context.
    cold = []
    for k in range(args.cold):
        bar.set_postfix_str(f"cold load {k + 1}")
        context, page, errors = new_context(browser, base)
        cold.append(load_reading_page(page, reading_url, items[0]))
        if k < args.cold - 1:
            all_errors += errors
            context.close()
        bar.update()
    facts.update(page.evaluate(FACTS_JS))
    warm = []
    for k in range(args.warm):
        bar.set_postfix_str(f"warm load {k + 1}")
        warm.append(load_reading_page(page, reading_url, items[0]))
        bar.update()

    # Baselines: plain HTTP fetch of the current case's slices; a server-rendered page navigation.
    bar.set_postfix_str("baselines")
    # The page leaves the reading page first (no prefetch or decoding running during the HTTP baseline).
    navs = [page_navigation(page, f"{base}/reading/") for _ in range(3)]
    page.wait_for_timeout(300)
    fetches = [fetch_case_http(base, context.cookies(), items[0]) for _ in range(args.fetches)]
    bar.update()

    # 2 + 3. Read cases in order: scroll in the first unaided case and in the first aided one (overlay shown,
    # then hidden with `o`), then submit (the next case prefetched first).
    page.goto(reading_url)
    wait_ready(page, 0)
    transitions, scrolls, prefetch_s = [], {}, []
    for position in range(n_transitions):
        item = items[position]
        if not item["aided"] and "unaided" not in scrolls:
            bar.set_postfix_str(f"scroll, case {position}")
            scrolls["unaided"] = scroll(page, item["n_slices"], args.slices, args.warmup_slices)
            scrolls["unaided"]["case_position"] = position
            bar.update()
        if item["aided"] and "overlay_on" not in scrolls:
            bar.set_postfix_str(f"scroll, case {position}")
            if not page.evaluate("() => window.readingApp.overlayVisible"):
                raise RuntimeError("the aided case shows no overlay")
            scrolls["overlay_on"] = scroll(page, item["n_slices"], args.slices, args.warmup_slices)
            page.keyboard.press("o")
            page.wait_for_function("() => window.readingApp.overlayVisible === false", timeout=WAIT_MS)
            page.wait_for_timeout(200)
            scrolls["overlay_off"] = scroll(page, item["n_slices"], args.slices, args.warmup_slices)
            scrolls["overlay_on"]["case_position"] = scrolls["overlay_off"]["case_position"] = position
            bar.update()
        bar.set_postfix_str(f"submit {position + 1}/{n_transitions}")
        prefetch_s.append(wait_prefetched(page, items[position + 1]))
        transitions.append(submit_and_time(page, position, 10 + position, items[position + 1]["aided"]))
        bar.update()
    all_errors += errors
    context.close()
    if "overlay_on" not in scrolls:
        raise RuntimeError("no aided case among the measured ones: raise --cases")

    fetch_ms = statistics.median(f["ms"] for f in fetches)
    nav_ms = statistics.median(n["load_ms"] for n in navs)
    cold_ms = statistics.median(c["ready_ms"] for c in cold)
    warm_ms = statistics.median(w["ready_ms"] for w in warm)
    total = summary([t["total_ms"] for t in transitions])
    on, off = scrolls["overlay_on"], scrolls["overlay_off"]
    plain = scrolls.get("unaided")
    return {
        "machine": facts,
        "first_image": {"cold": cold, "warm": warm, "cold_median_ms": cold_ms, "warm_median_ms": warm_ms},
        "next_case": {"transitions": transitions, "total_ms": total,
                      "post_ms": summary([t["post_ms"] for t in transitions if t["post_ms"] is not None]),
                      "after_pause_ms": summary([t["load_ms"] for t in transitions if t["load_ms"] is not None]),
                      "total_ms_to_aided": summary([t["total_ms"] for t in transitions if t["to_aided"]]),
                      "total_ms_to_unaided": summary([t["total_ms"] for t in transitions if not t["to_aided"]]),
                      "fixed_saved_pause_ms": SAVED_PAUSE_MS, "prefetch_wait_s": [round(s, 2) for s in prefetch_s]},
        "scroll": scrolls,
        "baseline": {"http_fetch_case": fetches, "http_fetch_case_median_ms": fetch_ms,
                     "worklist_navigation": navs, "worklist_navigation_median_ms": nav_ms},
        "ratios": {
            "cold_first_image_vs_http_fetch": cold_ms / fetch_ms,
            "warm_first_image_vs_http_fetch": warm_ms / fetch_ms,
            "cold_first_image_vs_page_navigation": cold_ms / nav_ms,
            "warm_first_image_vs_page_navigation": warm_ms / nav_ms,
            "next_case_median_vs_http_fetch": total["median"] / fetch_ms,
            "scroll_ms_per_slice_vs_http_fetch_per_slice_overlay_on": on["latency_ms"]["median"]
            / (fetch_ms / items[0]["n_slices"]),
            "scroll_overlay_on_vs_off_latency": on["latency_ms"]["median"] / off["latency_ms"]["median"],
            "scroll_overlay_on_vs_unaided_latency": on["latency_ms"]["median"] / plain["latency_ms"]["median"]
            if plain else None,
        },
        "console_errors": all_errors,
    }


def print_table(r: dict) -> None:
    f, n, s, b = r["first_image"], r["next_case"], r["scroll"], r["baseline"]
    fetch = b["http_fetch_case_median_ms"]
    m = r["machine"]
    print(f"\nviewer bench: WebGL {m.get('webglRenderer')} (Cornerstone backend {m.get('renderBackend')}), "
          f"Chromium {m['chromium']}, {r['cpu_count']} CPUs, viewer canvas {m.get('viewerCanvas')}")
    w = 56
    print(f"{'measure':<{w}} {'median':>8} {'p95':>8} {'n':>3} {'x fetch':>8}")
    rows = [
        ("first image, cold (ms)", f["cold_median_ms"], max(c["ready_ms"] for c in f["cold"]), len(f["cold"])),
        ("first image, warm (ms)", f["warm_median_ms"], max(x["ready_ms"] for x in f["warm"]), len(f["warm"])),
    ]
    for label, key in (("", "total_ms"), ("  to an unaided case", "total_ms_to_unaided"),
                       ("  to an aided case (overlay)", "total_ms_to_aided"), ("  POST until 'Saved'", "post_ms"),
                       (f"  after the fixed {n['fixed_saved_pause_ms']} ms 'Saved' pause", "after_pause_ms")):
        x = n[key]
        rows.append((f"{label or 'submit -> next case shown'} (ms)", x["median"], x["p95"], x["n"]))
    for label, key in (("unaided case", "unaided"), ("aided, overlay on", "overlay_on"),
                       ("aided, overlay off (o)", "overlay_off")):
        if key in s:
            lat = s[key]["latency_ms"]
            rows.append((f"scroll: key -> slice rendered, {label} (ms)", lat["median"], lat["p95"], lat["n"]))
    rows += [
        ("baseline: HTTP GET of one case's slices (ms)", fetch, pct([x["ms"] for x in b["http_fetch_case"]], 95),
         len(b["http_fetch_case"])),
        ("baseline: worklist page navigation (ms)", b["worklist_navigation_median_ms"],
         max(x["load_ms"] for x in b["worklist_navigation"]), 3),
    ]
    for label, med, p95, count in rows:
        ratio = None if med is None else med / fetch
        print(f"{label:<{w}} {fmt(med, 1):>8} {fmt(p95, 1):>8} {count:>3} {fmt(ratio, 2):>8}")
    for label, key in (("unaided", "unaided"), ("overlay on", "overlay_on"), ("overlay off", "overlay_off")):
        if key in s:
            print(f"slices/s, {label}: {s[key]['render_bound_slices_per_s']:.1f} render-bound (1 / mean latency), "
                  f"{s[key]['driven_slices_per_s']:.1f} wall-clock driven by Playwright")
    print(f"(p95 of cold/warm/navigation: the max of their few runs; x fetch = median / the HTTP GET baseline; "
          f"bundle bytes transferred cold {f['cold'][0]['bundle_transfer_bytes']}, "
          f"warm {f['warm'][0]['bundle_transfer_bytes']}; DICOM bytes transferred cold "
          f"{f['cold'][0]['dicom_transfer_bytes']}, warm {f['warm'][0]['dicom_transfer_bytes']})")


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

    result.update({
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "django": django.get_version(), "playwright": getattr(playwright, "__version__", None),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "total_s": round(time.perf_counter() - started, 1),
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "method": __doc__.strip(),
    })
    result["machine"]["cpu_count"] = os.cpu_count()
    print_table(result)
    Path(args.out).write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {args.out} ({result['total_s']} s)")
    return 0
