"""``tanfang simulate month``: the real scheduler jobs, escalation, outbox and check-in code on a
simulated clock, against a synthetic roster of scripted elders.

* The jobs are registered in a real APScheduler (SQLAlchemy job store on the simulation's
  database, started paused) and read back from the job store; their triggers decide when each
  job fires on the simulated clock. Interval jobs tick every ``tick_seconds`` (5 simulated
  minutes by default) so that a month runs in seconds.
* Elders follow personas (``data/samples/personas.yml``): fine, lonely, short of money, falls one
  day, smells gas one day, never answers, answers on the 3rd try, a relative answers. Calls run
  through the real :class:`core.checkin.CheckInService` with a scripted dialog; answers are graded
  by ``core.grading.grade_turn``.
* Channels (SMS, Telegram) are recording fakes on the simulated clock; Telegram has an outage on
  day 12. Visitors acknowledge most P1 tasks within minutes (some never: escalation), and do some
  of their in-person tasks (care records, form section 六).
* Mid-month the service is "restarted" mid-day: one call is lost in flight, the scheduler is shut
  down, a new one is built on the same job store, catch-up runs, and the month continues.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from core import emergency, plan
from core.channels import RecordingChannel
from core.checkin import CheckInService
from core.coverage import coverage_report, month_end
from core.escalation import report_call_outcome
from core.ports import CallRequest, DialogReply
from core.tasks import close_task, transition
from data.catalogue import load_catalogue
from data.models import (
    OPEN_TASK_STATES,
    Campaign,
    EmergencyContact,
    Elder,
    OutboxMessage,
    Task,
    Visit,
    VisitAnswer,
    VisitTurn,
    Visitor,
)
from scheduler import jobs
from sim.clock import JobDriver, SimClock
from sim.dialog import ScriptedDialog
from sim.personas import Persona, load_personas

SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = ["秀英", "桂兰", "玉兰", "凤英", "建国", "德福", "淑珍", "春花", "长海", "守义", "翠萍", "金凤"]
VILLAGES = [("兰考县", "城关镇", "幸福村"), ("兰考县", "城关镇", "和谐村"), ("兰考县", "东坝头乡", "张庄村"),
            ("兰考县", "东坝头乡", "杨庄村")]
# the scripted questionnaire: (slot asked, question, section 五 dimensions its answer fills)
QUESTIONNAIRE = (("health_illness", "最近身体咋样？", ("health",)),
                 ("family_children", "孩子们常联系您吗？", ("family",)),
                 ("safety_gas_heating", "家里水电煤气都安全吧？", ("safety",)),
                 ("economy_living", "吃的穿的够不够？有啥需要帮忙的吗？", ("needs", "economy")))
MIX = ["fine", "fine", "lonely", "fine", "short_of_money", "fell", "fine", "gas", "never_answers", "third_try",
       "relative", "fine"]


# ---- the scripted world ------------------------------------------------------------------------
def questionnaire_dialog() -> ScriptedDialog:
    """Asks the four questions of ``QUESTIONNAIRE`` and ends; the elder's words come from the persona."""
    def opening(metadata: dict[str, Any]) -> DialogReply:
        msgs = [f"{metadata.get('elder_name', '')}您好，我是探访热线，来问问您最近咋样。"]
        msgs += list(metadata.get("safety_messages") or [])
        return DialogReply(messages=msgs + [QUESTIONNAIRE[0][1]], expects=QUESTIONNAIRE[0][0])

    replies = [DialogReply(messages=[question], expects=slot) for slot, question, _ in QUESTIONNAIRE[1:]]
    return ScriptedDialog(replies, opening=opening, goodbye="好的，谢谢您。有急事请拨打120。再见。")


@dataclass
class CallRecord:
    elder_id: int
    slot_key: str
    attempt_no: int
    at: dt.datetime
    answered: bool
    completed: bool = False
    safety_messages: int = 0


