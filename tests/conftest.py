"""Shared fixtures. Data-layer tests take ``db`` and run on SQLite and on PostgreSQL.

PostgreSQL: ``TANFANG_TEST_POSTGRES_URL`` (``scripts/postgres.sh`` starts one and prints it).
Under CI the PostgreSQL variant is required, never skipped.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from core.app import App
from core.settings import load_settings
from data.db import Database

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
PG_URL = os.environ.get("TANFANG_TEST_POSTGRES_URL", "")
pytest.register_assert_rewrite("tests.sip_peers")  # a plugin the SIP tests also import from


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    """A developer's TANFANG_* settings never leak into tests (TANFANG_TEST_* stay)."""
    for name in list(os.environ):
        if name.startswith("TANFANG_") and not name.startswith("TANFANG_TEST_"):
            monkeypatch.delenv(name, raising=False)


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tanfang.db'}"


def _pg_schema_url():
    """A fresh schema per test on the shared test database; dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"

    def drop():
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return url, drop


def require_postgres() -> str:
    """The test PostgreSQL's URL; without one the test fails under CI and is skipped elsewhere."""
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("TANFANG_TEST_POSTGRES_URL is not set under CI: PostgreSQL tests must run")
        pytest.skip("PostgreSQL not configured (run scripts/postgres.sh, set TANFANG_TEST_POSTGRES_URL)")
    return PG_URL


def _backend_params():
    return [pytest.param("sqlite", id="sqlite"), pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=_backend_params())
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield _sqlite_url(tmp_path)
        return
    require_postgres()
    url, drop = _pg_schema_url()
    yield url
    drop()


@pytest.fixture
def db(db_url, tmp_path) -> Database:
    # its data key: the development key file beside a SQLite file, else in the data folder the
    # ``settings`` fixture names (so the CLI run on the same database finds the same key)
    database = Database(db_url, data_dir=tmp_path / "var")
    database.upgrade()
    yield database
    database.dispose()


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """Settings from the repo's config.yml with data and output under tmp_path."""
    env = {"TANFANG_DATA_DIR": str(tmp_path / "var"), "TANFANG_OUTPUT_DIR": str(tmp_path / "out")}
    return load_settings(env=env)


@pytest.fixture
def app(settings, db) -> App:
    """An App whose database is the parametrised ``db`` (SQLite and PostgreSQL)."""
    settings.database.url = db.url
    application = App(settings=settings)
    application.__dict__["db"] = db
    return application


@pytest.fixture
def sqlite_app(settings, tmp_path) -> App:
    """An App on a fresh SQLite file only (for tests that are not about the data layer)."""
    settings.database.url = _sqlite_url(tmp_path)
    application = App(settings=settings)
    application.db.upgrade()
    yield application
    application.close()
