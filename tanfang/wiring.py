"""The composition root: settings in, adapters and services out.

This is the one place that knows every concrete adapter. ``serve``, the command line, the web
app, the bot, the demo and the simulators build what they need through these functions, each
written once; everything below the root receives its ports (a ``DialogEngine``, a ``Recognizer``,
``PhoneLine``s, ``MessageChannel``s) as arguments.
"""

from __future__ import annotations

import functools

import getpass
from typing import Any, Callable

from core import routing
from core.app import App
from core.checkin import CheckInService
from core.ports import DialogEngine, MessageChannel, Recognizer, Synthesizer
from core.settings import Settings, load_settings


# ---- the context ---------------------------------------------------------------------------------
def cli_actor() -> str:
    """Who acts from the command line, for the audit log: the operating-system user."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 — no passwd entry (containers): still an actor
        return "cli"


def build_app(settings: Settings | None = None, actor: str | None = None) -> App:
    return App(settings=settings or load_settings(), actor=actor or cli_actor())


# ---- dialog, speech -----------------------------------------------------------------------------
def rasa_url(settings: Settings) -> str:
    """The (first) Rasa server the dialog talks to: ``rasa.urls[0]``, ``rasa.url``, else the
    embedded one's address."""
    return rasa_urls(settings)[0]


def rasa_urls(settings: Settings) -> list[str]:
    """Every Rasa server the dialog spreads its turns over (``rasa.urls``, scaled out), else one."""
    if settings.rasa.urls:
        return [u.rstrip("/") for u in settings.rasa.urls]
    if settings.rasa.url:
        return [settings.rasa.url.rstrip("/")]
    return [f"http://{settings.rasa.host}:{settings.rasa.port}"]


def build_dialog(settings: Settings, url: str | None = None) -> DialogEngine:
    from dialogs.auth import shared_token
    from dialogs.engine import RasaDialogEngine

    urls = [url] if url and not settings.rasa.urls else rasa_urls(settings)
    return RasaDialogEngine(urls, timeout=settings.rasa.parse_timeout, token=shared_token(settings))


def build_recognizer(settings: Settings) -> Recognizer:
    from voice.vosk_recognizer import VoskRecognizer

    return VoskRecognizer(settings)


def build_synthesizer(settings: Settings, engine: str | None = None) -> Synthesizer:
    from voice.tts import synthesizer_for

    return synthesizer_for(settings, engine) if engine else synthesizer_for(settings)


def once(build: Callable[[], Any]) -> Callable[[], Any]:
    """A factory that builds on first use and then returns the same object."""
    cache: dict[str, Any] = {}

    def factory():
        if "it" not in cache:
            cache["it"] = build()
        return cache["it"]
    return factory


def chat_checkin_factory(app: App, url: str | None = None, dialog: DialogEngine | None = None):
    """The check-in service of chat channels (Telegram), built on first use."""
    return once(lambda: CheckInService(app, dialog or build_dialog(app.settings, url)))


def recognizer_factory(settings: Settings):
    return once(lambda: build_recognizer(settings))


# ---- phone ----------------------------------------------------------------------------------------
def build_placer(settings: Settings):
    from voice.twilio_client import TwilioCallPlacer

    return TwilioCallPlacer(settings)


def line_names(settings: Settings) -> set[str]:
    """The phone lines the settings route elders to (``phone.line`` and ``phone.line_by_area``)."""
    return {settings.phone.line, *settings.phone.line_by_area.values()}


def build_phone(app: App, dialog: DialogEngine, *, recognizer: Recognizer | None = None,
                synthesizer: Synthesizer | None = None, placer=None, sip: bool | None = None, prompts=None,
                **kwargs):
    """The phone check-in pipeline over the configured recognizer and synthesizer, with its
    lines: Twilio (placing calls when ``placer`` is given; its webhooks always) and, when the
    settings route elders to it (or ``sip``), the SIP trunk — started by ``start_lines``."""
    from voice.session import CallPipeline
    from voice.twilio_line import TwilioLine

    if prompts is None:
        from tanfang.prompts_catalog import library

        prompts = library(app.settings)
    pipeline = CallPipeline(app, dialog, recognizer or build_recognizer(app.settings),
                            synthesizer or build_synthesizer(app.settings), prompts=prompts, **kwargs)
    pipeline.add_line(TwilioLine(app.settings, pipeline, placer))
    if sip if sip is not None else "sip" in line_names(app.settings):
        from voice.sip_line import SipLine

        pipeline.add_line(SipLine(app.settings, pipeline, on_inbound=functools.partial(pipeline.inbound, line="sip")))
    return pipeline


async def start_lines(pipeline) -> None:
    """Start the lines that need it (SIP registers with its trunk; a refusal is logged and kept
    in ``line.registration``: the service runs on, and calls wait)."""
    for line in pipeline.lines.values():
        if hasattr(line, "start"):
            await line.start()


async def stop_lines(pipeline) -> None:
    for line in pipeline.lines.values():
        if hasattr(line, "stop"):
            await line.stop()


# ---- chat, messages -------------------------------------------------------------------------------
def build_telegram(app: App, *, checkin_factory=None, url: str | None = None, token: str | None = None,
                   updater: bool = True, recognizer=None):
    """The PTB Application with the bot's handlers, its check-ins on the dialog at ``url``."""
    from bot.application import build_application

    return build_application(app, token=token, updater=updater,
                             checkin_factory=checkin_factory or chat_checkin_factory(app, url),
                             recognizer_factory=recognizer if recognizer is not None else recognizer_factory(app.settings))


def build_sms(settings: Settings) -> MessageChannel:
    """The ``sms`` channel: Alibaba Cloud template SMS when ``sms.provider: aliyun`` and its
    settings are complete, else Twilio (free text; raises when Twilio is not configured)."""
    if settings.sms.provider == "aliyun" and not routing.aliyun_sms_missing(settings):
        from bot.aliyun_sms import AliyunSmsChannel

        return AliyunSmsChannel(settings)
    from voice.twilio_sms import TwilioSmsChannel

    return TwilioSmsChannel(settings)


def build_channels(app: App, *, application=None, sms: bool = True, wecom: bool = True) -> dict[str, MessageChannel]:
    """The outbox's channels: SMS (``build_sms``), WeCom when its settings are complete
    (``bot.wecom.missing_settings``), Telegram through ``application``."""
    channels: dict[str, MessageChannel] = {}
    if sms:
        channels["sms"] = build_sms(app.settings)
    if wecom:
        from bot.wecom import WeComChannel, missing_settings

        if not missing_settings(app.settings):
            channels["wecom"] = WeComChannel(app.settings)
    if application is not None:
        from bot.channel import TelegramChannel

        channels["telegram"] = TelegramChannel(application.bot)
    return channels


def build_dialer(app: App, *, lines: dict | None = None, application=None, checkin_factory=None,
                 extra: dict | None = None):
    """The scheduler's dialer: phone attempts through ``lines`` (``PhoneLine``s by name, each
    elder's chosen by area), Telegram ones through the bot."""
    from scheduler.dialers import ChannelDialer, LineDialer

    dialers: dict[str, Any] = dict(extra or {})
    if lines:
        dialers.setdefault("phone", LineDialer(app, lines))
    if application is not None:
        from bot.dialer import TelegramDialer

        dialers.setdefault("telegram", TelegramDialer(app, application, checkin_factory))
    return ChannelDialer(dialers)
