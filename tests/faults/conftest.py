"""The fault suite: real processes on 127.0.0.1, killed, restarted and taken down (#14).

Each test says which fault it injects and what must hold afterwards. The service under test is
``tanfang serve`` in a subprocess (``sim.faults``); Rasa, PostgreSQL and the Telegram emulator
are the real ones. ``bench/faults.py`` runs the long versions (100 kills).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.settings import REPO_ROOT


# one data key for every process of a test run: they share its database (data/crypto.py)
DATA_KEY = base64.b64encode(os.urandom(32)).decode()


def base_env(**extra: str) -> dict[str, str]:
    """A child's environment without the developer's TANFANG_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANFANG_") or k.startswith("TANFANG_TEST_")}
    env.update({"PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", "TANFANG_DATA_KEY": DATA_KEY, **extra})
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """``tanfang ARGS`` (this worktree's code) in a subprocess."""
    return subprocess.run([sys.executable, "-c", "from tanfang.cli import main; main()", *args], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def children_of(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        todo += kids
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pids: list[int], timeout: float) -> float:
    began = time.monotonic()
    while any(alive(p) for p in pids):
        if time.monotonic() - began > timeout:
            raise AssertionError(f"still running after {timeout}s: {[p for p in pids if alive(p)]}")
        time.sleep(0.1)
    return time.monotonic() - began


HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items):
    for item in items:  # `-m faults` selects the suite, `-m "not faults"` leaves it out
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.faults)
