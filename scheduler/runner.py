"""APScheduler 3 in the service: one scheduler process, jobs in a SQLAlchemy job store on the
application's own database, explicit job IDs with ``replace_existing``, coalescing, one instance
per job and a deliberate misfire grace time (``scheduler.misfire_grace_seconds``).

Why a restart neither drops nor duplicates a check-in: the scheduler only *triggers* the jobs of
:mod:`scheduler.jobs`; the plan lives in ``call_attempts`` (one row per slot, ``slot_key``
unique), and a row is claimed before it is dialed. A job missed while the service was down runs
once at start (coalesced) if within the grace time, and ``plan_today`` + ``dial_due`` run at
every start anyway, so late slots are caught up — or cancelled if they now fall into quiet hours.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Callable

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from scheduler import jobs

log = logging.getLogger(__name__)

JOB_TABLE = "apscheduler_jobs"


@dataclass(frozen=True)
class JobSpec:
    id: str
    func: Callable[[], Any]
    trigger: Any
    name: str


def job_specs(settings, *, tick_seconds: int = 60, outbox_seconds: int = 15, escalate_seconds: int = 60,
              recover_seconds: int = 60, reminder_seconds: int | None = None,
              start: dt.datetime | None = None) -> list[JobSpec]:
    """The service's jobs. ``start`` anchors interval triggers (the simulator's clock)."""
    tz = settings.app.timezone
    kw = {"timezone": tz}
    if start is not None:
        kw["start_date"] = start
    return [
        JobSpec("plan_today", jobs.plan_today, CronTrigger(hour=0, minute=5, timezone=tz), "每日排定问候电话"),
        JobSpec("recover_calls", jobs.recover_calls, IntervalTrigger(seconds=recover_seconds, **kw), "结算中断的通话"),
        JobSpec("dial_due", jobs.dial_due, IntervalTrigger(seconds=tick_seconds, **kw), "拨打到期的问候电话"),
        JobSpec("deliver_outbox", jobs.deliver_outbox, IntervalTrigger(seconds=outbox_seconds, **kw), "发送通知"),
        JobSpec("escalate_overdue", jobs.escalate_overdue, IntervalTrigger(seconds=escalate_seconds, **kw), "超时未确认的紧急任务上报"),
        JobSpec("send_reminders", jobs.send_reminders,
                IntervalTrigger(seconds=reminder_seconds or settings.reminders.interval_seconds, **kw),
                "提醒与每日/每周小结"),
        JobSpec("coverage_guard", jobs.coverage_guard, CronTrigger(hour=8, minute=30, timezone=tz), "月度覆盖检查"),
    ]


def build_scheduler(settings, engine, *, specs: list[JobSpec] | None = None) -> AsyncIOScheduler:
    """An AsyncIOScheduler on the SQLAlchemy job store of ``engine``, with every job registered
    (``replace_existing``: registering again after a restart updates, never duplicates)."""
    scheduler = AsyncIOScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename=JOB_TABLE)},
        job_defaults={"coalesce": True, "max_instances": 1,
                      "misfire_grace_time": settings.scheduler.misfire_grace_seconds},
        timezone=settings.app.timezone,
    )
    for spec in specs if specs is not None else job_specs(settings):
        scheduler.add_job(spec.func, trigger=spec.trigger, id=spec.id, name=spec.name, replace_existing=True)
    return scheduler


class SchedulerService:
    """Start/stop the scheduler inside the service (``tanfang serve``) or on its own."""

    def __init__(self, ctx: jobs.JobContext, *, tick_seconds: int = 60):
        self.ctx = ctx
        self.tick_seconds = tick_seconds
        self.scheduler: AsyncIOScheduler | None = None

    async def start(self) -> AsyncIOScheduler:
        jobs.set_context(self.ctx)
        # catch up at once: calls a crash left answered, today's plan, whatever fell due meanwhile
        await jobs.recover_calls()
        await jobs.plan_today()
        await jobs.dial_due()
        self.scheduler = build_scheduler(self.ctx.settings, self.ctx.db.engine,
                                         specs=job_specs(self.ctx.settings, tick_seconds=self.tick_seconds))
        self.scheduler.start()
        log.info("scheduler started with jobs: %s", ", ".join(j.id for j in self.scheduler.get_jobs()))
        return self.scheduler

    def stop(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.scheduler = None
        jobs.set_context(None)
