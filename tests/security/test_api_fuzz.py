"""Schemathesis against the OpenAPI schema, every endpoint, as a logged-in reader: 0 server errors and every
documented response conforms to its schema. Failures found here become regression tests below."""

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from readerstudy.reading import actions as reading_actions
from readerstudy.reading.models import ReadingSession
from tests.factories import build_study, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader_headers(tmp_path):
    """A launched study with predictions; reader1 logged in with an open, started session."""
    study = build_study(tmp_path, readers=2, n_patients=2, lesions_per_patient=2, name="Fuzz", predict=0.5)
    reader = make_user("reader1")
    reading_actions.start_session(reader, ReadingSession.objects.get(study=study, reader=reader, index=1))
    client = Client()
    client.force_login(reader)
    client.get("/reading/")
    token = client.cookies["csrftoken"].value
    return {
        "cookies": {"sessionid": client.cookies["sessionid"].value, "csrftoken": token},
        "headers": {"X-CSRFToken": token},
        "schema": client.get("/api/schema/?format=json").json(),
    }


@pytest.fixture
def api_schema(reader_headers):
    loaded = schemathesis.openapi.from_dict(reader_headers["schema"])
    loaded.app = get_wsgi_application()  # requests go through the real WSGI stack, in-process
    # As Django's test client does: the test's transaction spans requests, so requests must not close the
    # connection at their end (PostgreSQL would lose the test transaction).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield loaded
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def test_api_conforms_to_its_schema(api_schema, reader_headers):
    # Schemathesis' own pytest plugin does not run on pytest 9 yet: drive each operation with Hypothesis here.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8
    tried = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)  # fmt: skip
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers=reader_headers["headers"], cookies=reader_headers["cookies"])
            case.validate_response(response, checks=CHECKS)
            tried.append((case.operation.label, response.status_code))

        check()
    # Every operation was exercised, and the fuzzer got past validation somewhere (not only 4xx everywhere).
    assert {label for label, _ in tried} == {operation.label for operation in operations}
    assert any(code < 300 for _, code in tried)


@pytest.mark.parametrize("path", ["/api/items/-5/", "/api/sessions/abc/next/", "/api/items/1/images/-1", "/api/nope"])
def test_regression_malformed_api_paths_answer_json_404(path):
    # Found by the fuzzer: a negative id missed the URL converters and got Django's HTML 404 page.
    client = Client()
    client.force_login(make_user("reader1"))
    response = client.get(path)
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json()["detail"]


def test_regression_huge_ids_are_404_not_a_database_overflow():
    # Ids the fuzzer sent beyond bigint range never reach the database: the URL layer answers a JSON 404.
    client = Client()
    client.force_login(make_user("reader1"))
    for path in ("/api/items/178769317665177347804889088/", "/api/sessions/99999999999999999999/next/"):
        response = client.get(path)
        assert response.status_code == 404 and response["Content-Type"] == "application/json"
