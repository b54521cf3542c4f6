"""Column types that keep personal data sealed in the database (keys and tokens: :mod:`data.crypto`).

* ``Sealed(purpose, plain_length)``/``SealedText(purpose)``: the attribute holds the plain value
  (``elder.phone``), the column an AES-GCM token. ``SealedJSON`` is a ``SealedText`` whose
  attribute is a JSON value (a message's SMS template and its variables). A sealed column cannot be compared by value
  (every token has a fresh nonce): ``Elder.phone == x`` raises, look-ups go through the hash.
* ``KeyedHash(purpose)``: the HMAC of the value, for look-ups and uniqueness. Bind the *plain*
  value: ``select(Elder).where(Elder.id_number_hash == "41022519...")`` hashes it (after the
  same normalisation as stored values: E.164 for phones, upper case for ID numbers).
* ``pair(Elder.phone, "phone_hash", "phone")``: setting ``elder.phone`` normalises the value and
  sets its hash column too, so the rest of the code only ever reads and writes ``elder.phone``.

The keys belong to the database, not to the process: :class:`data.db.Database` hangs a
:class:`KeyHolder` on its engine's dialect (one dialect object per engine), and the types find it
there, so two databases with different keys can be open in one process (rotation, tests).
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

from sqlalchemy import String, Table, Text, bindparam, column, event, select, table, update
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.types import TypeDecorator

from data import idcard, phone
from data.crypto import DataKeyError, DataKeys, key_id

TOKEN_COLUMN_LENGTH = 160  # a token of up to 80 plain bytes (enc1:kid:base64(nonce|ciphertext|tag))
HASH_LENGTH = 64
NORMALISE: dict[str, Callable[[str], str]] = {"phone": phone.normalize, "id": idcard.normalize_id}


class KeyHolder:
    """The data keys of one database, resolved on first use (a key file is made only when needed)."""

    def __init__(self, keys: DataKeys | Callable[[], DataKeys]):
        self._keys = keys if isinstance(keys, DataKeys) else None
        self._loader = None if isinstance(keys, DataKeys) else keys
        self._lock = threading.Lock()

    def get(self) -> DataKeys:
        if self._keys is None:
            with self._lock:
                if self._keys is None:
                    self._keys = self._loader()
        return self._keys


def keys_of(dialect) -> DataKeys:
    holder = getattr(dialect, "tanfang_keys", None)
    if holder is None:
        raise DataKeyError("这个数据库连接没有数据密钥（请用 data.db.Database 打开数据库）"
                           " (no data keys on this engine: open it through data.db.Database)")
    return holder.get()


_BY_VALUE = {operators.eq, operators.ne, operators.in_op, operators.not_in_op, operators.like_op,
             operators.ilike_op, operators.contains_op, operators.startswith_op, operators.endswith_op,
             operators.lt, operators.le, operators.gt, operators.ge, operators.between_op}


class _NoValueComparison(TypeDecorator.Comparator):
    def operate(self, op, *other, **kwargs):
        # Comparing with another column is not a comparison by value: SQLAlchemy itself does it when it
        # matches a cached statement's result columns (an annotated column against the plain one).
        if other and isinstance(other[0], ColumnElement) and not isinstance(other[0], BindParameter):
            return super().operate(op, *other, **kwargs)
        if op in _BY_VALUE and not (op in (operators.eq, operators.ne) and other and other[0] is None):
            raise TypeError(f"加密列 {self.expr} 不能按值比较，请用它的 _hash 列"
                            f" (a sealed column cannot be compared by value: use its hash column)")
        return super().operate(op, *other, **kwargs)


class _SealedBase(TypeDecorator):
    cache_ok = True
    comparator_factory = _NoValueComparison
    purpose = "text"

    def process_bind_param(self, value: Any, dialect) -> str | None:
        if value is None:
            return None
        return keys_of(dialect).encrypt(str(value), self.purpose)

    def process_result_value(self, value: str | None, dialect) -> str | None:
        if value is None:
            return None
        return keys_of(dialect).decrypt(value, self.purpose)


class Sealed(_SealedBase):
    """A short value (ID number, phone number) sealed with AES-GCM; ``plain_length`` is the most
    a user may enter (validators read it), the column holds the longer token."""

    impl = String
    cache_ok = True  # SQLAlchemy reads it from each class itself

    def __init__(self, purpose: str, plain_length: int):
        if plain_length > 80:
            raise ValueError("Sealed holds at most 80 plain characters; use SealedText")
        super().__init__(TOKEN_COLUMN_LENGTH)
        self.purpose = purpose
        self.plain_length = plain_length


class SealedText(_SealedBase):
    """Free text that may carry personal data (a task's detail, a message body), sealed."""

    impl = Text
    cache_ok = True

    def __init__(self, purpose: str = "text"):
        super().__init__()
        self.purpose = purpose


class SealedJSON(SealedText):
    """A JSON value (dict, list) sealed as text: the token holds its compact JSON. Rotation and the
    migrations see an ordinary sealed text column."""

    cache_ok = True

    def process_bind_param(self, value: Any, dialect) -> str | None:
        if value is None:
            return None
        return super().process_bind_param(json.dumps(value, ensure_ascii=False, sort_keys=True), dialect)

    def process_result_value(self, value: str | None, dialect) -> Any:
        plain = super().process_result_value(value, dialect)
        return None if plain is None else json.loads(plain)


class HashValue(str):
    """A hash read back from the database: bound as it is, never hashed again."""


def keyed_hash(keys: DataKeys, plain: str, purpose: str) -> str:
    """The look-up hash of a plain value: HMAC of its normalised form (what ``KeyedHash`` stores)."""
    return keys.hash(NORMALISE[purpose](plain), purpose)


class KeyedHash(TypeDecorator):
    """HMAC-SHA256 of the normalised plain value under the database's hash key (hex)."""

    impl = String
    cache_ok = True

    def __init__(self, purpose: str):
        super().__init__(HASH_LENGTH)
        self.purpose = purpose

    def process_bind_param(self, value: Any, dialect) -> str | None:
        if value is None or isinstance(value, HashValue):
            return value
        return keyed_hash(keys_of(dialect), str(value), self.purpose)

    def process_result_value(self, value: str | None, dialect) -> str | None:
        return None if value is None else HashValue(value)


def pair(attribute, hash_attr: str, purpose: str) -> None:
    """Setting ``attribute`` normalises the value and sets ``hash_attr`` (hashed when flushed)."""
    normalise = NORMALISE[purpose]

    def on_set(target, value, _old, _initiator):
        if value is not None and value != "":
            value = normalise(value)
        setattr(target, hash_attr, value)
        return value

    event.listen(attribute, "set", on_set, retval=True)


# ---- key rotation ----------------------------------------------------------------------------------
def sealed_columns(metadata) -> list[tuple[Table, list[tuple[str, str, str | None]]]]:
    """Every table with sealed columns: (table, [(column, purpose, its hash column or None)])."""
    out = []
    for tbl in metadata.sorted_tables:
        cols = []
        for col in tbl.columns:
            if isinstance(col.type, _SealedBase):
                hashed = f"{col.name}_hash"
                cols.append((col.name, col.type.purpose,
                             hashed if hashed in tbl.columns and isinstance(tbl.columns[hashed].type, KeyedHash) else None))
        if cols:
            out.append((tbl, cols))
    return out


def rewrite_rows(conn, name: str, columns: list[str], change: Callable[[dict], dict],
                 where=None) -> int:
    """Replace values of ``columns`` row by row: ``change({column: stored})`` gives the new values
    (it may name other columns too, e.g. hashes). Plain SQL on untyped columns: no column type
    runs, so migrations and rotation read and write exactly what is stored."""
    rows_t = table(name, column("id"), *(column(c) for c in columns))
    stmt = select(rows_t.c.id, *(rows_t.c[c] for c in columns))
    if where is not None:
        stmt = stmt.where(where(rows_t))
    params, written = [], set()
    for row in conn.execute(stmt).all():
        values = change(dict(zip(columns, row[1:])))
        written.update(values)
        params.append({"k_id": row[0], **{f"v_{c}": v for c, v in values.items()}})
    if params:
        t = table(name, column("id"), *(column(c) for c in sorted(written)))
        conn.execute(update(t).where(t.c.id == bindparam("k_id")).values({c: bindparam(f"v_{c}") for c in written}),
                     params)
    return len(params)


def reseal_table(conn, name: str, columns: list[tuple[str, str, str | None]], keys: DataKeys,
                 read: Callable[[str, str], str]) -> dict[str, int]:
    """Every value of ``columns`` (column, purpose, hash column) in table ``name`` sealed again
    under ``keys``' current key, with its hash recomputed; ``read(stored, purpose)`` opens one."""
    counts = {"rows": 0, "values": 0}

    def change(stored: dict) -> dict:
        out = {}
        for col, purpose, hashed in columns:
            plain = None if stored[col] is None else read(stored[col], purpose)
            out[col] = None if plain is None else keys.encrypt(plain, purpose)
            if hashed:
                out[hashed] = None if plain is None else keyed_hash(keys, plain, purpose)
            counts["values"] += plain is not None
        return out

    counts["rows"] = rewrite_rows(conn, name, [c for c, _p, _h in columns], change)
    return counts


def rotate(conn, metadata, keys: DataKeys) -> dict[str, Any]:
    """Re-seal every sealed value under the current key (old ones open with ``keys``' old keys)."""
    report: dict[str, Any] = {"key_id": keys.kid, "tables": {}, "values": 0, "was_under": {}}

    def read(stored: str, purpose: str) -> str:
        kid = key_id(stored) or "plaintext"
        report["was_under"][kid] = report["was_under"].get(kid, 0) + 1
        return keys.decrypt(stored, purpose)

    for tbl, cols in sealed_columns(metadata):
        counts = reseal_table(conn, tbl.name, cols, keys, read)
        report["tables"][tbl.name] = counts
        report["values"] += counts["values"]
    return report
