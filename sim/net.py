"""Local servers for simulations and tests: a free port on 127.0.0.1, an ASGI app served on it,
the tail of a peer process's log and how it ended."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from pathlib import Path
from typing import AsyncIterator

import uvicorn


def log_tail(path: Path, chars: int) -> str:
    """The last ``chars`` characters of a peer's log ("" when it has none): for its error messages."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def exit_text(code: int) -> str:
    """How a peer process ended, from its return code: "exit code 1", "killed by SIGSEGV"."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def local_server(asgi, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``asgi`` with uvicorn on ``port`` (0: a free one) of ``host``; yields ``http://host:port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(asgi, log_level="warning", lifespan="off", ws="websockets-sansio", ws_max_size=2**20)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=10)
        sock.close()
