"""A reader reads a session in a real browser: images render, the DL overlay shows in aided items only, reads are
stored with their times, and a reload resumes at the right item."""

import io
import json
import math
import re
import time

import numpy as np
import pytest
from django.core.management import call_command

from fixtures.browser import log_in as browser_log_in
from fixtures.studies import phantom_crossover_study
from inference.models import Prediction
from readerstudy.reading.actions import launch_study
from readerstudy.reading.models import Read, ReadingSession
from readerstudy.studies.models import Study

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

PASSWORD = "e2e-reader-pass-1"


def canvas_pixels(page) -> np.ndarray:
    from PIL import Image

    png = page.get_by_test_id("viewer").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)


OVERLAY_PIXELS_JS = """
() => {
  const canvas = document.querySelector('[data-testid=viewport][data-series-role] ~ canvas[data-testid=overlay-canvas]')
    || document.querySelector('canvas[data-testid=overlay-canvas]');
  const {width, height} = canvas;
  if (!width || !height) return {opaque: 0, translucent: 0, colors: []};
  const data = canvas.getContext('2d').getImageData(0, 0, width, height).data;
  let opaque = 0, translucent = 0;
  const colors = new Set();
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] === 255) { opaque += 1; colors.add(`${data[i]},${data[i + 1]},${data[i + 2]}`); }
    else if (data[i + 3] > 0) translucent += 1;
  }
  return {opaque, translucent, colors: [...colors].sort()};
}
"""


def overlay_pixels(page) -> dict:
    """Pixels the page drew on the DL overlay canvas: opaque ones (outlines, by colour) and translucent (fill)."""
    return page.evaluate(OVERLAY_PIXELS_JS)


def build_study(tmp_path) -> Study:
    built = phantom_crossover_study(
        tmp_path / "data", name="E2E", password=PASSWORD, phantom_seed=99, n_patients=3, n_lesions=6
    )
    # The real precompute with the demo models: the page must show the overlays it stores.
    call_command("precompute", "--study", built.study.name, "--no-progress")
    launch_study(built.admin, built.study)
    return built.study


def log_in(page, live_server, username: str) -> None:
    browser_log_in(page, live_server.url, username, PASSWORD)


def wait_ready(page, position: int) -> dict:
    page.wait_for_function(
        # ready: the first image is shown; loaded: every slice is (scrolling, sync and MPR need them all).
        "p => window.readingApp && window.readingApp.ready && window.readingApp.position === p"
        " && window.readingApp.loaded",
        arg=position,
        timeout=60_000,
    )
    return page.evaluate("() => ({...window.readingApp})")


def settle(page) -> None:
    """Wait until the next case's images are prefetched: the live test server shares one SQLite connection between
    its request threads, so a submit racing image requests can hit "table is locked" (never on PostgreSQL)."""
    page.wait_for_function("() => window.readingApp.prefetchDone === true", timeout=60_000)


def rate_and_submit(page, rating: int) -> None:
    settle(page)
    slider = page.get_by_test_id("rating-slider")
    assert page.get_by_test_id("submit-read").is_disabled()  # no preset rating: it must be set first
    slider.focus()
    slider.fill(str(rating))
    assert page.get_by_test_id("rating-value").inner_text().strip() == str(rating)
    page.get_by_test_id("submit-read").click()


