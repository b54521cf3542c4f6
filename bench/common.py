"""What the benches share: a scratch database in a temporary folder, and how figures are printed
(one JSON object with ``--json``, for docs and scripts; else one line a figure)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from data.db import Database


@contextmanager
def scratch_database(url: str = "", **db_options: Any) -> Iterator[tuple[Database, Path]]:
    """(database, folder): ``url`` (an empty database) or a fresh SQLite file in a temporary
    folder, upgraded to the current schema; disposed and the folder removed afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db = Database(url or f"sqlite:///{folder / 'bench.db'}", **db_options)
        db.upgrade()
        try:
            yield db, folder
        finally:
            db.dispose()


def _plain(key: str, value: Any) -> str:
    return f"{key:32} {value}"


def print_figures(figures: dict[str, Any], as_json: bool, line: Callable[[str, Any], str] = _plain) -> None:
    """Print ``figures`` as indented JSON, or each ``key: value`` through ``line``."""
    if as_json:
        print(json.dumps(figures, ensure_ascii=False, indent=2))
        return
    for key, value in figures.items():
        print(line(key, value))
