"""Planning at province scale on PostgreSQL: the daily planning job for 100,000 and 1,000,000 elders.

    TANFANG_TEST_POSTGRES_URL=$(bash scripts/postgres.sh) .venv/bin/python bench/plan_month.py [--elders N ...] [--json]

For each N, in a fresh schema: N elders (all six categories mixed, a tenth with their own call
window, some paused, some in-person only, some without consent) are loaded with COPY; a tenth of
them were reached last week (an answered call). Then ``scheduler.jobs.plan_calls`` — the job
``plan_today`` runs at 00:05 — plans the first day of the month, when every elder not reached
within their frequency is due: the largest planning run of the month (the other days plan the
due subset). Reported: wall time, attempts written, rows/s, the process's peak memory (RSS), and
a second run the same day (idempotent: nothing new). Goal: 1,000,000 elders in ≤ 60 s.
The last line with ``--json`` is one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import random
import resource
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOAL_ELDERS, GOAL_S = 1_000_000, 60.0
MONTH_START = dt.date(2026, 12, 1)
COLUMNS = ("id", "id_number", "id_number_hash", "name", "sex", "phone", "phone_hash", "county", "township", "village",
           "lives_at_registration", "is_disabled", "living_alone", "empty_nest", "left_behind", "disabled_care",
           "severely_disabled", "family_planning", "consent_visit", "consent_share_family", "preferred_channel",
           "preferred_call_start", "preferred_call_end", "paused_until", "created_at", "updated_at")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _elder_rows(n: int, keys, seed: int = 1):
    """The elders as the service stores them: ID and phone numbers sealed, with their keyed hashes."""
    from data.sealed import keyed_hash

    rnd = random.Random(seed)
    now = dt.datetime(2026, 11, 20, 8, 0)

    def sealed(value: str, purpose: str) -> tuple[str, str]:
        return keys.encrypt(value, purpose), keyed_hash(keys, value, purpose)

    for i in range(1, n + 1):
        flags = [rnd.random() < p for p in (0.5, 0.4, 0.2, 0.1, 0.1, 0.05)]
        own_window = rnd.random() < 0.1
        channel = "in_person" if rnd.random() < 0.02 else "phone"
        yield (i, *sealed(f"41{i:016d}", "id"), f"老人{i}", "MF"[i % 2], *sealed(f"+86138{i:08d}", "phone"),
               f"县{i % 100}", f"乡{i % 1000}", f"村{i % 10000}", True, False, *flags, rnd.random() > 0.01, False,
               channel,
               "15:00" if own_window else None, "17:00" if own_window else None,
               MONTH_START + dt.timedelta(days=3) if rnd.random() < 0.01 else None, now, now)


def _copy(conn, table: str, columns, rows) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def load(url: str, n: int, settings, keys) -> None:
    import psycopg

    from core import plan

    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain) as conn:
        _copy(conn, "elders", COLUMNS, _elder_rows(n, keys))
        reached_at = plan.to_utc(settings, dt.datetime.combine(MONTH_START - dt.timedelta(days=3), dt.time(10)))
        _copy(conn, "call_attempts", ("elder_id", "channel", "slot_key", "attempt_no", "status", "scheduled_for",
                                      "started_at", "answered_at", "ended_at", "settled_at", "created_at", "updated_at"),
              ((i, "phone", f"elder:{i}:{MONTH_START - dt.timedelta(days=3)}:1", 1, "completed", reached_at,
                reached_at, reached_at, reached_at, reached_at, reached_at, reached_at)
               for i in range(1, n + 1, 10)))
        conn.execute("ANALYZE elders")
        conn.execute("ANALYZE call_attempts")


def run(pg_url: str, n: int) -> dict:
    from sqlalchemy import create_engine, text

    from core import plan
    from core.settings import load_settings
    from data.crypto import DataKeys, new_key
    from data.db import Database
    from scheduler import jobs

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{pg_url}{'&' if '?' in pg_url else '?'}options=-csearch_path%3D{schema}"
    try:
        keys = DataKeys.from_b64(new_key())  # a production database has TANFANG_DATA_KEY
        settings = load_settings(env={"TANFANG_DATABASE_URL": url})
        db = Database(url, keys=keys)
        db.upgrade()
        t = time.monotonic()
        load(url, n, settings, keys)
        load_s = time.monotonic() - t
        now = plan.to_utc(settings, dt.datetime.combine(MONTH_START, dt.time(0, 5)))
        rss_before = _rss_mb()
        t, cpu = time.monotonic(), time.process_time()
        with db.session() as s:
            created = len(jobs.plan_calls(s, settings, now))
        plan_s, plan_cpu = time.monotonic() - t, time.process_time() - cpu
        rss_after = _rss_mb()
        t = time.monotonic()
        with db.session() as s:
            again = len(jobs.plan_calls(s, settings, now))
        again_s = time.monotonic() - t
        db.dispose()
        return {"elders": n, "load_s": round(load_s, 1), "plan_s": round(plan_s, 1), "attempts_written": created,
                "rows_per_s": round(created / plan_s) if plan_s else None, "plan_cpu_s_python": round(plan_cpu, 1),
                "load_avg_1min": round(os.getloadavg()[0], 1), "replan_s": round(again_s, 1),
                "replan_new": again, "peak_rss_mb": round(rss_after), "rss_before_mb": round(rss_before)}
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elders", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument("--database-url", default=os.environ.get("TANFANG_TEST_POSTGRES_URL", ""))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not args.database_url:
        ap.error("PostgreSQL needed: --database-url or TANFANG_TEST_POSTGRES_URL (bash scripts/postgres.sh)")
    runs = []
    for n in args.elders:
        runs.append(run(args.database_url, n))
        r = runs[-1]
        print(f"{n:>9} elders: planned {r['attempts_written']} in {r['plan_s']} s ({r['rows_per_s']}/s), "
              f"again {r['replan_s']} s; peak RSS {r['peak_rss_mb']} MB", file=sys.stderr)
    at_goal = next((r for r in runs if r["elders"] == GOAL_ELDERS), None)
    summary = {"bench": "plan_month", "cores": os.cpu_count(), "runs": runs,
               "goal": {"elders": GOAL_ELDERS, "plan_s_max": GOAL_S},
               "goal_met": None if at_goal is None else at_goal["plan_s"] <= GOAL_S}
    print(json.dumps(summary, ensure_ascii=False) if args.json else json.dumps(summary, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
