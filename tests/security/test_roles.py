"""Every endpoint as every role: the expected status, and nothing that should stay hidden ever shows.

Roles: anonymous, the study's reader, a reader of another study, the study's statistician, the study's admin
(staff, not superuser), and a superuser. Truth, other readers' reads and DL output in unaided items must never
reach a reader.
"""

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.test import Client

from readerstudy.reading import actions as reading_actions
from readerstudy.reading.models import ReadingSession
from readerstudy.results.models import AnalysisRun, Export
from readerstudy.studies import actions
from tests.factories import build_study, make_user

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "reader", "other_reader", "statistician", "study_admin", "superuser"]
TRUTH_MARKERS = ('"crlm"', '"hemangioma"', "truth", "histology", "follow-up")


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setattr("django.db.transaction.on_commit", lambda func, using=None, robust=False: func())
    superuser = make_user("admin", superuser=True)
    study = build_study(tmp_path, readers=2, n_patients=3, lesions_per_patient=2, name="Matrix", predict=0.7)
    other = build_study(tmp_path / "o", admin=superuser, readers=0, name="Other", launch=False)
    other_reader = make_user("outsider")
    actions.add_member(superuser, other, other_reader, "reader")
    coordinator = make_user("coordinator", staff=True)
    coordinator.user_permissions.add(
        *Permission.objects.filter(content_type__app_label__in=["core", "studies", "reading"])
    )
    actions.add_member(superuser, study, coordinator, "admin")
    actions.add_member(superuser, study, make_user("stat"), "statistician")
    reader = make_user("reader1")
    actions.acknowledge_instructions(reader, study)  # the reading page comes after the instructions
    session = ReadingSession.objects.get(study=study, reader=reader, index=1)
    reading_actions.start_session(reader, session)
    items = list(session.items.select_related("modality").order_by("position"))
    reading_actions.submit_read(reader, items[0], rating=55, idempotency_key="k0", active_seconds=2)
    theirs = ReadingSession.objects.get(study=study, reader__username="reader2", index=1)
    call_command("simulate_reads", "Matrix", "--no-progress")  # reader2's reads exist (and reader1's finish)
    export = Export.objects.create(study=study, created_by=superuser, kind="csv")
    run = AnalysisRun.objects.create(study=study, created_by=superuser, parameters={"analyses": ["rrrc"]})
    users = {"reader": reader, "other_reader": other_reader, "statistician": make_user("stat"),
             "study_admin": coordinator, "superuser": superuser}  # fmt: skip
    return {"study": study, "session": session, "item": items[1], "theirs": theirs, "export": export, "run": run,
            "users": users, "other": other}  # fmt: skip


def client_as(world, role):
    client = Client()
    if role != "anonymous":
        client.force_login(world["users"][role])
    return client


