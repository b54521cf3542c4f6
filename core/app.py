"""The composition root: settings in, adapters and services out. Built once per process."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from core.settings import Settings, load_settings
from data.db import Database


@dataclass
class App:
    settings: Settings
    actor: str = "cli"
    _closers: list = field(default_factory=list)

    @cached_property
    def db(self) -> Database:
        self.settings.ensure_dirs()
        return Database(self.settings.database_url, echo=self.settings.database.echo)

    def ready_db(self) -> Database:
        """The database, migrated to the newest schema (safe to call often)."""
        db = self.db
        db.upgrade()
        return db

    def close(self) -> None:
        for closer in reversed(self._closers):
            closer()
        if "db" in self.__dict__:
            self.db.dispose()


def build_app(settings: Settings | None = None, actor: str = "cli") -> App:
    return App(settings=settings or load_settings(), actor=actor)
