"""Personal data at rest: AES-256-GCM for values, HMAC-SHA256 for look-ups, keys that rotate.

A data key is 32 random bytes, given base64-encoded in ``TANFANG_DATA_KEY``. Two sub-keys are
derived from it with HKDF-SHA256 (RFC 5869): one encrypts, one hashes, so a hash reveals
nothing about the encryption key. A stored value is a token::

    enc1:<key id, 8 hex>:<base64url(96-bit random nonce || ciphertext || 128-bit tag)>

The key id names the data key that sealed it, so after a new key is configured the old one
(``TANFANG_DATA_KEY_OLD``) still opens old values until ``tanfang db rotate-key`` re-seals them.
The associated data is the value's purpose (``phone``, ``id``, ``text``): a phone token pasted
into an ID column does not open. Look-ups and uniqueness use ``HMAC(hash key, purpose, value)``
(hex), stored beside the token.

Without ``TANFANG_DATA_KEY`` (development, the demo, tests) a key is generated once and kept in
``data.key`` (0600) in the data folder, with a warning: that protects copies of the database
made without the folder, not a stolen server. Production sets the environment variable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import Callable, Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from data.files import FILE_MODE, private_dir, private_file, sqlite_path

log = logging.getLogger("tanfang.data.crypto")

PREFIX = "enc1"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_FILE = "data.key"
ENV_KEY = "TANFANG_DATA_KEY"
ENV_OLD_KEY = "TANFANG_DATA_KEY_OLD"


class DataKeyError(Exception):
    """A missing, malformed or wrong data key; the message says what to do."""


def _derive(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


def decode_key(text: str, name: str = ENV_KEY) -> bytes:
    """32 key bytes from base64 (standard or URL-safe alphabet, padding optional)."""
    raw = (text or "").strip()
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_" if ("-" in raw or "_" in raw) else None,
                               validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise DataKeyError(f"{name} 应为32字节密钥的base64编码（用 `tanfang db new-key` 生成）"
                           f" ({name} must be 32 random bytes in base64)")
    return key


def new_key() -> str:
    """A fresh data key, base64 (what ``TANFANG_DATA_KEY`` holds)."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


class _Key:
    def __init__(self, master: bytes):
        self.kid = _derive(master, b"tanfang/key-id/v1")[:4].hex()
        self.aead = AESGCM(_derive(master, b"tanfang/aes-256-gcm/v1"))
        self.mac_key = _derive(master, b"tanfang/hmac-sha256/v1")


class DataKeys:
    """The current data key (seals and hashes) and older ones (only open)."""

    def __init__(self, current: bytes, old: Iterable[bytes] = (), source: str = "given"):
        self._current = _Key(current)
        self._by_kid = {k.kid: k for k in [*(_Key(o) for o in old), self._current]}
        self.source = source  # "environment" | the key file's path | "given"

    @classmethod
    def from_b64(cls, key: str, old: Iterable[str] = (), source: str = "environment") -> DataKeys:
        return cls(decode_key(key), [decode_key(o, ENV_OLD_KEY) for o in old if o], source=source)

    @property
    def kid(self) -> str:
        return self._current.kid

    @property
    def kids(self) -> list[str]:
        return list(self._by_kid)

    def encrypt(self, value: str, purpose: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._current.aead.encrypt(nonce, value.encode("utf-8"), purpose.encode())
        body = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()
        return f"{PREFIX}:{self.kid}:{body}"

    def decrypt(self, token: str, purpose: str) -> str:
        kid = key_id(token)
        if kid is None:
            raise DataKeyError("数据库中有未加密的个人数据，请先运行 `tanfang db upgrade`"
                               " (a plaintext value in an encrypted column: run the migrations)")
        key = self._by_kid.get(kid)
        if key is None:
            raise DataKeyError(
                f"该数据由密钥 {kid} 加密，本进程只有 {', '.join(self.kids)}：密钥不对，或轮换时需设置 {ENV_OLD_KEY}"
                f" (value sealed with key {kid}; this process has {', '.join(self.kids)})")
        body = token.split(":", 2)[2]
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        try:
            return key.aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], purpose.encode()).decode("utf-8")
        except InvalidTag as exc:
            raise DataKeyError(f"加密数据已损坏或被篡改 (a {purpose} value fails authentication)") from exc

    def hash(self, value: str, purpose: str) -> str:
        """HMAC-SHA256 of the value under the current hash key, hex (64 characters)."""
        msg = purpose.encode() + b"\x00" + value.encode("utf-8")
        return hmac.new(self._current.mac_key, msg, hashlib.sha256).hexdigest()


def key_id(token: str | None) -> str | None:
    """The key id of a token; ``None`` when ``token`` is not one (plaintext)."""
    if not token or not token.startswith(PREFIX + ":"):
        return None
    parts = token.split(":", 2)
    return parts[1] if len(parts) == 3 and len(parts[1]) == 8 else None


# ---- where the key comes from --------------------------------------------------------------------
_warned: set[str] = set()


def read_key_file(path: Path) -> bytes:
    return decode_key(path.read_text(encoding="ascii"), str(path))


def key_file_keys(path: str | Path, old: Iterable[str] = ()) -> DataKeys:
    """The development key kept in ``path``: created (0600, atomically) on first use, loudly."""
    path = Path(path)
    if not path.exists():
        private_dir(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(new_key() + "\n")
        try:
            os.link(tmp, path)  # fails if another process made it first: theirs wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    private_file(path)
    if str(path) not in _warned:
        _warned.add(str(path))
        log.warning("未设置 %s：个人数据用本机生成的密钥 %s 加密，仅供开发和演示；生产环境请设置 %s"
                    "（见 docs/security.md#personal-data-at-rest） (no %s: using the generated development key %s)",
                    ENV_KEY, path, ENV_KEY, ENV_KEY, path)
    return DataKeys(read_key_file(path), [decode_key(o, ENV_OLD_KEY) for o in old if o], source=str(path))


def default_key_file(url: str, data_dir: str | Path | None) -> Path | None:
    """Where the development key of a database lives: beside a SQLite file, else in ``data_dir``."""
    db_file = sqlite_path(url)
    if db_file is not None:
        return db_file.parent / KEY_FILE
    return Path(data_dir) / KEY_FILE if data_dir is not None else None


def keys_for(url: str, data_dir: str | Path | None = None, *, key: str | None = None,
             old: Iterable[str] = ()) -> DataKeys | Callable[[], DataKeys]:
    """The keys of a database: ``key`` (``TANFANG_DATA_KEY``) checked now, else a function that
    opens (or makes) its development key file on first use. ``old``: previous keys, to open only."""
    old = [o for o in old if o]
    for o in old:
        decode_key(o, ENV_OLD_KEY)  # a malformed old key fails now, not in the middle of a rotation
    if key:
        return DataKeys.from_b64(key, old)
    path = default_key_file(url, data_dir)

    def load() -> DataKeys:
        if path is None:
            raise DataKeyError(f"没有数据密钥：请设置 {ENV_KEY} (no data key for this database)")
        return key_file_keys(path, old)
    return load
