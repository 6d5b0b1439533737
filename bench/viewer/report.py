"""The viewer benchmark's measurements (:func:`browser_steps`), their summary and the printed table."""

from __future__ import annotations

import statistics

from bench.harness import pct
from bench.viewer.scripts import FACTS_JS
from bench.viewer.steps import (
    SAVED_PAUSE_MS,
    WAIT_MS,
    fetch_case_http,
    load_reading_page,
    new_context,
    page_navigation,
    scroll,
    show_every_label_filled,
    submit_and_time,
    summary,
    wait_prefetched,
    wait_ready,
)


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
            show_every_label_filled(page)
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
        "next_case": {
            "transitions": transitions,
            "total_ms": total,
            "post_ms": summary([t["post_ms"] for t in transitions if t["post_ms"] is not None]),
            "after_pause_ms": summary([t["load_ms"] for t in transitions if t["load_ms"] is not None]),
            "total_ms_to_aided": summary([t["total_ms"] for t in transitions if t["to_aided"]]),
            "total_ms_to_unaided": summary([t["total_ms"] for t in transitions if not t["to_aided"]]),
            "fixed_saved_pause_ms": SAVED_PAUSE_MS,
            "prefetch_wait_s": [round(s, 2) for s in prefetch_s],
        },
        "scroll": scrolls,
        "baseline": {
            "http_fetch_case": fetches,
            "http_fetch_case_median_ms": fetch_ms,
            "worklist_navigation": navs,
            "worklist_navigation_median_ms": nav_ms,
        },
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
            if plain
            else None,
        },
        "console_errors": all_errors,
    }


def fmt(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def print_table(r: dict) -> None:
    f, n, s, b = r["first_image"], r["next_case"], r["scroll"], r["baseline"]
    fetch = b["http_fetch_case_median_ms"]
    m = r["machine"]
    print(
        f"\nviewer bench: WebGL {m.get('webglRenderer')} (Cornerstone backend {m.get('renderBackend')}), "
        f"Chromium {m['chromium']}, {r['cpu_count']} CPUs, viewer canvas {m.get('viewerCanvas')}"
    )
    w = 56
    print(f"{'measure':<{w}} {'median':>8} {'p95':>8} {'n':>3} {'x fetch':>8}")
    rows = [
        ("first image, cold (ms)", f["cold_median_ms"], max(c["ready_ms"] for c in f["cold"]), len(f["cold"])),
        ("first image, warm (ms)", f["warm_median_ms"], max(x["ready_ms"] for x in f["warm"]), len(f["warm"])),
    ]
    for label, key in (
        ("", "total_ms"),
        ("  to an unaided case", "total_ms_to_unaided"),
        ("  to an aided case (overlay)", "total_ms_to_aided"),
        ("  POST until 'Saved'", "post_ms"),
        (f"  after the fixed {n['fixed_saved_pause_ms']} ms 'Saved' pause", "after_pause_ms"),
    ):
        x = n[key]
        rows.append((f"{label or 'submit -> next case shown'} (ms)", x["median"], x["p95"], x["n"]))
    for label, key in (
        ("unaided case", "unaided"),
        ("aided, overlay on", "overlay_on"),
        ("aided, overlay off (o)", "overlay_off"),
    ):
        if key in s:
            lat = s[key]["latency_ms"]
            rows.append((f"scroll: key -> slice rendered, {label} (ms)", lat["median"], lat["p95"], lat["n"]))
    rows += [
        (
            "baseline: HTTP GET of one case's slices (ms)",
            fetch,
            pct([x["ms"] for x in b["http_fetch_case"]], 95),
            len(b["http_fetch_case"]),
        ),
        (
            "baseline: worklist page navigation (ms)",
            b["worklist_navigation_median_ms"],
            max(x["load_ms"] for x in b["worklist_navigation"]),
            3,
        ),
    ]
    for label, med, p95, count in rows:
        ratio = None if med is None else med / fetch
        print(f"{label:<{w}} {fmt(med, 1):>8} {fmt(p95, 1):>8} {count:>3} {fmt(ratio, 2):>8}")
    for label, key in (("unaided", "unaided"), ("overlay on", "overlay_on"), ("overlay off", "overlay_off")):
        if key in s:
            print(
                f"slices/s, {label}: {s[key]['render_bound_slices_per_s']:.1f} render-bound (1 / mean latency), "
                f"{s[key]['driven_slices_per_s']:.1f} wall-clock driven by Playwright"
            )
    print(
        f"(p95 of cold/warm/navigation: the max of their few runs; x fetch = median / the HTTP GET baseline; "
        f"bundle bytes transferred cold {f['cold'][0]['bundle_transfer_bytes']}, "
        f"warm {f['warm'][0]['bundle_transfer_bytes']}; DICOM bytes transferred cold "
        f"{f['cold'][0]['dicom_transfer_bytes']}, warm {f['warm'][0]['dicom_transfer_bytes']})"
    )
