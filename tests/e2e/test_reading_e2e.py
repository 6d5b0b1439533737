"""A reader reads a session in a real browser: images render, the DL overlay shows in aided items only, reads are
stored with their times, and a reload resumes at the right item."""

import io
import math

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
        "p => window.readingApp && window.readingApp.ready && window.readingApp.position === p",
        arg=position,
        timeout=60_000,
    )
    return page.evaluate("() => ({...window.readingApp})")


def rate_and_submit(page, rating: int) -> None:
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
