import pytest

from tests.factories import make_user


@pytest.fixture
def boss(db):
    """A staff user who administers the studies it builds (no superuser: the scoping applies)."""
    return make_user("boss", staff=True)


@pytest.fixture
def immediate_on_commit(monkeypatch):
    monkeypatch.setattr("django.db.transaction.on_commit", lambda func, using=None, robust=False: func())
