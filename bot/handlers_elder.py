"""Elders on Telegram: the same check-in as on the phone, by text or voice note."""

from __future__ import annotations

import asyncio
import logging
import subprocess

from telegram import Update
from telegram.ext import ContextTypes

from bot.access import Who
from core.checkin import DialogFailed

log = logging.getLogger(__name__)
ASR_RATE = 16000


def decode_ogg(data: bytes, rate: int = ASR_RATE) -> bytes:
    """OGG/Opus (a Telegram voice note) to PCM16 mono at ``rate`` with ffmpeg."""
    proc = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", "pipe:0", "-f", "s16le",
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
               confidence: float | None = None) -> None:
    visit_id = context.chat_data.get("visit_id")
    if visit_id is None:
        await update.effective_message.reply_text("您好！要开始今天的问候，请发送 /checkin 。")
        return
    checkin = context.bot_data["tanfang_checkin"]()
    try:
        result = await checkin.hear(visit_id, text, asr_confidence=confidence)
    except DialogFailed:
        await update.effective_message.reply_text("系统有点忙，您说的话已经记下了。工作人员会联系您。")
        return
    await _say(update, result.reply.messages)
    if result.reply.ended:
        context.chat_data.pop("visit_id", None)


async def text_message(update: Update, context: ContextTypes.DEFAULT_TYPE, who: Who) -> None:
    await hear(update, context, who, update.effective_message.text)


async def voice_message(update: Update, context: ContextTypes.DEFAULT_TYPE, who: Who) -> None:
    recognizer = context.bot_data.get("tanfang_recognizer")
    if recognizer is None:
        await update.effective_message.reply_text("暂时听不了语音，请打字回答。")
        return
    file = await update.effective_message.voice.get_file()
    data = bytes(await file.download_as_bytearray())
    try:
        pcm = await asyncio.to_thread(decode_ogg, data)
        transcript = await asyncio.to_thread(recognizer().transcribe, pcm, ASR_RATE)
    except ValueError as exc:
        await update.effective_message.reply_text(f"没听清，请再说一次或打字。{exc}")
        return
    if not transcript.text:
        await update.effective_message.reply_text("没听清，请再说一次，或者打字回答。")
        return
    await update.effective_message.reply_text(f"（听到：{transcript.text}）")
    await hear(update, context, who, transcript.text, transcript.confidence)