def test_reader_reads_a_full_session_with_overlay_only_in_aided_items(page, live_server, tmp_path):
    study = build_study(tmp_path)
    session = ReadingSession.objects.get(study=study, reader__username="reader1", index=1)
    items = list(session.items.select_related("modality").order_by("position"))
    assert {i.modality.key for i in items} == {"unaided", "aided"}

    log_in(page, live_server, "reader1")
    rows = page.get_by_test_id("worklist-session")
    assert rows.count() == 2
    page.get_by_role("link", name="Start").click()
    # Before the first session: the study's instructions, acknowledged once.
    assert "metastasis" in page.get_by_test_id("instructions").inner_text()
    page.get_by_test_id("instructions-ack").click()

    seen = set()

    def read_item(position: int, item) -> None:
        state = wait_ready(page, position)
        assert state["itemId"] == item.pk
        assert page.get_by_test_id("progress").inner_text().startswith(f"{position} of {len(items)}")
        pixels = canvas_pixels(page)
        assert pixels.std() > 10, "the viewer canvas is blank"
        if item.modality.shows_dl:
            probability = Prediction.objects.get(case=item.case).probability
            shown = math.floor(probability * 100 + 0.5)  # JavaScript Math.round
            assert f"DL: {shown}% metastasis" == page.get_by_test_id("dl-probability").inner_text().strip()
            # Every label shown, filled: the overlay canvas carries label pixels; the toggle clears them.
            page.get_by_test_id("overlay-mode").select_option("fill_outline")
            for box in page.get_by_test_id("overlay-label-toggle").all():
                box.check()
            page.wait_for_function("() => window.readingApp.overlayVisible === true")
            assert overlay_pixels(page)["opaque"] + overlay_pixels(page)["translucent"] > 0
            page.get_by_test_id("overlay-toggle").click()
            page.wait_for_function("() => window.readingApp.overlayVisible === false")
            assert overlay_pixels(page) == {"opaque": 0, "translucent": 0, "colors": []}
        else:
            assert page.get_by_test_id("dl-probability").count() == 0
            assert page.get_by_test_id("overlay-toggle").count() == 0
        seen.add(item.modality.key)
        page.wait_for_timeout(1100)  # some active reading time
        rate_and_submit(page, 10 + position)

    for position, item in enumerate(items[:4]):
        read_item(position, item)
        page.wait_for_function(
            "p => window.readingApp && window.readingApp.position === p", arg=position + 1, timeout=60_000
        )
    assert seen == {"unaided", "aided"}

    # Reload mid-session: the page resumes at the first unread item; then the reader finishes the session.
    page.reload()
    for position, item in enumerate(items[4:], start=4):
        read_item(position, item)
    message = page.get_by_test_id("reading-message")
    message.wait_for(timeout=60_000)
    assert message.get_attribute("data-state") == "complete" and "Session complete" in message.inner_text()

    reads = list(Read.objects.filter(item__session=session).order_by("item__position"))
    assert [r.rating for r in reads] == [10 + i for i in range(len(items))]
    assert all(r.active_seconds >= 1.0 for r in reads)
    assert all({"window_width", "window_level", "zoom", "slice_index"} <= set(r.viewer_state) for r in reads)
    session.refresh_from_db()
    assert session.finished_at is not None
    errors = [m for m in page.console_messages if m.startswith(("pageerror", "error"))]
    assert not errors, errors


# --- the workstation: what radiologists use besides the rating ------------------------------------------------------


def capture_items(page) -> list[dict]:
    """Every item payload the page received from the API (next/item responses), in order."""
    items: list[dict] = []

    def on_response(response) -> None:
        if "/api/" in response.url and ("/next/" in response.url or "/items/" in response.url) and response.ok:
            if "json" in (response.headers.get("content-type") or ""):
                try:
                    body = response.json()
                except Exception:
                    return
                if isinstance(body, dict) and "modality" in body:
                    items.append(body)

    page.on("response", on_response)
    return items


def stored_hu(case, slice_index: int, i: int, j: int) -> int:
    import pydicom
    from django.core.files.storage import default_storage

    from readerstudy.studies.storage import slice_name

    with default_storage.open(slice_name(case.series, slice_index), "rb") as f:
        ds = pydicom.dcmread(f)
    return round(float(ds.pixel_array[j, i]) * float(ds.RescaleSlope) + float(ds.RescaleIntercept))


def viewport_box(page) -> dict:
    return page.locator("[data-testid=viewport][data-series-role]").first.bounding_box()


def lesion_on_page(page) -> tuple[float, float, float]:
    at = page.evaluate("() => window.readingApp.lesionOnCanvas()")
    box = viewport_box(page)
    return box["x"] + at["x"], box["y"] + at["y"], at["pxPerMm"]


def drag(page, x0: float, y0: float, x1: float, y1: float) -> None:
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=4)
    page.mouse.move(x1, y1, steps=4)
    page.mouse.up()


def active_in_viewer(page) -> bool:
    return page.evaluate("() => !!document.activeElement.closest('.ra-viewer-wrap')")


