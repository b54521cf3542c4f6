"""Database engine, sessions and migrations. One :class:`Database` per process, passed down.

A database carries its data keys (:mod:`data.crypto`): the sealed columns of the models find them
on the engine. A SQLite file is 0600 in a folder created 0700; ``secure_delete`` zeroes what an
update or delete leaves behind, so an old plaintext or an old key's token does not linger in
free pages.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from data.crypto import DataKeys, keys_for
from data.files import private_dir, private_file, sqlite_path
from data.sealed import KeyHolder, rotate

MIGRATIONS = Path(__file__).with_name("migrations")


def make_engine(url: str, echo: bool = False) -> Engine:
    path = sqlite_path(url)
    if path is not None:
        if not path.parent.exists():
            private_dir(path.parent)
        private_file(path)
    kwargs = {"echo": echo, "future": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        # a server restart leaves dead connections in the pool: each is tested when checked out
        # and replaced, so the service recovers by itself (no request fails on a stale connection)
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA secure_delete=ON")
            cur.close()
    return engine


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


class Database:
    """Engine + session factory for one database URL, and its data keys.

    ``keys``: the :class:`DataKeys` (or a function giving them on first use); without them, the
    development key file beside a SQLite database (or in ``data_dir``) is used, with a warning.
    """

    def __init__(self, url: str, echo: bool = False, *, keys: DataKeys | Callable[[], DataKeys] | None = None,
                 data_dir: str | Path | None = None):
        self.url = url
        self.engine = make_engine(url, echo=echo)
        self.key_holder = KeyHolder(keys if keys is not None else keys_for(url, data_dir))
        self.engine.dialect.tanfang_keys = self.key_holder  # the sealed column types look here
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False, future=True)

    @property
    def keys(self) -> DataKeys:
        return self.key_holder.get()

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` with Alembic (idempotent)."""
        self._migrate("upgrade", revision)

    def downgrade(self, revision: str) -> None:
        self._migrate("downgrade", revision)

    def _migrate(self, direction: str, revision: str) -> None:
        """Alembic on this engine's connection: the migrations find the data keys on its dialect."""
        from alembic import command

        cfg = alembic_config(self.url)
        sqlite = self.engine.dialect.name == "sqlite"
        with self.engine.connect() as conn:
            if sqlite:
                # SQLite alters a table by copying it and dropping the old one; with foreign keys on,
                # that drop cascade-deletes (or refuses) the rows pointing at the table. The documented
                # procedure (sqlite.org/lang_altertable.html#otheralter): keys off outside the
                # transaction, migrate, check every key, commit, keys on again.
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                conn.commit()
            try:
                with conn.begin():
                    cfg.attributes["connection"] = conn
                    getattr(command, direction)(cfg, revision)
                    if sqlite and (broken := conn.exec_driver_sql("PRAGMA foreign_key_check").all()):
                        raise RuntimeError(f"migration left dangling foreign keys: {broken[:5]}")
            finally:
                if sqlite:
                    conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                    conn.commit()
        self.checkpoint()

    def rotate_keys(self, keys: DataKeys) -> dict:
        """Re-seal every sealed value under ``keys``' current key and recompute the hashes, in one
        transaction (old values open with ``keys``' old keys). Later sessions use ``keys``."""
        from data.models import Base

        with self.engine.begin() as conn:
            report = rotate(conn, Base.metadata, keys)
        self.key_holder = KeyHolder(keys)
        self.engine.dialect.tanfang_keys = self.key_holder
        self.checkpoint()
        return report

    def checkpoint(self) -> None:
        """SQLite: move the write-ahead log into the database and empty it (no stale pages left)."""
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def is_initialised(self) -> bool:
        return "elders" in inspect(self.engine).get_table_names()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on any error (nothing half-written)."""
        session = self.sessionmaker()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
