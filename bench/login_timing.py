"""How long a dashboard login check takes for a known user with a wrong password, an unknown user
and an inactive one (issue #14.19: the three must cost the same; an attacker must not learn which
user names exist from the time).

    PYTHONPATH=. .venv/bin/python bench/login_timing.py [-n 30] [--json]

A fresh SQLite database in a temporary folder; ``core.auth.authenticate`` called ``n`` times for
each case after two warm-up calls. Results go into docs/security.md by hand.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_figures, scratch_database  # noqa: E402
from core import auth  # noqa: E402
from data.db import Database  # noqa: E402
from data.models import StaffUser  # noqa: E402


def measure(db: Database, username: str, n: int) -> list[float]:
    times = []
    for i in range(n + 2):
        with db.session() as s:
            t0 = time.perf_counter()
            auth.authenticate(s, username, "wrong-password")
            if i >= 2:
                times.append((time.perf_counter() - t0) * 1000)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=30)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with scratch_database() as (db, _folder):
        with db.session() as s:
            auth.add_user(s, "known", "right-password-1", "province", None)
            auth.add_user(s, "inactive", "right-password-1", "province", None)
            s.flush()
            s.query(StaffUser).filter_by(username="inactive").update({"active": False})
        result = {case: measure(db, name, args.n) for case, name in
                  (("known, wrong password", "known"), ("unknown user", "nobody"), ("inactive user", "inactive"))}
    summary = {case: {"median_ms": round(statistics.median(v), 1), "p10_ms": round(sorted(v)[len(v) // 10], 1),
                      "p90_ms": round(sorted(v)[len(v) * 9 // 10], 1)} for case, v in result.items()}
    print_figures(summary, args.json, lambda case, row: f"{case:<22} median {row['median_ms']:6.1f} ms   "
                                                    f"p10 {row['p10_ms']:6.1f}   p90 {row['p90_ms']:6.1f}")


if __name__ == "__main__":
    main()