def check_chrome_keys_and_measurements(page, item) -> list[dict]:
    """Orientation, position, HU readout, Tab out of the viewer, Enter to the rating, caliper and ROI."""
    case = item.case
    sides = {m.get_attribute("data-side"): m.inner_text() for m in page.get_by_test_id("orientation-marker").all()}
    assert sides == {"left": "R", "right": "L", "top": "A", "bottom": "P"}  # axial, radiological convention
    assert re.match(r"Pos -?\d+\.\d mm · Thk \d+\.\d mm", page.get_by_test_id("slice-position").inner_text())

    x, y, px_per_mm = lesion_on_page(page)
    # The marker's ticks clear the lesion: they start outside its reference radius.
    gap_px = float(page.get_by_test_id("lesion-marker").first.get_attribute("data-gap-px"))
    assert gap_px >= case.diameter_mm / 2 * px_per_mm, (gap_px, case.diameter_mm, px_per_mm)
    page.mouse.move(x, y)
    readout = page.get_by_test_id("hu-readout").inner_text()
    hu, i, j = map(int, re.match(r"HU (-?\d+) \((\d+), (\d+)\)", readout).groups())
    assert hu == stored_hu(case, case.slice_index, i, j)

    # Keyboard: Tab and Shift+Tab leave and re-enter the viewer; Enter in the viewer moves to the rating.
    page.locator("[data-testid=viewport]").first.focus()
    page.keyboard.press("Tab")
    assert not active_in_viewer(page)
    page.keyboard.press("Shift+Tab")
    assert active_in_viewer(page)
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.dataset.testid") == "rating-slider"

    # Caliper across the lesion's reference diameter, through its centre; then an elliptical ROI inside it.
    page.locator("[data-testid=viewport]").first.focus()
    page.keyboard.press("l")
    assert page.get_by_test_id("measure-length").get_attribute("aria-pressed") == "true"
    half = case.diameter_mm / 2 * px_per_mm
    drag(page, x - half, y, x + half, y)
    page.get_by_test_id("measure-roi").click()
    r = max(3.0, case.diameter_mm / 4 * px_per_mm)
    drag(page, x - r, y - r, x + r, y + r)
    page.wait_for_function("() => window.readingApp.measurements().length === 2")
    measurements = page.evaluate("() => window.readingApp.measurements()")
    length = next(m for m in measurements if m["tool"] == "length")
    assert abs(length["length_mm"] - case.diameter_mm) <= 1.0, (length, case.diameter_mm)
    ellipse = next(m for m in measurements if m["tool"] == "ellipse")
    assert ellipse["area_mm2"] > 0 and ellipse["sd_hu"] >= 0 and -1000 < ellipse["mean_hu"] < 3000
    page.wait_for_function("() => document.querySelectorAll('[data-testid=measurement-list] li').length === 2")
    page.get_by_test_id("tool-wl").click()
    return measurements


def check_cine_and_mpr(page) -> None:
    before = page.evaluate("() => window.readingApp.sliceIndex")
    page.get_by_test_id("cine-toggle").click()
    page.wait_for_function("s => window.readingApp.sliceIndex !== s", arg=before, timeout=10_000)
    page.get_by_test_id("cine-toggle").click()
    assert page.evaluate("() => window.readingApp.cine") is False
    page.get_by_test_id("mpr-toggle").click()
    page.wait_for_function("() => window.readingApp.mprRendered() === 3", timeout=60_000)
    views = page.get_by_test_id("mpr-view")
    assert sorted(v.get_attribute("data-orientation") for v in views.all()) == ["axial", "coronal", "sagittal"]
    assert page.get_by_test_id("mpr").screenshot() and page.get_by_test_id("viewer").is_hidden()
    page.get_by_test_id("mpr-toggle").click()
    page.wait_for_function("() => window.readingApp.mpr === false")
    assert page.get_by_test_id("viewer").is_visible()


