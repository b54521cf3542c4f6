"""Private files: the data folder is 0700 and what it holds (the SQLite database, keys, logs,
caches) 0600, so other accounts on the machine read none of it."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO

DIR_MODE = 0o700
FILE_MODE = 0o600


def _tighten(path: Path, mode: int) -> None:
    current = stat.S_IMODE(path.stat().st_mode)
    if current & ~mode:
        os.chmod(path, current & mode)


def private_dir(path: str | Path) -> Path:
    """``path`` (and missing parents) created 0700; an existing one loses group and other access."""
    path = Path(path)
    for folder in [*reversed(path.parents), path]:
        if not folder.exists():
            try:
                folder.mkdir(mode=DIR_MODE)
            except FileExistsError:
                pass  # made meanwhile by another process
    _tighten(path, DIR_MODE)
    return path


def private_file(path: str | Path) -> Path:
    """``path`` created empty with 0600 if missing; an existing one loses group and other access."""
    path = Path(path)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        pass
    _tighten(path, FILE_MODE)
    return path


def open_private(path: str | Path, mode: str = "ab") -> IO:
    """``open(path, mode)`` on a file that is (made) 0600 first."""
    return open(private_file(path), mode)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; ``None`` for other databases and in-memory ones."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        return Path(url.removeprefix("sqlite:///").split("?", 1)[0])
    return None
