"""personal data at rest: phone numbers in E.164, ID and phone numbers sealed (AES-GCM) with keyed
hashes beside them for look-ups; the unique ID number moves to its hash; task details and outbox
recipients and bodies (which carry phone numbers) sealed too

Revision ID: 0004d
Revises: 0004p

The keys come from the Database running the migration (``data.db.Database.upgrade`` hangs them on
its engine): run it with ``tanfang db upgrade`` (or any ``tanfang`` command), never with a bare
``alembic upgrade``.

SQLite: columns are only added and indexed here, never altered in a rebuilt table. Rebuilding
``elders`` (what Alembic's batch mode does) with foreign keys on runs an implicit DELETE that
cascades: every emergency contact and household member would be lost. SQLite does not enforce
VARCHAR lengths, so the old lengths stay in its schema; the old UNIQUE on the sealed ID column
stays too (tokens never repeat) and the ORM requires the hash.
"""

import sqlalchemy as sa
from alembic import op

from data import idcard, phone
from data.crypto import DataKeyError, key_id
from data.sealed import HASH_LENGTH, TOKEN_COLUMN_LENGTH, keys_of, reseal_table, rewrite_rows

revision = "0004d"
down_revision = "0004p"
branch_labels = None
depends_on = None

# table -> [(column, purpose, hash column, old length, nullable)]; frozen as of this revision
SEALED = {
    "elders": [("id_number", "id", "id_number_hash", 18, False), ("phone", "phone", "phone_hash", 20, True),
               ("disability_cert_no", "text", None, 32, True)],
    "household_members": [("id_number", "id", "id_number_hash", 18, True)],
    "emergency_contacts": [("phone", "phone", "phone_hash", 20, False)],
    "family_members": [("phone", "phone", "phone_hash", 20, True)],
    "visitors": [("phone", "phone", "phone_hash", 20, True)],
    "outbox": [("recipient", "text", None, 64, False), ("body", "text", None, None, False)],
    "tasks": [("detail", "text", None, None, True)],
}
UNIQUE_HASH = ("elders", "id_number_hash")
PLAIN = {"phone": phone.normalize, "id": idcard.normalize_id, "text": lambda v: v}


def _keys():
    try:
        return keys_of(op.get_bind().dialect)
    except DataKeyError as exc:
        raise DataKeyError(f"{exc}; run this migration with `tanfang db upgrade`") from exc


def _schema_up(sqlite: bool) -> None:
    for name, cols in SEALED.items():
        for col, _purpose, hashed, old_len, nullable in cols:
            if hashed:
                op.add_column(name, sa.Column(hashed, sa.String(HASH_LENGTH), nullable=True))
            if old_len is not None and not sqlite:
                op.alter_column(name, col, type_=sa.String(TOKEN_COLUMN_LENGTH), existing_type=sa.String(old_len),
                                existing_nullable=nullable)
    if not sqlite:
        op.drop_constraint(op.f("uq_elders_id_number"), "elders", type_="unique")


def _indexes_up(sqlite: bool) -> None:
    for name, cols in SEALED.items():
        for _col, _purpose, hashed, _old, _nullable in cols:
            if hashed and (name, hashed) != UNIQUE_HASH:
                op.create_index(op.f(f"ix_{name}_{hashed}"), name, [hashed])
    if sqlite:
        op.create_index(op.f("uq_elders_id_number_hash"), "elders", ["id_number_hash"], unique=True)
    else:
        op.alter_column("elders", "id_number_hash", existing_type=sa.String(HASH_LENGTH), nullable=False)
        op.create_unique_constraint(op.f("uq_elders_id_number_hash"), "elders", ["id_number_hash"])


def upgrade() -> None:
    conn = op.get_bind()
    sqlite = conn.dialect.name == "sqlite"
    keys = _keys()
    _schema_up(sqlite)
    # text messages already waiting go out to E.164 numbers
    rewrite_rows(conn, "outbox", ["recipient"], lambda v: {"recipient": phone.normalize(v["recipient"])},
                 where=lambda t: sa.column("channel") == "sms")

    def read(stored: str, purpose: str) -> str:
        if key_id(stored) is not None:  # sealed already (a re-run after a failure elsewhere)
            return keys.decrypt(stored, purpose)
        return PLAIN[purpose](stored)

    for name, cols in SEALED.items():
        reseal_table(conn, name, [(c, p, h) for c, p, h, _l, _n in cols], keys, read)
    _indexes_up(sqlite)


def downgrade() -> None:
    conn = op.get_bind()
    sqlite = conn.dialect.name == "sqlite"
    keys = _keys()
    for name, cols in SEALED.items():
        def change(stored, cols=cols):
            out = {}
            for col, purpose, _h, _l, _n in cols:
                plain = None if stored[col] is None else keys.decrypt(stored[col], purpose)
                out[col] = phone.national(plain) if purpose == "phone" and plain else plain
            return out
        rewrite_rows(conn, name, [c[0] for c in cols], change)
    if sqlite:
        op.drop_index(op.f("uq_elders_id_number_hash"), "elders")
    else:
        op.drop_constraint(op.f("uq_elders_id_number_hash"), "elders", type_="unique")
        op.create_unique_constraint(op.f("uq_elders_id_number"), "elders", ["id_number"])
    for name, cols in SEALED.items():
        for col, _purpose, hashed, old_len, nullable in cols:
            if hashed:
                if (name, hashed) != UNIQUE_HASH:
                    op.drop_index(op.f(f"ix_{name}_{hashed}"), name)
                op.drop_column(name, hashed)
            if old_len is not None and not sqlite:
                op.alter_column(name, col, type_=sa.String(old_len), existing_type=sa.String(TOKEN_COLUMN_LENGTH),
                                existing_nullable=nullable)