def check_legend_against_pixels(page, payload: dict) -> None:
    """The legend lists exactly the server's labels in their colours, and the canvas draws those colours only."""
    legend = page.get_by_test_id("overlay-legend").locator("li")
    listed = {li.get_attribute("data-label"): li.get_attribute("data-color") for li in legend.all()}
    served = {lab["name"]: ",".join(str(c) for c in lab["color"]) for lab in payload["dl"]["labels"]}
    assert listed == served
    marker = page.get_by_test_id("lesion-marker").first.get_attribute("data-color")
    assert marker not in listed.values()

    page.get_by_test_id("overlay-mode").select_option("outline")
    for box in page.get_by_test_id("overlay-label-toggle").all():
        box.check()
    drawn = overlay_pixels(page)
    assert drawn["opaque"] > 0 and drawn["translucent"] == 0
    assert set(drawn["colors"]) <= set(listed.values()), (drawn["colors"], listed)
    assert listed["liver"] in drawn["colors"]  # the lesion's slice runs through the liver
    page.locator("[data-testid=overlay-legend] li[data-label='liver'] input").uncheck()
    assert listed["liver"] not in overlay_pixels(page)["colors"]
    page.get_by_test_id("overlay-mode").select_option("fill_outline")
    assert overlay_pixels(page)["translucent"] > 0
    page.get_by_test_id("overlay-mode").select_option("off")
    assert overlay_pixels(page)["opaque"] == 0
    page.get_by_test_id("overlay-mode").select_option("outline")


def check_typed_ratings(page) -> None:
    number = page.get_by_test_id("rating-number")
    for typed, reason in (("150", "off the scale"), ("12.5", "not a whole number")):
        number.fill(typed)
        assert reason in page.get_by_test_id("rating-error").inner_text()
        assert page.get_by_test_id("submit-read").is_disabled()
    number.fill("")
    assert "final" in page.get_by_test_id("rating-final-note").inner_text()


def test_a_reader_uses_the_workstation(page, live_server, tmp_path):
    study = build_study(tmp_path)
    session = ReadingSession.objects.get(study=study, reader__username="reader1", index=1)
    items = list(session.items.select_related("modality", "case__series").order_by("position"))
    payloads = capture_items(page)
    log_in(page, live_server, "reader1")
    page.get_by_role("link", name="Start").first.click()
    assert study.instructions.splitlines()[0] in page.get_by_test_id("instructions").inner_text()
    page.get_by_test_id("instructions-ack").click()

    done = {"measured": None, "legend": False, "reload": None, "not_assessable": None}
    for position, item in enumerate(items):
        wait_ready(page, position)
        banner = page.get_by_test_id("modality-banner")
        assert banner.get_attribute("data-modality") == item.modality.key
        assert item.modality.label in banner.inner_text()
        payload = payloads[-1]
        assert payload["id"] == item.pk
        if item.modality.shows_dl and not done["legend"]:
            check_legend_against_pixels(page, payload)
            done["legend"] = True
        if not item.modality.shows_dl and done["measured"] is None:
            done["measured"] = (item, check_chrome_keys_and_measurements(page, item))
            check_cine_and_mpr(page)
            check_typed_ratings(page)
        elif done["reload"] is None and position >= 1:
            # Reading time survives a reload: the clock resumes from what the earlier page load had counted.
            started = time.monotonic()
            page.wait_for_timeout(2500)
            before_reload = time.monotonic() - started
            page.reload()
            wait_ready(page, position)
            resumed = time.monotonic()
            page.wait_for_timeout(1500)
            done["reload"] = (item, before_reload + (time.monotonic() - resumed))
        elif position == len(items) - 1:
            page.get_by_test_id("not-assessable").check()
            assert page.get_by_test_id("submit-read").is_disabled()  # a reason is required
            reason = page.get_by_test_id("not-assessable-reason")
            reason.select_option(index=1)
            page.get_by_test_id("read-comment").fill("=HYPERLINK(1) motion artefact")
            settle(page)
            page.get_by_test_id("submit-read").click()
            done["not_assessable"] = (item, reason.input_value())
            continue
        rate_and_submit(page, 30 + position)

    message = page.get_by_test_id("reading-message")
    message.wait_for(timeout=60_000)
    assert message.get_attribute("data-state") == "complete"
    assert "next session (2) opens on" in message.inner_text() and "UTC" in message.inner_text()

    measured_item, measurements = done["measured"]
    read = Read.objects.get(item=measured_item)
    assert read.viewer_state["measurements"] == measurements
    reloaded_item, elapsed = done["reload"]
    read = Read.objects.get(item=reloaded_item)
    assert read.active_seconds >= elapsed - 1.0, (read.active_seconds, elapsed)
    assert read.served_seconds is not None and read.served_seconds >= read.active_seconds - 0.5
    na_item, reason = done["not_assessable"]
    read = Read.objects.get(item=na_item)
    assert (read.rating, read.not_assessable, read.not_assessable_reason) == (None, True, reason)
    assert read.comment == "=HYPERLINK(1) motion artefact"
    assert done["legend"]
    # Blinding: no unaided item carried any DL field in any response.
    unaided = [p for p in payloads if not p["modality"]["shows_dl"]]
    assert unaided
    for p in unaided:
        text = json.dumps(p)
        assert "dl" not in p and "/overlay" not in text and "probability" not in text, p
    errors = [m for m in page.console_messages if m.startswith(("pageerror", "error"))]
    assert not errors, errors


