"""The action server, locked: ``python -m dialogs.action_server --port N`` (started by ``EmbeddedRasa``).

rasa-sdk's own server (``python -m rasa_sdk``) listens on 0.0.0.0 with no authentication, so any
caller that reaches it could run the actions that write answers into a visit. This entry point
serves the same rasa-sdk application (``rasa_sdk.endpoint.create_app``: /health, /webhook,
/actions) with three additions:

* it binds ``rasa.action_host`` (127.0.0.1 unless deployed otherwise);
* every request must carry ``Authorization: Bearer <TANFANG_RASA_TOKEN>`` (the Rasa server sends it:
  ``action_endpoint.headers`` in the endpoints file ``EmbeddedRasa`` writes); anything else is 401.
  Without a token in its environment it refuses to start;
* ``/health`` answers with the deployment's identity (``dialogs.auth.identity``: hashes of the
  database URL and the data folder, and the pids), so a later process reuses the server only when
  it writes to that process's database;

and it ends when the process that started it is gone (``TANFANG_PARENT_PID``), as the Rasa server
does (``dialogs/rasa_launcher.py``).
"""

from __future__ import annotations

import argparse
import logging
import os
import threading

from rasa_sdk.endpoint import create_app
from rasa_sdk.executor import ActionExecutor
from sanic import Sanic, response

from core.settings import load_settings
from dialogs.auth import TOKEN_ENV, bearer_ok, identity
from dialogs.rasa_launcher import PARENT_ENV, watch_parent

log = logging.getLogger("tanfang.actions")


def build(actions_module: str, token: str, who: dict) -> Sanic:
    """The rasa-sdk app behind a token check, its /health saying which deployment it serves."""
    executor = ActionExecutor()
    executor.register_package(actions_module)
    app = create_app(executor, cors_origins="")  # no cross-origin callers

    @app.on_request
    async def require_token(request):
        if not bearer_ok(token, request.headers.get("authorization")):
            log.warning("action server: refused %s %s from %s (no or wrong token)", request.method, request.path,
                        request.ip)
            return response.json({"error": "unauthorized"}, status=401)
        return None

    @app.on_response
    async def say_who(request, resp):
        if request.path == "/health" and resp.status == 200:
            return response.json({"status": "ok", **who, "pid": os.getpid(), "parent_pid": os.getppid()})
        return None

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="探访 action server (rasa-sdk, token required)")
    parser.add_argument("--actions", default="dialogs.actions")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5055)
    args = parser.parse_args(argv)
    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise SystemExit(f"{TOKEN_ENV} is not set: the action server does not run unauthenticated")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parent = int(os.environ.get(PARENT_ENV) or 0)
    if parent:
        threading.Thread(target=watch_parent, args=(parent,), daemon=True).start()
    app = build(args.actions, token, identity(load_settings()))
    app.run(host=args.host, port=args.port, single_process=True, access_log=False, motd=False)


if __name__ == "__main__":
    main()
