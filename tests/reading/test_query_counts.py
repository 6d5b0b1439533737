"""SQL queries per request of the reading endpoints (next item, item, submit), pinned, and flat in the study's size.

Each reading request runs a fixed number of queries whatever the number of items, reads or readers: a session is
walked item by item through the API in a small study and in a larger one (more items per session, other readers
who have read), and every request of a kind (next, item, submit; an item with DL output or without) must cost the
same pinned number in both. A change that adds a query (or an N+1) fails here; one that removes a query updates
the pinned number.

Counted as production runs them: the test's own transaction makes each action's ``atomic()`` a savepoint
(SAVEPOINT + RELEASE), which in production is the transaction itself (BEGIN/COMMIT, not statements Django logs on
PostgreSQL), so savepoint statements are left out. On PostgreSQL the audit event costs 3 more queries than on
SQLite (core.audit locks the chain and the event's foreign-key rows).
"""

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from readerstudy.reading import actions
from readerstudy.reading.models import ReadingSession
from tests.factories import build_study
from tests.reading.test_api import client_for, session_of, started, submit

pytestmark = pytest.mark.django_db

# Requests every authenticated request pays for (session row, user row): GET /api/ping/ costs exactly these.
AUTH = 2
# Per request, as production counts them (savepoints of the test's transaction left out). "dl": an aided item
# whose DL output is shown (one query for the prediction; in sequential designs one more for the unaided read).
PINNED = {
    # session+user; the first two unread items with everything their payloads read; the session's progress; the
    # first serve's UPDATE; both cases' series
    "next": AUTH + 4,
    # session+user; the item's session; the first two unread items of it (the item must be the first) with
    # everything their payloads read; the progress; both cases' series (served already: no UPDATE)
    "item": AUTH + 4,
    # session+user; the item with its session locked (and access); the first two unread items; the read's INSERT;
    # the audit event (one round trip on PostgreSQL, its head and INSERT on SQLite: see AUDIT_EXTRA)
    "submit": AUTH + 4,
    # ... a session's last read also closes it and opens the next session (two UPDATEs)
    "submit finishing": AUTH + 6,
    # a retry of a stored read: session+user; the item locked; the unread items; its stored read; the session's
    # latest read
    "submit replay": AUTH + 4,
}
# Extra queries for DL output: the prediction, and (sequential designs) whether the unaided read is locked.
DL_EXTRA = {"crossover": 1, "sequential": 2}
# core.audit on PostgreSQL takes the chain's locks (KEY SHARE of the event's study and actor rows, the advisory
# lock), reads the head and inserts the event in one round trip (the audit_append function); SQLite reads the head
# and inserts the event in two.
AUDIT_EXTRA = {"sqlite": 1, "postgresql": 0}


def queries(request: Callable, *args: Any, **kwargs: Any) -> tuple[Any, int]:
    """(response, number of queries) of ``request(*args, **kwargs)``, without the savepoints of the test's own
    transaction."""
    with CaptureQueriesContext(connection) as captured:
        response = request(*args, **kwargs)
    sql = [q["sql"] for q in captured.captured_queries]
    return response, sum(1 for s in sql if not s.startswith(("SAVEPOINT", "RELEASE SAVEPOINT")))


def expected(kind: str, design: str, dl: bool) -> int:
    n = PINNED[kind] + (DL_EXTRA[design] if dl and kind != "submit replay" else 0)
    return n + (AUDIT_EXTRA[connection.vendor] if kind in ("submit", "submit finishing") else 0)


def walk(client, session: ReadingSession) -> dict[str, set[int]]:
    """Read the whole session through the API; the query counts seen per kind of request."""
    counts: dict[str, set[int]] = defaultdict(set)
    started(client, session)
    n_items = session.items.count()
    for n in range(n_items):
        response, count = queries(client.get, f"/api/sessions/{session.pk}/next/")
        assert response.status_code == 200
        item = response.json()
        dl = "dl" in item
        counts[f"next dl={dl}"].add(count)
        response, count = queries(client.get, f"/api/items/{item['id']}/")
        assert response.status_code == 200 and response.json()["id"] == item["id"]
        counts[f"item dl={dl}"].add(count)
        response, count = queries(submit, client, item["id"], rating=40, key=f"key-{item['id']}")
        assert response.status_code == 201, response.content
        counts[f"submit{' finishing' if n == n_items - 1 else ''} dl={dl}"].add(count)
        response, count = queries(submit, client, item["id"], rating=40, key=f"key-{item['id']}")
        assert response.status_code == 200 and response.json()["created"] is False
        counts[f"submit replay dl={dl}"].add(count)
    response, count = queries(client.get, f"/api/sessions/{session.pk}/next/")
    assert response.status_code == 204
    return counts