# (name, method, url template, expected status per role in ROLES order)
OK, FORBIDDEN, NOT_FOUND, LOGIN, API_ANON = 200, 403, 404, 302, 403
MATRIX = [
    ("worklist api", "get", "/api/worklist/", [API_ANON, OK, OK, OK, OK, OK]),
    ("own session", "get", "/api/sessions/{session}/", [API_ANON, OK, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND]),
    ("other's session", "get", "/api/sessions/{theirs}/", [API_ANON] + [NOT_FOUND] * 5),
    # reader1's sessions are finished (simulate_reads): a finished session's items are never served again.
    ("item", "get", "/api/items/{item}/", [API_ANON] + [NOT_FOUND] * 5),
    ("image", "get", "/api/items/{item}/images/0", [API_ANON] + [NOT_FOUND] * 5),
    ("overlay", "get", "/api/items/{item}/overlay", [API_ANON] + [NOT_FOUND] * 5),
    ("other's item", "get", "/api/items/{their_item}/", [API_ANON] + [NOT_FOUND] * 5),
    ("submit to other's item", "post", "/api/items/{their_item}/read/", [API_ANON] + [NOT_FOUND] * 5),
    ("schema", "get", "/api/schema/", [API_ANON, OK, OK, OK, OK, OK]),
    ("worklist page", "get", "/reading/", [LOGIN, OK, OK, OK, OK, OK]),
    ("reading page", "get", "/reading/session/{session}/", [LOGIN, OK, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND]),
    ("instructions", "get", "/reading/study/{study}/instructions/", [LOGIN, OK] + [NOT_FOUND] * 4),
    ("other's instructions", "get", "/reading/study/{other}/instructions/", [LOGIN] + [NOT_FOUND] * 5),
    # Results: non-members get "not found" for existing ids, as for missing ones (a 403 would confirm the id).
    ("results study", "get", "/results/study/{study}/", [LOGIN, NOT_FOUND, NOT_FOUND, OK, OK, OK]),
    ("request export", "post", "/results/study/{study}/", [LOGIN, NOT_FOUND, NOT_FOUND, 302, 302, 302]),
    ("download export", "get", "/results/export/{export}/download", [LOGIN, NOT_FOUND, NOT_FOUND, 404, 404, 404]),
    ("run report", "get", "/results/run/{run}/", [LOGIN, NOT_FOUND, NOT_FOUND, OK, OK, OK]),
    ("run status", "get", "/results/run/{run}/status", [LOGIN, NOT_FOUND, NOT_FOUND, OK, OK, OK]),
    # The matrix's run is queued: its result is nobody's yet (test_report_views downloads a finished one).
    ("run result json", "get", "/results/run/{run}/result.json", [LOGIN] + [NOT_FOUND] * 5),
    ("missing study", "get", "/results/study/999999/", [LOGIN, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND]),
    ("missing run", "get", "/results/run/999999/", [LOGIN, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND]),
    # Operations pages: the study's admins (and superusers) only; everyone else "not found", anonymous to login.
    ("ops studies", "get", "/studies/", [LOGIN, OK, OK, OK, OK, OK]),
    ("ops overview", "get", "/studies/{study}/", [LOGIN, NOT_FOUND, NOT_FOUND, NOT_FOUND, OK, OK]),
    ("ops configure", "get", "/studies/{study}/configure/", [LOGIN, NOT_FOUND, NOT_FOUND, NOT_FOUND, OK, OK]),
    # Planning: the study's statisticians too (power from a pilot); storing the pilot is the admins' action.
    ("ops planning", "get", "/studies/{study}/planning/", [LOGIN, NOT_FOUND, NOT_FOUND, OK, OK, OK]),
    ("ops readers", "get", "/studies/{study}/readers/", [LOGIN, NOT_FOUND, NOT_FOUND, NOT_FOUND, OK, OK]),
    ("ops progress", "get", "/studies/{study}/progress/", [LOGIN, NOT_FOUND, NOT_FOUND, NOT_FOUND, OK, OK]),
    ("ops progress json", "get", "/studies/{study}/progress.json", [LOGIN, NOT_FOUND, NOT_FOUND, NOT_FOUND, OK, OK]),
    ("ops progress csv", "get", "/studies/{study}/progress.csv", [LOGIN, NOT_FOUND, NOT_FOUND, NOT_FOUND, OK, OK]),
    ("ops launch", "post", "/studies/{study}/launch/", [LOGIN, NOT_FOUND, NOT_FOUND, NOT_FOUND, 302, 302]),
    ("ops interim", "post", "/studies/{study}/interim/", [LOGIN, NOT_FOUND, NOT_FOUND, NOT_FOUND, 302, 302]),
    ("ops import", "get", "/studies/{study}/import/", [LOGIN, NOT_FOUND, NOT_FOUND, NOT_FOUND, OK, OK]),
    ("ops precompute", "post", "/studies/{study}/precompute/", [LOGIN, NOT_FOUND, NOT_FOUND, NOT_FOUND, 302, 302]),
    ("ops push seg", "post", "/studies/{study}/push-seg/", [LOGIN, NOT_FOUND, NOT_FOUND, NOT_FOUND, 302, 302]),
    ("ops other overview", "get", "/studies/{other}/", [LOGIN, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND, OK]),
    ("ops other readers", "get", "/studies/{other}/readers/", [LOGIN, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND, OK]),
    ("ops other progress", "get", "/studies/{other}/progress.json", [LOGIN] + [NOT_FOUND] * 4 + [OK]),
    ("ops missing study", "get", "/studies/999999/", [LOGIN] + [NOT_FOUND] * 5),
    ("admin study list", "get", "/admin/studies/study/", [302, 302, 302, 302, OK, OK]),
    ("admin cases (truth)", "get", "/admin/studies/case/", [302, 302, 302, 302, OK, OK]),
    ("admin audit", "get", "/admin/core/auditevent/", [302, 302, 302, 302, OK, OK]),
    ("admin sessions", "get", "/admin/reading/readingsession/", [302, 302, 302, 302, OK, OK]),
    ("admin reads", "get", "/admin/reading/read/", [302, 302, 302, 302, OK, OK]),
    # The coordinator holds no inference permissions.
    ("admin predictions", "get", "/admin/inference/prediction/", [302, 302, 302, 302, FORBIDDEN, OK]),
    ("admin precompute runs", "get", "/admin/inference/precomputerun/", [302, 302, 302, 302, FORBIDDEN, OK]),
    ("admin own study", "get", "/admin/studies/study/{study}/change/", [302, 302, 302, 302, OK, OK]),
    ("admin own case", "get", "/admin/studies/case/{case}/change/", [302, 302, 302, 302, OK, OK]),
    # Another study's pages answer as if the object did not exist: a redirect to the admin index.
    ("admin other study", "get", "/admin/studies/study/{other}/change/", [302, 302, 302, 302, 302, OK]),
    ("admin other history", "get", "/admin/studies/study/{other}/history/", [302, 302, 302, 302, 302, OK]),
    ("admin other case", "get", "/admin/studies/case/{other_case}/change/", [302, 302, 302, 302, 302, OK]),
    ("admin filter other", "get", "/admin/core/auditevent/?study__id__exact={other}&_facets", [302] * 4 + [OK] * 2),
    ("admin search other", "get", "/admin/core/auditevent/?q=outsider", [302, 302, 302, 302, OK, OK]),
]


