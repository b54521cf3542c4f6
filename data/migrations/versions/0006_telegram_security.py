"""telegram security: hashed, expiring invite codes; join failures per chat; processed update ids

Invite codes move from ``visitors.invite_code`` / ``family_members.invite_code`` (plain text) to
``telegram_invites`` (a hash only, with an expiry). Codes still outstanding are carried over as
hashes, valid for 7 days from this migration; then the plain-text columns are dropped.

Revision ID: 0004t
Revises: 0004_web
"""

import datetime as dt
import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0004t"
down_revision = "0004_web"
branch_labels = None
depends_on = None

# frozen copy of bot.invites.hash_code as of this revision (migrations never import the app)
_SALT, _N, _R, _P = b"tanfang:telegram-invite:v1", 2 ** 14, 8, 1
CARRY_OVER_DAYS = 7


def _hash(code: str) -> str:
    return hashlib.scrypt(code.strip().upper().encode(), salt=_SALT, n=_N, r=_R, p=_P, dklen=32).hex()


def _create_tables() -> None:
    op.create_table(
        "telegram_invites",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("visitor_id", sa.Integer(), nullable=True),
        sa.Column("family_member_id", sa.Integer(), nullable=True),
        sa.Column("issued_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.Column("used_by_user_id", sa.BigInteger(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint("(visitor_id IS NULL) <> (family_member_id IS NULL)",
                           name=op.f("ck_telegram_invites_one_holder")),
        sa.ForeignKeyConstraint(["visitor_id"], ["visitors.id"], ondelete="CASCADE",
                                name=op.f("fk_telegram_invites_visitor_id_visitors")),
        sa.ForeignKeyConstraint(["family_member_id"], ["family_members.id"], ondelete="CASCADE",
                                name=op.f("fk_telegram_invites_family_member_id_family_members")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telegram_invites")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_telegram_invites_code_hash")),
    )
    op.create_index(op.f("ix_telegram_invites_visitor_id"), "telegram_invites", ["visitor_id"])
    op.create_index(op.f("ix_telegram_invites_family_member_id"), "telegram_invites", ["family_member_id"])
    op.create_table(
        "telegram_join_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telegram_join_failures")),
    )
    op.create_index("ix_telegram_join_failures_chat_at", "telegram_join_failures", ["chat_id", "at"])
    op.create_table(
        "telegram_updates",
        sa.Column("bot_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("claimed_at", sa.DateTime(), nullable=False),
        sa.Column("done_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("bot_id", "update_id", name=op.f("pk_telegram_updates")),
    )
    op.create_index(op.f("ix_telegram_updates_claimed_at"), "telegram_updates", ["claimed_at"])


def _outstanding_codes() -> dict[str, list[tuple[int, str]]]:
    conn = op.get_bind()
    return {table: conn.execute(sa.text(f"SELECT id, invite_code FROM {table} WHERE invite_code IS NOT NULL")).all()
            for table in ("visitors", "family_members")}


def _carry_over(codes: dict[str, list[tuple[int, str]]]) -> None:
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    invites = sa.table("telegram_invites", sa.column("code_hash"), sa.column("visitor_id"),
                       sa.column("family_member_id"), sa.column("issued_by"), sa.column("created_at"),
                       sa.column("expires_at"))
    holder = {"visitors": "visitor_id", "family_members": "family_member_id"}
    for table, rows in codes.items():
        for row_id, code in rows:
            op.get_bind().execute(invites.insert().values(
                code_hash=_hash(code), issued_by="migration 0004t", created_at=now,
                expires_at=now + dt.timedelta(days=CARRY_OVER_DAYS), **{holder[table]: row_id}))


def _drop_plain_codes() -> None:
    # SQLite: batch mode copies the table and drops the old one (data.db.Database.upgrade turns the
    # foreign keys off around migrations, so rows pointing at visitors are kept)
    for table in ("visitors", "family_members"):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"uq_{table}_invite_code", type_="unique")
            batch.drop_column("invite_code")


def upgrade() -> None:
    codes = _outstanding_codes()
    _drop_plain_codes()
    _create_tables()
    _carry_over(codes)


def downgrade() -> None:
    # the codes themselves were never kept: outstanding invites are lost, staff issue new ones
    for table in ("visitors", "family_members"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("invite_code", sa.String(length=32), nullable=True))
            batch.create_unique_constraint(f"uq_{table}_invite_code", ["invite_code"])
    op.drop_index(op.f("ix_telegram_updates_claimed_at"), table_name="telegram_updates")
    op.drop_table("telegram_updates")
    op.drop_index("ix_telegram_join_failures_chat_at", table_name="telegram_join_failures")
    op.drop_table("telegram_join_failures")
    op.drop_index(op.f("ix_telegram_invites_family_member_id"), table_name="telegram_invites")
    op.drop_index(op.f("ix_telegram_invites_visitor_id"), table_name="telegram_invites")
    op.drop_table("telegram_invites")