class SimDialer:
    """Plays the persona on the line: answers or not, then talks through the real CheckInService."""

    def __init__(self, sim: "MonthSimulation"):
        self.sim = sim
        self.checkin = CheckInService(sim.app, questionnaire_dialog(), grader=sim.grader, clock=sim.now)
        self.lose_next_call = False

    async def dial(self, request: CallRequest) -> None:
        sim = self.sim
        now = sim.now()
        persona = sim.personas[request.elder_id]
        rec = CallRecord(request.elder_id, request.slot_key, request.attempt_no, now, False,
                         safety_messages=len(request.safety_messages))
        sim.calls.append(rec)
        if self.lose_next_call:  # the process "dies" during this call: no outcome is ever reported
            self.lose_next_call = False
            sim.lost_calls.append(request.attempt_id)
            return
        answers = persona.answer_on_attempt and request.attempt_no >= persona.answer_on_attempt
        if not answers:
            report_call_outcome(sim.app.db, sim.app.settings, attempt_id=request.attempt_id,
                                     status="no_answer", now=now)
            return
        rec.answered = True
        report_call_outcome(sim.app.db, sim.app.settings, attempt_id=request.attempt_id, status="answered",
                                 now=now)
        day = plan.local_today(sim.app.settings, now).day
        visit_id, reply = await self.checkin.start(request.elder_id, "phone",
                                                   extra_metadata={"safety_messages": list(request.safety_messages)})
        with sim.app.db.session() as s:
            s.get(Visit, visit_id).respondent = persona.respondent
        if persona.event_day is not None and persona.event_visit is None and day >= persona.event_day:
            persona.event_visit = visit_id
        for slot, _question, dimensions in QUESTIONNAIRE:
            # what the Rasa actions do as slots fill: the question's section 五 items, then the turn
            sim.write_answers(visit_id, dimensions)
            result = await self.checkin.hear(visit_id, persona.answer(slot, day=day, visit_id=visit_id))
            if result.reply.ended:
                break
        self.checkin.finish(visit_id, outcome="complete")
        rec.completed = True
        report_call_outcome(sim.app.db, sim.app.settings, attempt_id=request.attempt_id, status="completed",
                                 now=now)
        with sim.app.db.session() as s:
            from data.models import CallAttempt

            s.get(CallAttempt, request.attempt_id).visit_id = visit_id


