"""The telegram-test-api emulator (npm 4.2.1) behind tests/telegram/emulator.js, on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
NPM_DIR = Path(os.environ.get("TANFANG_TEST_TELEGRAM_API_DIR",
                              Path.home() / ".cache/tanfang/npm/telegram-test-api")) / "node_modules"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    def __init__(self, url: str):
        self.url = url

    def token(self) -> str:
        return f"{uuid.uuid4().int % 10**9}:T{uuid.uuid4().hex}"  # global state: one token per test

    def bot_messages(self, token: str) -> list[dict]:
        r = httpx.post(f"{self.url}/getUpdatesHistory", json={"token": token}, timeout=5)
        return [{**u["message"], "message_id": u["messageId"]} for u in r.json()["result"]
                if "message" in u and "chat_id" in u["message"]]

    def add_file(self, file_id: str, path: Path) -> None:
        httpx.post(f"{self.url}/testFile", json={"file_id": file_id, "path": str(path)}, timeout=5)


@pytest.fixture(scope="session")
def emulator():
    if not (NPM_DIR / "telegram-test-api").is_dir() or shutil.which("node") is None:
        msg = f"telegram-test-api is not installed in {NPM_DIR} (run .ci/setup.d/50-telegram.sh)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    port = _free_port()
    proc = subprocess.Popen(["node", str(HERE / "emulator.js"), str(port)], env={**os.environ, "NODE_PATH": str(NPM_DIR)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.kill()
        raise RuntimeError(f"emulator did not start: {line}")
    yield Emulator(f"http://127.0.0.1:{port}")
    proc.terminate()
    proc.wait(timeout=10)
