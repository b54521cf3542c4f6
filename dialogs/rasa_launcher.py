"""Starts ``rasa`` inside Rasa's own Python 3.10 environment for ``dialogs.runtime.EmbeddedRasa``.

Run as a script by that environment's interpreter (it imports nothing of ours): it adds the auth
token from the environment to the command line inside the process (so it never shows in ``ps``),
and watches its parent: when the process that started it is gone (``kill -9``), Rasa ends too
instead of serving another deployment's conversations.
"""

import os
import signal
import sys
import threading
import time

PARENT_ENV = "TANFANG_PARENT_PID"
TOKEN_ENV = "TANFANG_RASA_TOKEN"


def watch_parent(parent: int, every: float = 1.0) -> None:
    while os.getppid() == parent:
        time.sleep(every)
    os.kill(os.getpid(), signal.SIGTERM)  # a clean stop first
    time.sleep(10)
    os._exit(1)


def rasa_args(args: list[str], token: str | None) -> list[str]:
    """``rasa run`` gets the token as one argument: a token may begin with "-" (``token_urlsafe``),
    which argparse would take for an option (``--auth-token: expected one argument``)."""
    if token and args[:1] == ["run"]:
        return [*args, f"--auth-token={token}"]
    return list(args)


def main() -> None:
    parent = int(os.environ.get(PARENT_ENV) or 0)
    if parent:
        threading.Thread(target=watch_parent, args=(parent,), daemon=True).start()
    sys.argv = ["rasa", *rasa_args(sys.argv[1:], os.environ.get(TOKEN_ENV))]
    from rasa.__main__ import main as rasa_main

    rasa_main()


if __name__ == "__main__":
    main()
