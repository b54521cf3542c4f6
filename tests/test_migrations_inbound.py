"""The inbound-calls and memory revision (issue #17 items 2, 3): ``alembic upgrade head`` on SQLite
and PostgreSQL gives the schema the models declare, and it goes down and up again without loss."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from data.db import Database
from data.models import Base

REVISION = "0004_u_inbound_memory"
PARENT = "0004_sms_template"
OURS = {"inbound_calls", "visit_followups"}


def _diffs_on_our_tables(db: Database) -> list:
    with db.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)
    flat = [d for group in diffs for d in (group if isinstance(group, list) else [group])]

    def touches(d) -> bool:
        return any(getattr(x, "name", None) in OURS or getattr(getattr(x, "table", None), "name", None) in OURS
                   or (isinstance(x, str) and x in OURS | {"call_attempts"}) for x in d[1:])

    return [d for d in flat if touches(d)]


def test_upgrade_head_creates_the_tables_the_models_declare(db_url, tmp_path):
    db = Database(db_url, data_dir=tmp_path / "var")
    db.upgrade()
    assert db.current_revision() == REVISION
    names = set(inspect(db.engine).get_table_names())
    assert OURS <= names
    columns = {c["name"] for c in inspect(db.engine).get_columns("call_attempts")}
    assert "direction" in columns
    assert _diffs_on_our_tables(db) == []
    db.dispose()


def test_down_and_up_again(db_url, tmp_path):
    db = Database(db_url, data_dir=tmp_path / "var")
    db.upgrade(PARENT)
    db.upgrade()
    db.downgrade(PARENT)
    names = set(inspect(db.engine).get_table_names())
    assert not OURS & names
    assert "direction" not in {c["name"] for c in inspect(db.engine).get_columns("call_attempts")}
    db.upgrade()
    assert db.current_revision() == REVISION
    db.dispose()
