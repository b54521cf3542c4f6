"""Device alerts: how fast a batch file is taken, and the signed route's round trip.

* ``ingest``: a batch of device events for a village of elders (each with a call button and a
  water meter: presses, dry spells, night flow, low batteries, repeats) through
  ``core.alerts.ingest`` on a fresh SQLite file, in one unit of work, as ``tanfang alerts ingest``
  does; what the events became (tasks, calls, duplicates, quietened) is printed too.
* ``route``: single signed events POSTed one after another with httpx to ``POST /alerts/{source}``
  served by uvicorn on 127.0.0.1 (signature check, receipt, ingest, commit).

    .venv/bin/python bench/alerts_ingest.py [--elders 200] [--events 2000] [--posts 200] [--json]

Results go into docs/plan-features.md by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from starlette.applications import Starlette  # noqa: E402

from core import alerts, plan  # noqa: E402
from tanfang.web import alerts as alerts_web  # noqa: E402
from core.app import App  # noqa: E402
from core.settings import load_settings  # noqa: E402
from data.models import EmergencyContact, Elder, Visitor, utcnow  # noqa: E402
from sim.net import local_server  # noqa: E402

SECRET = "bench-secret"
EVENTS = [("call_button", "pressed", None), ("water_meter", "no_flow", 30), ("water_meter", "no_flow", 6),
          ("water_meter", "night_flow", None), ("call_button", "low_battery", None)]


def _village(app: App, elders: int) -> None:
    with app.db.session() as s:
        grid = Visitor(name="马丽", role="grid_worker", county="兰考县", township="城关镇", village="幸福村",
                       phone="13837800101", telegram_chat_id=7001)
        s.add(grid)
        s.flush()
        for i in range(elders):
            e = Elder(id_number=f"4102251945{i:08d}", name=f"老人{i}", sex="F", phone=f"138{i:08d}", county="兰考县",
                      township="城关镇", village="幸福村", responsible_visitor_id=grid.id)
            e.emergency_contacts.append(EmergencyContact(name="儿子", relation="儿子", phone=f"139{i:08d}"))
            s.add(e)
            s.flush()
            alerts.register_device(s, elder=e, kind="call_button", vendor="anju", device_id=f"CB-{i}")
            alerts.register_device(s, elder=e, kind="water_meter", vendor="anju", device_id=f"WM-{i}")


def _batch(settings, elders: int, n: int, now: dt.datetime) -> list[dict]:
    r = random.Random(7)
    out = []
    for _ in range(n):
        i = r.randrange(elders)
        kind, event, value = r.choice(EVENTS)
        at = plan.to_local(settings, now - dt.timedelta(minutes=r.randrange(0, 180)))
        ref = f"{'CB' if kind == 'call_button' else 'WM'}-{i}"
        out.append({"device_id": ref, "event": event, "at": at.isoformat(), **({"value": value} if value else {})})
    return out


def _ms(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"p50_ms": round(statistics.median(s) * 1000, 1), "p95_ms": round(s[int(len(s) * 0.95) - 1] * 1000, 1)}


async def _route(app: App, posts: int, elders: int) -> dict:
    app.settings.secrets.alert_secrets["anju"] = SecretStr(SECRET)
    web = Starlette(routes=alerts_web.routes(app))
    samples, codes = [], {}
    async with local_server(web) as url, httpx.AsyncClient() as client:
        for k in range(posts):
            at = plan.to_local(app.settings, utcnow() - dt.timedelta(seconds=30)).isoformat()
            body = json.dumps({"events": [{"device_id": f"WM-{k % elders}", "event": "leak", "at": at}]}).encode()
            t = time.perf_counter()
            r = await client.post(f"{url}/alerts/anju", content=body,
                                  headers={alerts_web.HEADER: alerts_web.sign(SECRET, body)})
            samples.append(time.perf_counter() - t)
            codes[r.status_code] = codes.get(r.status_code, 0) + 1
    return {"posts": posts, "status": codes, **_ms(samples)}


def main(elders: int, events: int, posts: int) -> dict:
    settings = load_settings(env={"TANFANG_DATA_DIR": tempfile.mkdtemp()})
    app = App(settings=settings)
    app.db.upgrade()
    _village(app, elders)
    now = utcnow()
    rows = _batch(settings, elders, events, now)
    t = time.perf_counter()
    with app.db.session() as s:
        result = alerts.ingest(s, settings, rows, source="file:bench", now=now)
    took = time.perf_counter() - t
    out = {"elders": elders, "ingest": {"events": events, "seconds": round(took, 2),
                                        "events_per_second": round(events / took), **result.as_dict()}}
    out["ingest"]["tasks"], out["ingest"]["calls"] = len(result.tasks), len(result.calls)
    out["route"] = asyncio.run(_route(app, posts, elders))
    app.close()
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elders", type=int, default=200)
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--posts", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = main(args.elders, args.events, args.posts)
    print(json.dumps(res, ensure_ascii=False, indent=None if args.json else 2))