def test_two_series_cases_hang_side_by_side_and_scroll_in_sync(page, live_server, tmp_path):
    from readerstudy.studies.actions import update_study

    built = phantom_crossover_study(
        tmp_path / "data",
        name="E2E two series",
        password=PASSWORD,
        phantom_seed=7,
        n_patients=2,
        n_lesions=4,
        extra_series_roles=("arterial",),
    )
    study = update_study(
        built.admin,
        built.study,
        hanging_layout="1x2",
        question="Is the marked lesion a colorectal metastasis?",
        scale_low_label="surely benign",
        scale_high_label="surely CRLM",
        overlay_mode="fill_outline",
        overlay_hidden_labels=[],
    )
    call_command("precompute", "--study", study.name, "--no-progress")
    launch_study(built.admin, study)
    session = ReadingSession.objects.get(study=study, reader__username="reader1", index=1)
    items = list(session.items.select_related("modality").order_by("position"))

    page.set_viewport_size({"width": 1366, "height": 768})  # a common reading-room laptop
    log_in(page, live_server, "reader1")
    page.get_by_role("link", name="Start").first.click()
    page.get_by_test_id("instructions-ack").click()
    wait_ready(page, 0)

    viewports = page.get_by_test_id("viewport")
    assert [v.get_attribute("data-series-role") for v in viewports.all()] == ["portal-venous", "arterial"]
    assert page.get_by_test_id("question").inner_text() == "Is the marked lesion a colorectal metastasis?"
    assert "surely benign" in page.locator(".ra-legend").inner_text()
    assert page.get_by_test_id("layout-select").input_value() == "1x2"

    # Scrolling one series moves the other to the slice nearest the same patient position (5 mm vs 2.5 mm slices).
    viewports.first.focus()
    for _ in range(5):
        page.keyboard.press("ArrowDown")
    page.wait_for_timeout(400)
    primary, arterial = page.evaluate("() => window.readingApp.viewports()")
    assert abs(primary["positionMm"] - arterial["positionMm"]) <= 2.5 + 1e-6, (primary, arterial)
    page.evaluate("() => window.readingApp.scroll('arterial', 3)")
    page.wait_for_timeout(400)
    primary, arterial = page.evaluate("() => window.readingApp.viewports()")
    assert abs(primary["positionMm"] - arterial["positionMm"]) <= 1.25 + 1e-6, (primary, arterial)

    # The overlay is drawn on the series it was computed on only.
    aided = items[0].modality.shows_dl
    canvases = page.locator("canvas[data-testid=overlay-canvas]")
    counts = [
        c.evaluate(
            "c => c.width ? Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)"
            ".filter((v, i) => i % 4 === 3 && v > 0).length : 0"
        )
        for c in canvases.all()
    ]
    assert counts[1] == 0 and ((counts[0] > 0) == aided), counts

    # 1x1: one viewport and a tab per series.
    page.get_by_test_id("layout-select").select_option("1x1")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=viewport]').length === 1")
    tabs = page.get_by_test_id("series-tab")
    assert [t.get_attribute("data-series-role") for t in tabs.all()] == ["portal-venous", "arterial"]
    tabs.nth(1).click()
    page.wait_for_function("() => document.querySelector('[data-testid=viewport]').dataset.seriesRole === 'arterial'")
    page.get_by_test_id("layout-select").select_option("1x2")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=viewport]').length === 2")

    # Logging out mid-case asks first; dismissing keeps the reader on the case.
    dialogs: list[str] = []
    page.once("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.get_by_role("button", name="Log out").click()
    assert dialogs and "not saved" in dialogs[0]
    assert page.evaluate("() => window.readingApp.ready") is True

    rate_and_submit(page, 55)
    status = page.get_by_test_id("save-status")
    page.wait_for_function("() => window.readingApp.position === 1", timeout=60_000)
    box = status.bounding_box()
    assert box and box["y"] + box["height"] <= 768 + 1, box  # messages stay above the fold at 1366x768
    banner = page.get_by_test_id("modality-banner").bounding_box()
    assert banner and banner["y"] + banner["height"] <= 768
    read = Read.objects.get(item=items[0])
    assert read.viewer_state["layout"] == "1x2"
    assert [v["series_role"] for v in read.viewer_state["viewports"]] == ["portal-venous", "arterial"]
    errors = [m for m in page.console_messages if m.startswith(("pageerror", "error"))]
    assert not errors, errors


def test_a_practice_session_shows_the_truth_after_each_rating_and_counts_for_nothing(page, live_server, tmp_path):
    from django.contrib.auth import get_user_model

    from readerstudy.results.table import reads_table
    from tests.factories import build_study

    study = build_study(tmp_path, readers=1, n_patients=2, lesions_per_patient=1, practice_cases=2, predict=0.7)
    reader = get_user_model().objects.get(username="reader1")
    reader.set_password(PASSWORD)
    reader.save()
    practice = ReadingSession.objects.get(study=study, reader=reader, practice=True)
    items = list(practice.items.select_related("case__truth", "modality").order_by("position"))
    assert len(items) == 4  # two practice cases, each in both modalities

    log_in(page, live_server, "reader1")
    first = page.get_by_test_id("worklist-session").first
    assert first.get_attribute("data-practice") == "true" and "Practice (optional)" in first.inner_text()
    first.get_by_role("link", name="Start").click()
    page.get_by_test_id("instructions-ack").click()
    for position, item in enumerate(items):
        wait_ready(page, position)
        assert page.get_by_test_id("practice-banner").is_visible()
        rate_and_submit(page, 60 + position)
        feedback = page.get_by_test_id("practice-feedback")
        feedback.wait_for(timeout=30_000)
        assert feedback.get_attribute("data-truth") == item.case.truth.label
        assert f"Your rating: {60 + position}" in feedback.inner_text()
        page.get_by_test_id("practice-next").click()
    message = page.get_by_test_id("reading-message")
    message.wait_for(timeout=60_000)
    assert message.get_attribute("data-state") == "complete"
    assert Read.objects.filter(item__session=practice).count() == 4
    assert reads_table(study).empty  # practice reads are in no export and no analysis
    errors = [m for m in page.console_messages if m.startswith(("pageerror", "error"))]
    assert not errors, errors


def test_the_case_clinical_panel_shows_the_manifest_covariates_and_text_as_text(page, live_server, tmp_path):
    from readerstudy.studies import actions
    from tests.factories import balanced_rows, make_user, write_manifest

    hostile = '<img src=x onerror="window.__pwned = 1">\nSecond line'
    admin = make_user("admin", superuser=True)
    study = actions.create_study(admin, "Clinical E2E", seed=3, show_clinical=True)
    actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False)
    actions.add_modality(admin, study, "aided", "Aided", shows_dl=True)
    reader = make_user("reader1")
    reader.set_password(PASSWORD)
    reader.save()
    actions.add_member(admin, study, reader, "reader")
    rows = balanced_rows(2, 1)
    for row in rows:
        row.update(age="64", sex="M", case_text=hostile)
    actions.import_cases(admin, study, write_manifest(tmp_path / "import", rows))
    launch_study(admin, study, accept_missing_predictions=True)

    log_in(page, live_server, "reader1")
    page.get_by_role("link", name="Start").first.click()
    page.get_by_test_id("instructions-ack").click()
    wait_ready(page, 0)
    panel = page.get_by_test_id("case-clinical")
    assert panel.is_visible()
    assert panel.locator("dt").all_inner_texts() == ["Age", "Sex"]
    assert panel.locator("dd").all_inner_texts() == ["64 years", "male"]
    assert page.get_by_test_id("case-text").inner_text() == hostile  # the markup as text, its line break kept
    assert panel.locator("img, script").count() == 0 and page.evaluate("() => window.__pwned === undefined")
