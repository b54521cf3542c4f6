"""A local Telegram Bot API on 127.0.0.1: telegram-test-api 4.2.1 (npm) behind ``sim/telegram_emulator.js``.

The tests and the offline demo run the real python-telegram-bot Application against it: the bot
polls it for updates and sends through it; "users" (visitors, family members) are driven through
its client endpoints (``sendMessage``, ``sendCallback``), and what the bot sent to each chat is
read back with ``getUpdatesHistory``. Installed by ``.ci/setup.d/50-telegram.sh`` into
``~/.cache/tanfang/npm``; Node.js comes from the OS.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from sim.net import free_port

HERE = Path(__file__).resolve().parent
NPM_DIR = Path(os.environ.get("TANFANG_TELEGRAM_API_DIR") or os.environ.get("TANFANG_TEST_TELEGRAM_API_DIR")
               or Path.home() / ".cache/tanfang/npm/telegram-test-api") / "node_modules"


class EmulatorUnavailable(RuntimeError):
    """Node.js or the npm package is missing (the message says which and how to install it)."""


def unavailable_reason() -> str | None:
    if shutil.which("node") is None:
        return "没有 Node.js（apt-get install nodejs npm）"
    if not (NPM_DIR / "telegram-test-api").is_dir():
        return f"没有安装 telegram-test-api（{NPM_DIR}；运行 .ci/setup.d/50-telegram.sh）"
    return None


class TelegramEmulator:
    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "TelegramEmulator":
        reason = unavailable_reason()
        if reason:
            raise EmulatorUnavailable(reason)
        self._proc = subprocess.Popen(["node", str(HERE / "telegram_emulator.js"), str(self.port)],
                                      env={**os.environ, "NODE_PATH": str(NPM_DIR)},
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self._proc.stdout.readline()
        if not line.startswith("ready"):
            self._proc.kill()
            raise EmulatorUnavailable(f"Telegram 模拟器没有启动：{line.strip() or '无输出'}")
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._proc = None

    def __enter__(self) -> "TelegramEmulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the bot's side ---------------------------------------------------------------------------
    @staticmethod
    def token() -> str:
        return f"{uuid.uuid4().int % 10**9}:T{uuid.uuid4().hex}"  # the emulator keeps state per token

    def bot_messages(self, token: str, chat_id: int | None = None) -> list[dict]:
        """What the bot sent (oldest first), optionally to one chat."""
        r = httpx.post(f"{self.url}/getUpdatesHistory", json={"token": token}, timeout=5)
        out = [{**u["message"], "message_id": u["messageId"]} for u in r.json()["result"]
               if "message" in u and "chat_id" in u["message"]]
        if chat_id is not None:
            out = [m for m in out if str(m["chat_id"]) == str(chat_id)]
        return out

    def add_file(self, file_id: str, path: Path) -> None:
        httpx.post(f"{self.url}/testFile", json={"file_id": file_id, "path": str(path)}, timeout=5)

    # -- a user's side --------------------------------------------------------------------------------
    @staticmethod
    def user(user_id: int, first_name: str = "User") -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": first_name}

    def user_says(self, token: str, user: dict[str, Any], text: str) -> None:
        chat = {"id": user["id"], "type": "private", "first_name": user.get("first_name", "User")}
        body = {"botToken": token, "from": user, "chat": chat, "text": text, "date": int(time.time())}
        if text.startswith("/"):
            body["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        httpx.post(f"{self.url}/sendMessage", json=body, timeout=5).raise_for_status()

    def user_presses(self, token: str, user: dict[str, Any], message: dict, data: str) -> None:
        chat = {"id": user["id"], "type": "private", "first_name": user.get("first_name", "User")}
        body = {"botToken": token, "from": user, "data": data,
                "message": {"message_id": message["message_id"], "chat": chat, "date": int(time.time()),
                            "text": message.get("text", "")}}
        httpx.post(f"{self.url}/sendCallback", json=body, timeout=5).raise_for_status()
