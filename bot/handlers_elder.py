"""Elders on Telegram: the same check-in as on the phone, by text or voice note.

Voice notes are bounded (issue #14.15): longer than ``telegram.max_voice_seconds`` or larger than
``telegram.max_voice_bytes`` (what Telegram says of the note, then of the file, then what was
actually downloaded) they are not transcribed and the elder is asked for a shorter note or text;
ffmpeg decodes at most ``max_voice_seconds`` either way. A chat check-in closed meanwhile (no reply
for a long time: scheduler.jobs.settle_idle_chats) is not continued: the elder is told how to start one.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess

from telegram import Update
from telegram.ext import ContextTypes

from bot.access import Who
from core.checkin import DialogFailed
from data.models import Visit

log = logging.getLogger(__name__)
ASR_RATE = 16000


START_TEXT = "您好！要开始今天的问候，请发送 /checkin 。"


def voice_refusal(duration: int | None, size: int | None, *, max_seconds: int, max_bytes: int) -> str | None:
    """What to tell the elder when a voice note is too long or too large (None: it is fine).
    Unknown values (Telegram may leave ``file_size`` out) pass here and are checked later."""
    if duration is not None and duration > max_seconds:
        return f"这条语音有 {duration} 秒，太长了。请分成几条，每条不超过 {max_seconds} 秒，或者打字回答。"
    if size is not None and size > max_bytes:
        return f"这条语音太大了（超过 {max_bytes // 1000} KB）。请说短一点，或者打字回答。"
    return None


def decode_ogg(data: bytes, rate: int = ASR_RATE, max_seconds: float | None = None) -> bytes:
    """OGG/Opus (a Telegram voice note) to PCM16 mono at ``rate`` with ffmpeg (at most ``max_seconds``)."""
    limit = ["-t", str(max_seconds)] if max_seconds else []
    proc = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", "pipe:0", *limit, "-f", "s16le",
                           "-ac", "1", "-ar", str(rate), "pipe:1"], input=data, capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise ValueError(f"语音无法解码 (ffmpeg: {proc.stderr.decode(errors='replace').strip()[:200]})")
    return proc.stdout


async def _say(update: Update, messages: list[str]) -> None:
    for text in messages:
        await update.effective_message.reply_text(text)


async def checkin_command(update: Update, context: ContextTypes.DEFAULT_TYPE, who: Who) -> None:
    try:
        checkin = context.bot_data["tanfang_checkin"]()
        visit_id, reply = await checkin.start(who.id, method="chat", entered_by="Telegram")
    except Exception:  # noqa: BLE001 — Rasa down: say so plainly, the elder loses nothing
        log.exception("check-in could not start for elder %s", who.id)
        await update.effective_message.reply_text("问候系统暂时不可用，请稍后再发 /checkin。有急事请拨打 120 或联系您的探访员。")
        return
    context.chat_data["visit_id"] = visit_id
    await _say(update, reply.messages)


async def hear(update: Update, context: ContextTypes.DEFAULT_TYPE, who: Who, text: str,
               confidence: float | None = None, alternatives: tuple[str, ...] = ()) -> None:
    """One answer of the elder to the check-in (the check-in grades it and may ask back:
    "您是说闻到煤气味了吗？" — the elder's next message answers that)."""
    visit_id = context.chat_data.get("visit_id")
    if visit_id is not None and not await asyncio.to_thread(_in_progress, context.bot_data["tanfang_app"], visit_id):
        context.chat_data.pop("visit_id", None)  # closed meanwhile (the elder went quiet): a reply starts over
        visit_id = None
    if visit_id is None:
        await update.effective_message.reply_text(START_TEXT)
        return
    checkin = context.bot_data["tanfang_checkin"]()
    try:
        result = await checkin.hear(visit_id, text, asr_confidence=confidence, alternatives=alternatives)
    except DialogFailed:
        await update.effective_message.reply_text("系统有点忙，您说的话已经记下了。工作人员会联系您。")
        return
    await _say(update, result.reply.messages)
    if result.reply.ended:
        context.chat_data.pop("visit_id", None)


async def text_message(update: Update, context: ContextTypes.DEFAULT_TYPE, who: Who) -> None:
    await hear(update, context, who, update.effective_message.text)


def _in_progress(app, visit_id: int) -> bool:
    with app.db.session() as s:
        visit = s.get(Visit, visit_id)
        return visit is not None and visit.status == "in_progress"


async def _download_voice(update: Update, cfg) -> bytes | str:
    """The note's bytes, or what to tell the elder when it is too long or too large. Checked
    before downloading (the note's duration and size, then the file's) and after."""
    voice = update.effective_message.voice
    limits = {"max_seconds": cfg.max_voice_seconds, "max_bytes": cfg.max_voice_bytes}
    refusal = voice_refusal(voice.duration, voice.file_size, **limits)
    if refusal is None:
        file = await voice.get_file()
        refusal = voice_refusal(None, file.file_size, **limits)
        if refusal is None:
            data = bytes(await file.download_as_bytearray())
            refusal = voice_refusal(None, len(data), **limits)
            if refusal is None:
                return data
    log.info("voice note of chat %s refused: %s", update.effective_chat.id, refusal)
    return refusal


async def voice_message(update: Update, context: ContextTypes.DEFAULT_TYPE, who: Who) -> None:
    recognizer = context.bot_data.get("tanfang_recognizer")
    if recognizer is None:
        await update.effective_message.reply_text("暂时听不了语音，请打字回答。")
        return
    cfg = context.bot_data["tanfang_app"].settings.telegram
    data = await _download_voice(update, cfg)
    if isinstance(data, str):
        await update.effective_message.reply_text(data)
        return
    try:
        pcm = await asyncio.to_thread(decode_ogg, data, ASR_RATE, cfg.max_voice_seconds)
        transcript = await asyncio.to_thread(recognizer().transcribe, pcm, ASR_RATE)
    except ValueError as exc:
        await update.effective_message.reply_text(f"没听清，请再说一次或打字。{exc}")
        return
    if not transcript.text:
        await update.effective_message.reply_text("没听清，请再说一次，或者打字回答。")
        return
    await update.effective_message.reply_text(f"（听到：{transcript.text}）")
    await hear(update, context, who, transcript.text, transcript.confidence, tuple(transcript.alternatives))