def read_some(study, username: str, n: int) -> None:
    """``n`` reads of another reader, through the action (they only add rows the requests must not scan)."""
    session = session_of(study, username)
    actions.start_session(session.reader, session)
    for item in session.items.order_by("position")[:n]:
        actions.submit_read(session.reader, item, rating=70, idempotency_key=f"other-{item.pk}", active_seconds=3)


def measured(tmp_path, design: str, *, large: bool) -> dict[str, set[int]]:
    if large:  # 4 readers, 32 items per reader, the other readers part-way through their sessions
        study = build_study(
            tmp_path,
            readers=4,
            design=design,
            n_patients=8,
            lesions_per_patient=2,
            washout_days=0,
            predict=0.9,
            name="Large",
        )
        for i, username in enumerate(("reader2", "reader3", "reader4"), start=1):
            read_some(study, username, 3 * i)
    else:  # 1 reader, 4 items
        study = build_study(
            tmp_path,
            readers=1,
            design=design,
            n_patients=2,
            lesions_per_patient=1,
            washout_days=0,
            predict=0.9,
            name="Small",
        )
    return walk(client_for("reader1"), session_of(study, "reader1"))


@pytest.mark.parametrize("design", ["crossover", "sequential"])
def test_reading_requests_cost_a_pinned_number_of_queries_whatever_the_study_size(tmp_path, design):
    small = measured(tmp_path / "small", design, large=False)
    large = measured(tmp_path / "large", design, large=True)
    # Every kind of request (but a session's last submit, with or without DL) occurs in the larger study.
    assert len(large) >= 8, large

    def pinned(seen: dict[str, set[int]]) -> dict[str, set[int]]:
        return {key: {expected(key.rsplit(" dl=")[0], design, key.endswith("True"))} for key in seen}

    # Flat: each kind costs its one pinned number in both, not one more query for more items, reads or readers.
    assert small == pinned(small)
    assert large == pinned(large)


def test_ping_costs_only_the_session_and_the_user(client):
    from tests.factories import make_user

    client.force_login(make_user("reader1"))
    response, count = queries(client.get, "/api/ping/")
    assert response.status_code == 200 and count == AUTH


def test_the_pinned_counts_hold_under_django_assert_max_num_queries(tmp_path, django_assert_max_num_queries):
    """The same bound through pytest-django's own counter (it counts the test transaction's savepoints: +2)."""
    study = build_study(tmp_path, readers=1, n_patients=2, lesions_per_patient=1, washout_days=0, predict=0.9)
    client, session = client_for("reader1"), session_of(study, "reader1")
    started(client, session)
    most_next = expected("next", "crossover", True)
    with django_assert_max_num_queries(most_next):
        item = client.get(f"/api/sessions/{session.pk}/next/").json()
    with django_assert_max_num_queries(expected("item", "crossover", True)):
        assert client.get(f"/api/items/{item['id']}/").status_code == 200
    with django_assert_max_num_queries(expected("submit", "crossover", True) + 2):
        assert submit(client, item["id"]).status_code == 201


def test_slice_urls_are_built_with_one_reverse_and_equal_reverse():
    from django.urls import reverse

    from readerstudy.reading.case_series import numbered_urls

    assert numbered_urls("reading-api:image", [987654321], 12) == [
        reverse("reading-api:image", args=[987654321, i]) for i in range(12)
    ]
    assert numbered_urls("reading-api:series-image", [7, 2], 3) == [
        reverse("reading-api:series-image", args=[7, 2, i]) for i in range(3)
    ]
    assert numbered_urls("reading-api:image", [7], 0) == []
