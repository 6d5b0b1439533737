"""Shared test set-up: database markers, and the users and studies most tests start from."""

import pytest
from django.db import connection

DB_FIXTURES = {
    "db",
    "transactional_db",
    "django_db_setup",
    "live_server",
    "client",
    "admin_client",
}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        uses_db = item.get_closest_marker("django_db") is not None or DB_FIXTURES & set(
            getattr(item, "fixturenames", ())
        )
        if not uses_db:
            item.add_marker(pytest.mark.nodb)


@pytest.fixture
def on_postgres() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: run with DATABASE_URL=postgres://... (make test does where it answers)")


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path_factory: pytest.TempPathFactory):
    """Stored files (de-identified series, overlays, exports) go to a fresh folder per test, never the checkout."""
    settings.MEDIA_ROOT = tmp_path_factory.mktemp("media")
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    """The login throttle counts failures per address in the cache: no test inherits another's."""
    from django.core.cache import cache

    cache.clear()
