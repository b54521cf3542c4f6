"""The application context every service is given: the settings, the database, who acts.

Built once per process by the wiring root (``tanfang.wiring.build_app``) and passed down; the
adapters a process needs (lines, channels, the dialog) are built there too and handed to the
services that use them, never hung on this object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

from core.settings import Settings, SettingsError
from data.crypto import DataKeyError, DataKeys, keys_for
from data.db import Database


def data_keys(settings: Settings) -> DataKeys | Callable[[], DataKeys]:
    """``TANFANG_DATA_KEY`` (with ``TANFANG_DATA_KEY_OLD``), else the development key file of the
    database (beside a SQLite file, else in the data folder), made on first use with a warning."""
    secrets = settings.secrets
    try:
        return keys_for(settings.database_url, settings.app.data_dir,
                        key=secrets.data_key.get_secret_value() if secrets.data_key else None,
                        old=[secrets.data_key_old.get_secret_value()] if secrets.data_key_old else [])
    except DataKeyError as exc:
        raise SettingsError(str(exc)) from exc


@dataclass
class App:
    settings: Settings
    actor: str = "cli"
    closers: list[Callable[[], None]] = field(default_factory=list)

    @cached_property
    def db(self) -> Database:
        self.settings.ensure_dirs()
        return Database(self.settings.database_url, echo=self.settings.database.echo,
                        keys=data_keys(self.settings), data_dir=self.settings.app.data_dir)

    def ready_db(self) -> Database:
        """The database, migrated to the newest schema (safe to call often)."""
        db = self.db
        db.upgrade()
        return db

    def close(self) -> None:
        for closer in reversed(self.closers):
            closer()
        if "db" in self.__dict__:
            self.db.dispose()