@pytest.mark.parametrize(("name", "method", "url", "expected"), MATRIX, ids=[m[0] for m in MATRIX])
def test_role_matrix(world, name, method, url, expected):
    their_item = world["theirs"].items.order_by("position").first()
    url = url.format(session=world["session"].pk, theirs=world["theirs"].pk, item=world["item"].pk,
                     their_item=their_item.pk, study=world["study"].pk, export=world["export"].pk,
                     run=world["run"].pk, other=world["other"].pk, case=world["study"].cases.first().pk,
                     other_case=world["other"].cases.first().pk)  # fmt: skip
    for role, status in zip(ROLES, expected, strict=True):
        client = client_as(world, role)
        if method == "get":
            response = client.get(url)
        else:
            data = {"export": "csv"} if "results" in url else {"rating": 1, "idempotency_key": "x", "active_seconds": 1}
            response = client.post(url, data, content_type="application/json" if "/api/" in url else None) \
                if "/api/" in url else client.post(url, data)  # fmt: skip
        assert response.status_code == status, f"{name} as {role}: {response.status_code}, expected {status}"
        if role == "study_admin" and "/admin/" in url:
            # Nothing of the study they do not administer shows: not its name, not its reader's.
            if response.status_code == 302:
                assert response.url == "/admin/", f"{name}: {response.url}"
                response = client.get(response.url)
            # The search box and the filter links repeat a search term.
            text = response.content.decode().replace('value="outsider"', "").replace("q=outsider", "")
            assert ">Other<" not in text and "outsider" not in text, f"{name} shows the other study to {role}"
        if role in ("reader", "other_reader") and response.status_code == 200 and "/admin/" not in url:
            body = b"".join(response.streaming_content) if response.streaming else response.content
            if url.startswith("/api/") and "images" not in url and "schema" not in url:
                text = body.decode()
                assert not any(marker in text for marker in TRUTH_MARKERS), f"{name} leaks truth to {role}"
                assert '"rating": 5' not in text  # never other readers' reads


def test_readers_never_see_dl_output_in_unaided_items_or_others_reads(world):
    client = client_as(world, "reader")
    session = world["session"]
    for item in session.items.select_related("modality"):
        response = client.get(f"/api/items/{item.pk}/")
        if response.status_code != 200:
            continue
        body = response.content.decode()
        if not item.modality.shows_dl:
            assert '"dl"' not in body and "probability" not in body and "overlay" not in body
            assert client.get(f"/api/items/{item.pk}/overlay").status_code in (404, 409)
    worklist = client.get("/api/worklist/").json()
    assert {s["id"] for s in worklist} == set(
        ReadingSession.objects.filter(reader=world["users"]["reader"]).values_list("pk", flat=True)
    )
