"""The viewer benchmark's browser steps: page loads, the submit -> next case transition, slice scrolling."""

from __future__ import annotations

import http.cookiejar
import statistics
import time
import urllib.request

from bench.harness import pct
from bench.viewer.scripts import INIT_SCRIPT, NETWORK_JS
from bench.viewer.study import PASSWORD
from fixtures.browser import VIEWPORT, log_in

SAVED_PAUSE_MS = 600  # frontend/src/session.js SAVED_PAUSE_MS: "Saved" stays up this long before the next case loads


WAIT_MS = 60_000


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "median": statistics.median(values) if values else None,
        "p95": pct(values, 95) if values else None,
        "min": min(values, default=None),
        "max": max(values, default=None),
        "values": [round(v, 2) for v in values],
    }


def new_context(browser, base: str):
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(INIT_SCRIPT)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    log_in(page, base, "bench-reader", PASSWORD)
    return context, page, errors


def wait_ready(page, position: int) -> None:
    page.wait_for_function(
        "p => window.readingApp && window.readingApp.ready && window.readingApp.position === p",
        arg=position,
        timeout=WAIT_MS,
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
        arg=[item["id"], item["n_slices"]],
        timeout=WAIT_MS,
        polling=50,
    )
    page.wait_for_timeout(300)  # fetched is not yet decoded into Cornerstone's cache: a little slack
    return time.perf_counter() - start


def show_every_label_filled(page) -> None:
    """The costliest overlay display: fill and outline, every label shown."""
    page.get_by_test_id("overlay-mode").select_option("fill_outline")
    for box in page.get_by_test_id("overlay-label-toggle").all():
        box.check()
    page.wait_for_function("() => window.readingApp.overlayVisible === true", timeout=WAIT_MS)


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
    return {
        "from": position,
        "to_aided": to_aided,
        "total_ms": total,
        "post_ms": post,
        "load_ms": None if saved is None else ready - saved - SAVED_PAUSE_MS,
    }


def scroll(page, n_slices: int, count: int, warmup: int) -> dict:
    """Trusted ArrowDown/ArrowUp presses, one at a time, each waited for until its slice is rendered."""
    s = page.evaluate("() => window.readingApp.viewerState().slice_index")
    page.locator("[data-testid=viewport]").first.focus()
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
    return {
        "slices": count,
        "warmup": warmup,
        "latency_ms": summary(latencies),
        "render_events_until_target": events / count,
        "render_bound_slices_per_s": 1000 / mean_ms,
        "driven_slices_per_s": count / wall_s,
    }
