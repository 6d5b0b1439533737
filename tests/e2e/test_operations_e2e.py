"""A new study admin with no shell runs a study from the browser: creates it, imports cases from an upload (a bad
row refused with nothing applied, then fixed), adds two readers, configures the question, precomputes, launches,
and watches a reader's progress move while a second browser context reads."""

import csv
import io
import re
import shutil
import zipfile
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from fixtures.phantom import generate_demo_study
from readerstudy.core.models import AuditEvent
from readerstudy.reading.models import Read
from readerstudy.studies.models import Case, ImageSeries, Study

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

ADMIN_PASSWORD = "e2e-admin-pass-1"
READER_PASSWORD = "e2e-new-reader-pass-9"


def log_in(page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def zip_series(data: Path, out: Path) -> Path:
    """The phantom series as an upload: paths inside the zip as the manifest names them (series/P001/...)."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted((data / "series").rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(data).as_posix())
    return out


def broken_manifest(manifest: Path, out: Path) -> tuple[Path, int]:
    """The same manifest with one bad diameter; returns it and the bad row's number (header = row 1)."""
    rows = list(csv.reader(io.StringIO(manifest.read_text())))
    header = rows[0]
    rows[2][header.index("diameter_mm")] = "twelve"
    out.write_text("".join(",".join(r) + "\n" for r in rows))
    return out, 3


def upload(page, manifest: Path, archive: Path) -> str:
    page.get_by_test_id("nav-import").click()
    page.get_by_test_id("import-manifest").set_input_files(str(manifest))
    page.get_by_test_id("import-zip").set_input_files(str(archive))
    page.get_by_test_id("import-submit").click()
    status = page.get_by_test_id("import-status")
    page.wait_for_function(
        "() => ['succeeded', 'failed'].includes(document.querySelector('[data-testid=import-status]')?.dataset.status)",
        timeout=120_000,
    )
    return status.get_attribute("data-status")


def test_a_new_admin_runs_a_study_from_the_browser(browser, live_server, tmp_path):
    from fixtures.browser import VIEWPORT

    base = live_server.url
    data = tmp_path / "phantoms"
    manifest = generate_demo_study(data, seed=11, n_patients=3, n_lesions=4)
    archive = zip_series(data, tmp_path / "series.zip")
    bad, bad_row = broken_manifest(manifest, tmp_path / "bad-manifest.csv")
    shutil.rmtree(data / "series")  # the upload is all the server gets
    get_user_model().objects.create_user("newadmin", password=ADMIN_PASSWORD, is_staff=True)

    admin_ctx = browser.new_context(viewport=VIEWPORT)
    page = admin_ctx.new_page()
    log_in(page, base, "newadmin", ADMIN_PASSWORD)
    page.goto(f"{base}/studies/")
    page.get_by_test_id("new-study-name").fill("Liver CRLM browser study")
    page.get_by_test_id("new-study-submit").click()
    page.get_by_test_id("overview").wait_for()
    study = Study.objects.get(name="Liver CRLM browser study")

    # A bad row: refused, listed with its row and column, nothing applied (database and storage).
    assert upload(page, bad, archive) == "failed"
    errors = page.get_by_test_id("import-errors").locator("li")
    assert any(
        li.get_attribute("data-row") == str(bad_row) and li.get_attribute("data-column") == "diameter_mm"
        for li in errors.all()
    ), [li.inner_text() for li in errors.all()]
    assert Case.objects.filter(study=study).count() == 0 and ImageSeries.objects.count() == 0

    assert upload(page, manifest, archive) == "succeeded"
    assert "4" in page.get_by_test_id("import-summary").inner_text()
    assert Case.objects.filter(study=study).count() == 4

    # Two readers, new accounts: each gets a one-use set-password link by e-mail.
    page.get_by_test_id("nav-readers").click()
    for name, specialty, years in (
        ("newreader1", "Abdominal radiology", "8"),
        ("newreader2", "General radiology", "3"),
    ):
        page.get_by_test_id("reader-username").fill(name)
        page.get_by_test_id("reader-email").fill(f"{name}@hospital.example")
        page.get_by_test_id("reader-specialty").fill(specialty)
        page.get_by_test_id("reader-years").fill(years)
        page.get_by_test_id("reader-training").fill("30 min on 10 practice cases")
        page.get_by_test_id("reader-add").click()
        page.get_by_test_id("reader-row").filter(has_text=name).wait_for()
    assert page.get_by_test_id("reader-row").count() == 2
    links = {m.to[0]: re.search(r"https?://\S+", m.body).group(0) for m in mail.outbox}
    assert set(links) == {"newreader1@hospital.example", "newreader2@hospital.example"}

    # The question, from the study, not from code.
    page.get_by_test_id("nav-configure").click()
    page.get_by_test_id("config-question").fill("Is this lesion a colorectal liver metastasis?")
    page.get_by_test_id("config-save").click()
    page.get_by_test_id("config-form").wait_for()
    study.refresh_from_db()
    assert study.question == "Is this lesion a colorectal liver metastasis?"

    # Precompute from the overview, then launch: the checklist is all green.
    page.get_by_test_id("nav-overview").click()
    page.get_by_test_id("precompute-button").click()
    page.wait_for_load_state()
    page.get_by_test_id("nav-overview").click()
    checks = page.get_by_test_id("readiness-check")
    assert checks.count() > 0 and all(c.get_attribute("data-ok") == "true" for c in checks.all()), [
        c.inner_text() for c in checks.all()
    ]
    page.get_by_test_id("launch-button").click()
    page.wait_for_load_state()
    study.refresh_from_db()
    assert study.status == Study.Status.LAUNCHED
    page.get_by_test_id("nav-configure").click()
    assert page.get_by_test_id("config-readonly").is_visible() and page.get_by_test_id("config-form").count() == 0

    # Progress, live: a reader in a second context reads two cases; the admin's page follows without a reload.
    page.get_by_test_id("nav-progress").click()
    row = page.locator("[data-testid=progress-row][data-reader='newreader1']")
    assert row.get_attribute("data-read") == "0"
    total = int(row.get_attribute("data-total"))
    assert total > 0

    reader_ctx = browser.new_context(viewport=VIEWPORT)
    reader = reader_ctx.new_page()
    reader.goto(links["newreader1@hospital.example"])
    reader.fill("input[name=new_password1]", READER_PASSWORD)
    reader.fill("input[name=new_password2]", READER_PASSWORD)
    reader.locator("input[type=submit], button[type=submit]").last.click()
    reader.wait_for_load_state()
    log_in(reader, base, "newreader1", READER_PASSWORD)
    reader.goto(f"{base}/reading/")
    reader.get_by_role("link", name="Start").first.click()
    reader.get_by_test_id("instructions-ack").click()
    for position in range(2):
        reader.wait_for_function(
            "p => window.readingApp && window.readingApp.ready && window.readingApp.position === p", arg=position,
            timeout=60_000,
        )  # fmt: skip
        reader.wait_for_function("() => window.readingApp.prefetchDone === true", timeout=60_000)
        reader.get_by_test_id("rating-number").fill(str(20 + position))
        reader.get_by_test_id("submit-read").click()
    reader.wait_for_function("() => window.readingApp.position === 2", timeout=60_000)
    assert Read.objects.filter(study=study).count() == 2
    assert "Is this lesion a colorectal liver metastasis?" in reader.get_by_test_id("question").inner_text()

    page.wait_for_function(
        "() => document.querySelector(\"[data-testid=progress-row][data-reader='newreader1']\").dataset.read === '2'",
        timeout=30_000,
    )
    assert page.evaluate("() => performance.getEntriesByType('navigation').length") == 1  # no page reload
    percent = float(re.search(r"[\d.]+", page.get_by_test_id("study-percent").inner_text()).group(0))
    assert percent > 0
    verbs = set(AuditEvent.objects.filter(study=study).values_list("verb", flat=True))
    assert {"create_study", "import_cases", "launch_study"} <= verbs, verbs
    reader_ctx.close()
    admin_ctx.close()
