"""bench/concurrent_calls.py runs end to end: one call at real pace through the call worker's code.

The bench wraps ``CallSession``'s steps to time them; when the session's signatures change the
wrapper must follow, or every call of the bench times out (it once did, unnoticed). This runs the
issue's command at N=1 and checks the shape of its last line and that nothing was lost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.voice_fixtures import MODEL

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not MODEL.is_dir(), reason=f"Vosk model not installed at {MODEL}")
def test_concurrent_calls_bench_one_call_end_to_end():
    proc = subprocess.run([sys.executable, "bench/concurrent_calls.py", "--calls", "1", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    (run,) = last["runs"]
    assert run["errors"] == []
    assert run["turns"] >= 5 and run["answers_spoken"] == 6
    assert last["answers_lost"] == 0 and run["answers_intact"] >= 4
    assert 1.0 < last["turn_gap_p95_s"] < 5.0  # includes the 1.2 s end-of-answer silence
    assert {"decode_lag_p95_s", "checkin_p95_s", "speak_p95_s"} <= set(run)
