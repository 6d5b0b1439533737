"""Shared test set-up: database markers, and the users and studies most tests start from."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.db.backends.base.operations import BaseDatabaseOperations

from tests.audit_triggers import TABLE, bypass_sql

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


@pytest.fixture(autouse=True, scope="session")
def flush_past_audit_triggers() -> Iterator[None]:
    """transactional_db and live_server tests end with a flush, which the audit triggers refuse (DELETE on SQLite,
    TRUNCATE on PostgreSQL): the test flush alone switches them off and on again, inside its own transaction."""
    original = BaseDatabaseOperations.execute_sql_flush

    def execute_sql_flush(self: BaseDatabaseOperations, sql_list: list[str]) -> None:
        if any(TABLE in sql for sql in sql_list):
            off, on = bypass_sql(self.connection)
            sql_list = [*off, *sql_list, *on]
        original(self, sql_list)

    BaseDatabaseOperations.execute_sql_flush = execute_sql_flush
    yield
    BaseDatabaseOperations.execute_sql_flush = original


# --- DICOM series shared by tests/imaging and tests/inference -------------------------------------------------

# a copy with its NOTICE (tests/data/README.md)
TOTALSEG_EXAMPLE = Path(__file__).resolve().parent / "data" / "totalseg_example"


@dataclass
class PhantomSeries:
    phantom: Any  # fixtures.phantom.Phantom (imported lazily: most tests need no numpy phantom)
    folder: Path
    paths: list[Path]


def make_series(folder: Path, seed: int, lesions: list[tuple[str, float]]) -> PhantomSeries:
    """A phantom with lesions of given class and diameter placed in its liver, written as a DICOM series."""
    import numpy as np

    from fixtures.phantom import deterministic_uid, make_anatomy, make_phantom, plan_lesions, write_ct_series

    rng = np.random.default_rng([seed, 4242])
    anatomy = make_anatomy(rng)
    specs = plan_lesions(
        rng, len(lesions), anatomy, labels=[c for c, _ in lesions], diameters_mm=[d for _, d in lesions]
    )
    ph = make_phantom(rng, specs, anatomy=anatomy)
    paths = write_ct_series(ph, folder, "TEST01", deterministic_uid(seed, "study"), deterministic_uid(seed, "series"))
    return PhantomSeries(ph, folder, paths)


STANDARD_LESIONS = [("crlm", 24.0), ("hemangioma", 14.0), ("crlm", 8.0)]


@pytest.fixture(scope="session")
def phantom_series(tmp_path_factory: pytest.TempPathFactory) -> PhantomSeries:
    return make_series(tmp_path_factory.mktemp("phantom") / "series", 31337, STANDARD_LESIONS)


@pytest.fixture(scope="session")
def totalseg_example() -> Path:
    folder = TOTALSEG_EXAMPLE / "example_ct_dicom"
    assert folder.is_dir(), f"missing {folder}: tests/data is part of the repository (see its README)"
    return folder


# --- object storage: an S3-protocol server (moto's server mode; fixtures/s3server.py says why) ------------------


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One S3-protocol server per test session, on a free loopback port, with an empty bucket."""
    from fixtures.s3server import S3Unavailable, start_s3

    try:
        server = start_s3(tmp_path_factory.mktemp("s3"))
    except S3Unavailable as exc:
        # moto[server] is in requirements.txt, which `make test` installs: its absence is a failure, never a skip.
        pytest.fail(f"no S3-protocol server for the object-storage tests ({exc})")
    yield server
    server.stop()


@pytest.fixture
def s3_storage(settings, s3) -> Any:
    """The default storage is the S3 server's bucket, under a prefix of this test's own (nothing shared)."""
    import uuid

    from readerstudy.storage_config import s3_storage as s3_entry

    env = s3.env(prefix=f"test-{uuid.uuid4().hex}")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": s3_entry(
            bucket=env["S3_BUCKET"], endpoint_url=env["S3_ENDPOINT_URL"], region=env["S3_REGION"],
            prefix=env["S3_PREFIX"], access_key=env["S3_ACCESS_KEY_ID"], secret_key=env["S3_SECRET_ACCESS_KEY"],
        ),
    }  # fmt: skip
    s3.prefix = env["S3_PREFIX"]
    return s3
