"""channels: each visitor, family member and emergency contact chooses telegram | wecom | sms
(with a WeCom UserID where relevant); callback_receipts (replayed WeCom callbacks are refused
across restarts); chat_states (multi-step chat exchanges, e.g. closing a task in WeCom)

Revision ID: 0004w
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004w"
down_revision = "0003"
branch_labels = None
depends_on = None

CHANNELS = "channel IN ('telegram', 'wecom', 'sms')"
PEOPLE = (("visitors", "telegram"), ("family_members", "telegram"), ("emergency_contacts", "sms"))


def upgrade() -> None:
    for table, default in PEOPLE:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("channel", sa.String(length=16), server_default=default, nullable=False))
            batch.add_column(sa.Column("wecom_user_id", sa.String(length=64), nullable=True))
            batch.create_check_constraint("channel_valid", CHANNELS)
            if table == "visitors":
                batch.create_unique_constraint(op.f("uq_visitors_wecom_user_id"), ["wecom_user_id"])
    op.create_table(
        "callback_receipts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_receipts")),
        sa.UniqueConstraint("channel", "key", name=op.f("uq_callback_receipts_channel")),
    )
    op.create_index(op.f("ix_callback_receipts_received_at"), "callback_receipts", ["received_at"])
    op.create_table(
        "chat_states",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("user_ref", sa.String(length=64), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_states")),
        sa.UniqueConstraint("channel", "user_ref", name=op.f("uq_chat_states_channel")),
    )


def downgrade() -> None:
    op.drop_table("chat_states")
    op.drop_index(op.f("ix_callback_receipts_received_at"), table_name="callback_receipts")
    op.drop_table("callback_receipts")
    for table, _default in PEOPLE:
        with op.batch_alter_table(table) as batch:
            if table == "visitors":
                batch.drop_constraint(op.f("uq_visitors_wecom_user_id"), type_="unique")
            batch.drop_constraint("channel_valid", type_="check")
            batch.drop_column("wecom_user_id")
            batch.drop_column("channel")
