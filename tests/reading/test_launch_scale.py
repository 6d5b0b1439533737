"""Launch writes a study's stored orders in a fixed number of queries: per reader and session, never per case or
item (a 200 000-item launch is timed by ``python -m bench.scale``)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from readerstudy.reading.actions import launch_study
from readerstudy.reading.models import SessionItem
from tests.factories import build_study, make_user

pytestmark = pytest.mark.django_db


def launch_queries(tmp_path, name: str, n_patients: int) -> tuple[int, int]:
    """(queries, items) of launching a crossover study of 3 readers x n_patients x 2 lesions x 2 modalities."""
    study = build_study(tmp_path / name, name=name, n_patients=n_patients, launch=False)
    with CaptureQueriesContext(connection) as captured:
        n_items = launch_study(make_user("admin", superuser=True), study, accept_missing_predictions=True)
    # The test's transaction makes launch's atomic() a savepoint; production has BEGIN/COMMIT instead.
    sql = [q["sql"] for q in captured.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    assert SessionItem.objects.filter(study=study).count() == n_items == 3 * n_patients * 2 * 2
    return len(sql), n_items


def test_launch_queries_do_not_grow_with_the_cases(tmp_path):
    small = launch_queries(tmp_path, "small", n_patients=3)
    large = launch_queries(tmp_path, "large", n_patients=12)  # 4 times the cases and items
    assert large[1] == 4 * small[1]
    assert large[0] == small[0]
