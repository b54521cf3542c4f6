"""``tanfang serve`` with Telegram in polling mode against the emulator: the bot answers in the
service process, and SIGTERM stops the Updater, the reminder loop and the web server cleanly."""

from __future__ import annotations

import time

from bot.access import UNKNOWN_TEXT
from sim.net import free_port
from tests.test_serve import ServeProcess


def test_serve_runs_the_bot_by_polling(tmp_path, emulator):
    token = emulator.token()
    serve = ServeProcess(tmp_path, {"TANFANG_TELEGRAM_BOT_TOKEN": token, "TANFANG_TELEGRAM__MODE": "polling",
                                    "TANFANG_TELEGRAM__API_BASE_URL": emulator.url,
                                    "TANFANG_RASA__URL": f"http://127.0.0.1:{free_port()}"})
    try:
        serve.wait_healthy()
        serve.wait_ready()
        assert "Telegram: 轮询模式 polling" in serve.log()
        emulator.user_says(token, emulator.user(7501, "陌生人"), "你好")
        deadline = time.monotonic() + 15
        while not emulator.bot_messages(token, 7501):
            assert time.monotonic() < deadline, serve.log()
            time.sleep(0.1)
        assert [m["text"] for m in emulator.bot_messages(token, 7501)] == [UNKNOWN_TEXT]
        assert serve.terminate() == 0, serve.log()
    finally:
        serve.close()
    # PTB logs (with a traceback) and retries a getUpdates that hit a network error — the shared
    # emulator is busy when the whole suite runs; anything else is a real failure
    log = serve.log()
    transient = ("telegram.error.NetworkError", "telegram.error.TimedOut", "httpx.ReadError", "httpx.ReadTimeout",
                 "httpx.ConnectError", "httpx.RemoteProtocolError", "httpcore.")
    blocks = log.split("Traceback (most recent call last):")[1:]
    assert all(any(t in b for t in transient) for b in blocks), log
