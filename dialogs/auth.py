"""What the app, the Rasa server and the action server share: one token, and the proofs made with it.

* **The token** (``TANFANG_RASA_TOKEN``; without it each process that starts embedded servers
  makes a random one of its own, ``shared_token``): Rasa's ``--auth-token`` for its HTTP API
  (the app sends it as the ``token`` query parameter, as Rasa's API expects), and a bearer token
  the Rasa server sends to the action server (``Authorization`` header of ``action_endpoint`` in
  the endpoints file).
* **A conversation proof**: Rasa's REST channel (``/webhooks/rest/webhook``) takes no token, so
  anyone who reaches Rasa could talk as ``visit-123``. The app puts an HMAC of the conversation id
  into each message's metadata; the actions write an answer only when the proof is right.
* **The deployment's identity**: a hash of the database URL and of the data folder. A server
  found running on a port is reused only when it knows the token *and* writes to this database.

Pure functions of the standard library: the action server imports them too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PROOF_KEY = "tanfang_proof"
TOKEN_ENV = "TANFANG_RASA_TOKEN"
_process_token: str | None = None


def shared_token(settings) -> str:
    """The configured token (``TANFANG_RASA_TOKEN``), else this process's own random one."""
    global _process_token
    configured = settings.secrets.rasa_token
    if configured:
        return configured.get_secret_value()
    if _process_token is None:
        _process_token = secrets.token_urlsafe(32)
    return _process_token


def conversation_proof(token: str, conversation_id: str) -> str:
    return hmac.new(token.encode(), f"conversation:{conversation_id}".encode(), hashlib.sha256).hexdigest()


def proof_ok(token: str | None, conversation_id: str | None, proof) -> bool:
    if not token or not conversation_id or not isinstance(proof, str):
        return False
    return hmac.compare_digest(conversation_proof(token, conversation_id), proof)


def bearer(token: str) -> str:
    return f"Bearer {token}"


def bearer_ok(token: str | None, header: str | None) -> bool:
    if not token or not header:
        return False
    return hmac.compare_digest(bearer(token).encode(), header.encode())


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def identity(settings) -> dict[str, str]:
    """Which deployment a server serves: hashes of the database URL and of the data folder."""
    return {"database": _digest(settings.database_url),
            "deployment": _digest(str(settings.app.data_dir.expanduser().resolve()))}