# ---- the simulation ---------------------------------------------------------------------------
@dataclass
class MonthSimulation:
    app: Any
    elders: int = 200
    seed: int = 1
    month: dt.date = field(default_factory=lambda: dt.date.today().replace(day=1))
    tick_seconds: int = 600
    restart_day: int = 15
    outage_day: int = 12
    progress: Any = None

    def __post_init__(self):
        self.rng = random.Random(self.seed)
        self.settings = self.app.settings
        self.clock = SimClock(plan.to_utc(self.settings, dt.datetime.combine(self.month, dt.time())))
        self.driver = JobDriver(self.settings, self.app.db.engine, self.clock, tick_seconds=self.tick_seconds)
        self.grader, self.grader_name = None, "core.grading.grade_turn"  # CheckInService grades itself
        self.personas: dict[int, Persona] = {}
        self.calls: list[CallRecord] = []
        self.lost_calls: list[int] = []
        self.restart: dict[str, Any] = {}
        self.channels = {"sms": RecordingChannel(name="sms", clock=self.now),
                         "telegram": RecordingChannel(name="telegram", clock=self.now)}
        self.never_ack: set[int] = set()

    def now(self) -> dt.datetime:
        return self.clock()

    # -- roster ------------------------------------------------------------------------------
    def build_roster(self) -> None:
        raw, _cycle = load_personas()
        last_day = month_end(self.month).day
        with self.app.db.session() as s:
            top = Visitor(name="钱局长", role="supervisor", county="兰考县", telegram_chat_id=5000, phone="13500000000")
            s.add(top)
            s.flush()
            staff: dict[str, Visitor] = {}
            for t_i, township in enumerate(sorted({v[1] for v in VILLAGES})):
                sup = Visitor(name=f"{township}主管", role="supervisor", county="兰考县", township=township,
                              supervisor_id=top.id, telegram_chat_id=5100 + t_i, phone=f"135000001{t_i:02d}")
                s.add(sup)
                s.flush()
                staff[township] = sup
                for role, chat in (("social_worker", 5200), ("family_doctor", 5300)):
                    s.add(Visitor(name=f"{township}{role}", role=role, county="兰考县", township=township,
                                  supervisor_id=sup.id, telegram_chat_id=chat + t_i))
            s.add(Visitor(name="县民政专干", role="civil_affairs", county="兰考县", supervisor_id=top.id,
                          phone="13500000099"))
            grids = {}
            for v_i, (county, township, village) in enumerate(VILLAGES):
                g = Visitor(name=f"{village}网格员", role="grid_worker", county=county, township=township,
                            village=village, supervisor_id=staff[township].id, phone=f"137000000{v_i:02d}",
                            telegram_chat_id=7000 + v_i if v_i % 2 == 0 else None)
                s.add(g)
                s.flush()
                grids[village] = g
            for i in range(self.elders):
                county, township, village = VILLAGES[i % len(VILLAGES)]
                key = MIX[self.rng.randrange(len(MIX))]
                cat = self.rng.random()
                e = Elder(id_number=f"41022519{40 + i % 20:02d}0101{i:04d}"[:18], name=self.rng.choice(SURNAMES) + self.rng.choice(GIVEN),
                          sex=self.rng.choice("MF"), birth_date=dt.date(1940 + i % 20, 1, 1), phone=f"1380{i:07d}",
                          county=county, township=township, village=village, address=f"{village}{i % 50 + 1}号",
                          living_alone=cat < 0.5, empty_nest=0.5 <= cat < 0.8, left_behind=0.8 <= cat < 0.9,
                          disabled_care=cat >= 0.9, consent_visit=True, preferred_channel="phone",
                          responsible_visitor_id=grids[village].id if self.rng.random() < 0.8 else None)
                if self.rng.random() < 0.04:
                    e.paused_until = self.month + dt.timedelta(days=9)
                    e.pause_reason = "住院"
                if self.rng.random() < 0.2:
                    e.preferred_call_start, e.preferred_call_end = dt.time(15, 0), dt.time(17, 30)
                e.emergency_contacts.append(EmergencyContact(
                    name=self.rng.choice(SURNAMES) + "建军", relation="儿子", phone=f"1390{i:07d}", priority=1,
                    telegram_chat_id=900000 + i if self.rng.random() < 0.3 else None))
                s.add(e)
                s.flush()
                self.personas[e.id] = dataclasses.replace(
                    raw[key], event_day=self.rng.randint(2, last_day - 2) if key in ("fell", "gas") else None)
            # a heat-wave campaign in one village: daily calls and a safety message, days 5-8
            s.add(Campaign(area="/".join(VILLAGES[0]), reason="高温", message=plan.CAMPAIGN_MESSAGES["高温"],
                           frequency_days=1, starts_on=self.month + dt.timedelta(days=4),
                           until=self.month + dt.timedelta(days=7)))
            visitor_ids = list(s.scalars(select(Visitor.id)))
        self.never_ack = {v for v in visitor_ids if self.rng.random() < 0.15}

    def write_answers(self, visit_id: int, dimensions: tuple[str, ...]) -> None:
        """The section 五 items of these dimensions (what the Rasa actions write as slots fill)."""
        cat = load_catalogue()
        with self.app.db.session() as s:
            visit = s.get(Visit, visit_id)
            have = {a.item_key for a in visit.answers}
            for item in cat.items:
                if item.key not in have and item.dimension in dimensions:
                    s.add(VisitAnswer(visit_id=visit_id, item_key=item.key, value=item.values[0].value,
                                      risk="none", answered_at=self.now()))

    # -- visitors acting on their tasks ---------------------------------------------------------
    def visitors_act(self, everything: bool) -> None:
        """P1 tasks are looked at every tick; the rest once an hour (``everything``)."""
        now = self.now()
        with self.app.db.session() as s:
            stmt = select(Task).where(Task.state.in_(OPEN_TASK_STATES))
            if not everything:
                stmt = stmt.where(Task.kind == "urgent")
            for task in s.scalars(stmt.order_by(Task.id)):
                age = (now - task.created_at).total_seconds() / 60
                who = task.assignee_id
                actor = f"visitor:{who}" if who else "staff:主管"
                lazy = who in self.never_ack
                r = random.Random(f"{self.seed}:{task.id}")
                if task.priority == 1 and task.state == "open" and (
                        (not lazy and age >= r.randint(2, 12)) or task.escalation_level > 0):
                    # the supervisor takes over an escalated task at once
                    transition(s, task, "acknowledged", now=now,
                               actor=actor if task.escalation_level == 0 else "staff:主管")
                elif task.kind == "urgent" and task.state == "acknowledged" and age >= 90:
                    close_task(s, task, actor=actor, outcome="已上门查看并处置", description="上门查看、联系家属、协助就医",
                               provider_id=who, in_person=True, satisfaction="satisfied", now=now)
                    emergency.record(s, task, actions=emergency.actions_for_close(None, "上门查看、联系家属、协助就医"),
                                     note="已上门查看并处置", recorded_by=actor, handled_at=now, handler_id=who)
                elif task.kind in ("visit", "coverage", "concern", "callback") and not lazy:
                    if age >= 60 * 24 * r.uniform(0.5, 3) and r.random() < 0.75:
                        in_person = task.kind in ("visit", "coverage")
                        close_task(s, task, actor=actor, outcome="已上门探访" if in_person else "已跟进处理",
                                   description="上门探访，了解近况" if in_person else "电话跟进并转介服务",
                                   provider_id=who, in_person=in_person, satisfaction="satisfied", now=now)

    # -- the month on the fast clock ---------------------------------------------------------------
    async def run(self) -> dict:
        t_wall = time.perf_counter()
        self.build_roster()
        jobs.set_context(jobs.JobContext(app=self.app, dialer=SimDialer(self), channels=self.channels,
                                         clock=self.now))
        jobs_before = sorted(self.driver.register())
        end = plan.to_utc(self.settings, dt.datetime.combine(month_end(self.month) + dt.timedelta(days=1), dt.time()))
        restart_at = plan.to_utc(self.settings, dt.datetime.combine(self.month.replace(day=self.restart_day),
                                                                     dt.time(10, 2)))
        await jobs.plan_today()  # the service starts: catch-up planning
        state = {"restarted": False, "outage": False, "next_hourly": self.now()}

        async def before_tick(t: dt.datetime, due: list[str]) -> bool:
            if not state["restarted"] and t >= restart_at:
                self.clock.set(restart_at)
                await self._restart(jobs_before)
                state["restarted"] = True
                return True
            if not state["outage"] and plan.local_today(self.settings, t).day == self.outage_day:
                self.channels["telegram"].fail_next = 5  # Telegram is down for a while
                state["outage"] = True
            if "dial_due" in due and not state["restarted"] and t + dt.timedelta(seconds=self.tick_seconds) > restart_at:
                jobs.context().dialer.lose_next_call = True  # this tick's first call dies with the process
            return False

        async def after_tick(t: dt.datetime, due: list[str]) -> None:
            if "dial_due" in due:
                self.visitors_act(everything=t >= state["next_hourly"])
                if t >= state["next_hourly"]:
                    state["next_hourly"] = t + dt.timedelta(hours=1)
            if self.progress and "plan_today" in due:
                self.progress(plan.local_today(self.settings, t))

        await self.driver.run_until(end, before_tick=before_tick, after_tick=after_tick)
        self.driver.shutdown()
        jobs.set_context(None)
        return self.report(time.perf_counter() - t_wall)

    async def _restart(self, jobs_before):
        """Stop mid-day; a new process: new context, new scheduler on the same job store, catch-up."""
        attempts_before = self._count_attempts()
        self.driver.shutdown()
        jobs.set_context(jobs.JobContext(app=self.app, dialer=SimDialer(self), channels=self.channels,
                                         clock=self.now))
        jobs_after = sorted(self.driver.register(after_now=True))
        await jobs.plan_today()
        await jobs.dial_due()
        self.restart = {
            "at_local": plan.to_local(self.settings, self.now()).isoformat(timespec="minutes"),
            "jobs_in_store_before": jobs_before,
            "jobs_in_store_after": jobs_after,
            "call_attempts_before": attempts_before,
            "lost_in_flight": list(self.lost_calls),
        }

    def _count_attempts(self) -> int:
        from data.models import CallAttempt

        with self.app.db.session() as s:
            return s.query(CallAttempt).count()

    # -- the report -------------------------------------------------------------------------------
    def call_figures(self) -> dict:
        """Calls per elder, duplicates (a slot dialed twice, a call after that day's success) and
        calls in quiet hours."""
        settings = self.settings
        quiet = plan.parse_window(settings.scheduler.quiet_hours)
        seen_slots: Counter = Counter(c.slot_key for c in self.calls)
        completed_day: dict[tuple[int, dt.date], dt.datetime] = {}
        for c in sorted(self.calls, key=lambda c: c.at):
            if c.completed:
                completed_day.setdefault((c.elder_id, plan.local_today(settings, c.at)), c.at)
        after_success = sum(1 for c in self.calls
                            if (k := completed_day.get((c.elder_id, plan.local_today(settings, c.at)))) and c.at > k)
        per_elder = Counter(c.elder_id for c in self.calls)
        return {
            "calls": len(self.calls),
            "calls_answered": sum(c.answered for c in self.calls),
            "calls_per_elder": {"min": min((per_elder.get(e, 0) for e in self.personas), default=0),
                                "max": max(per_elder.values(), default=0),
                                "mean": round(len(self.calls) / max(1, len(self.personas)), 2)},
            "calls_with_safety_message": sum(1 for c in self.calls if c.safety_messages),
            "duplicate_calls": sum(n - 1 for n in seen_slots.values()) + after_success,
            "quiet_hour_calls": sum(1 for c in self.calls if plan.in_window(plan.to_local(settings, c.at).time(), quiet)),
        }

    @staticmethod
    def urgent_figures(tasks: list, outbox: list, urgent_turns: list) -> dict:
        """Every urgent answer: a P1 task and a contact notified within one simulated minute?"""
        ok = 0
        for turn in urgent_turns:
            limit = turn.at + dt.timedelta(seconds=60)
            p1 = [t for t in tasks if t.kind == "urgent" and t.priority == 1 and t.visit_id == turn.visit_id
                  and t.created_at <= limit]
            notified = [m for m in outbox if p1 and m.task_id == p1[0].id and m.recipient_kind == "emergency_contact"
                        and m.state == "sent" and m.sent_at is not None and m.sent_at <= limit]
            ok += bool(p1 and notified)
        return {"urgent_events": len(urgent_turns), "urgent_notified_within_1min": ok}

    def outbox_figures(self, outbox: list) -> dict:
        return {
            "total": len(outbox),
            "sent": sum(m.state == "sent" for m in outbox),
            "pending": sum(m.state == "pending" for m in outbox),
            "failed": sum(m.state == "failed" for m in outbox),
            "retried": sum(m.attempts > 1 for m in outbox),
            "by_recipient": dict(sorted(Counter(m.recipient_kind or "?" for m in outbox).items())),
            "by_channel": dict(sorted(Counter(m.channel for m in outbox).items())),
            "delivered_by_fakes": {k: len(ch.sent) for k, ch in self.channels.items()},
        }

    @staticmethod
    def task_figures(tasks: list) -> dict:
        return {
            "tasks_by_priority": {f"P{p}": n for p, n in sorted(Counter(t.priority for t in tasks).items())},
            "tasks_by_kind": dict(sorted(Counter(t.kind for t in tasks).items())),
            "tasks_by_state": dict(sorted(Counter(t.state for t in tasks).items())),
            "open_in_person_tasks": sum(1 for t in tasks if t.kind in ("visit", "coverage") and t.state in OPEN_TASK_STATES),
            "escalated_p1_tasks": sum(1 for t in tasks if t.escalation_level > 0),
        }

    def report(self, wall_seconds: float) -> dict:
        with self.app.db.session() as s:
            cov = coverage_report(s, self.settings, month=self.month)
            tasks = list(s.scalars(select(Task)))
            outbox = list(s.scalars(select(OutboxMessage)))
            urgent_turns = list(s.scalars(select(VisitTurn).where(VisitTurn.speaker == "elder", VisitTurn.risk == "urgent")))
            result = {
                "month": cov["month"], "seed": self.seed, "elders": cov["total"]["elders"],
                "visited": cov["total"]["visited"], "with_open_visit_task": cov["total"]["pending_tasks"],
                "uncovered": cov["total"]["uncovered"],
                "coverage_by_area": [{k: v for k, v in a.items() if k != "uncovered_ids"} for a in cov["areas"]],
                **self.call_figures(), **self.urgent_figures(tasks, outbox, urgent_turns), **self.task_figures(tasks),
                "notifications": self.outbox_figures(outbox),
            }
        result.update(restart=self.restart, personas=dict(sorted(Counter(p.key for p in self.personas.values()).items())),
                      grader=self.grader_name, tick_seconds=self.tick_seconds, wall_seconds=round(wall_seconds, 1))
        result["ok"] = (result["uncovered"] == 0 and result["duplicate_calls"] == 0 and result["quiet_hour_calls"] == 0
                        and result["urgent_events"] == result["urgent_notified_within_1min"]
                        and result["visited"] + result["with_open_visit_task"] == result["elders"]
                        and result["restart"].get("jobs_in_store_before") == result["restart"].get("jobs_in_store_after"))
        return result


def simulate_month(app, *, elders: int = 200, seed: int = 1, month: dt.date | None = None,
                   tick_seconds: int = 600, progress=None) -> dict:
    """Run a simulated month on ``app``'s (fresh) database; returns the report."""
    app.ready_db()
    sim = MonthSimulation(app, elders=elders, seed=seed, month=month or dt.date.today().replace(day=1),
                          tick_seconds=tick_seconds, progress=progress)
    return asyncio.run(sim.run())


async def simulate_month_async(app, *, elders: int = 200, seed: int = 1, month: dt.date | None = None,
                               tick_seconds: int = 600, progress=None) -> dict:
    app.ready_db()
    sim = MonthSimulation(app, elders=elders, seed=seed, month=month or dt.date.today().replace(day=1),
                          tick_seconds=tick_seconds, progress=progress)
    return await sim.run()
