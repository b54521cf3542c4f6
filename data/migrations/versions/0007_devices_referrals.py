"""the plan (豫民文〔2023〕165号): devices and device_events (alerts from home devices), referrals
(需求转介), emergency_records (处置记录); tasks.service_minutes (volunteer hours, the time bank);
call_attempts.meta (why a call is placed: a device alert's check-in and its opening words)

Revision ID: 0004p
Revises: 0004t
"""

import sqlalchemy as sa
from alembic import op

revision = "0004p"
down_revision = "0004t"
branch_labels = None
depends_on = None

NOW = sa.text("(CURRENT_TIMESTAMP)")
KINDS = "('call_button', 'water_meter', 'electricity_meter', 'fall_detector', 'health_band')"


def _stamps() -> list[sa.Column]:
    return [sa.Column("created_at", sa.DateTime(), server_default=NOW, nullable=False),
            sa.Column("updated_at", sa.DateTime(), server_default=NOW, nullable=False)]


def _devices() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("elder_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("vendor", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("installed_on", sa.Date(), nullable=True),
        sa.Column("note", sa.String(length=200), nullable=True),
        *_stamps(),
        sa.CheckConstraint(f"kind IN {KINDS}", name=op.f("ck_devices_kind_valid")),
        sa.ForeignKeyConstraint(["elder_id"], ["elders.id"], name=op.f("fk_devices_elder_id_elders"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("vendor", "device_id", name=op.f("uq_devices_vendor")),
    )
    op.create_index(op.f("ix_devices_elder_id"), "devices", ["elder_id"])
    op.create_table(
        "device_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("elder_id", sa.Integer(), nullable=False),
        sa.Column("device_pk", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("device_kind", sa.String(length=24), nullable=False),
        sa.Column("device_ref", sa.String(length=64), nullable=True),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("label", sa.String(length=100), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("outcome", sa.String(length=12), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("attempt_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column("raw", sa.JSON(), nullable=True),
        sa.CheckConstraint(f"device_kind IN {KINDS}", name=op.f("ck_device_events_device_kind_valid")),
        sa.CheckConstraint("level IN ('urgent', 'concern', 'info')", name=op.f("ck_device_events_level_valid")),
        sa.CheckConstraint("outcome IN ('task', 'merged', 'duplicate', 'quietened', 'recorded')",
                           name=op.f("ck_device_events_outcome_valid")),
        sa.ForeignKeyConstraint(["attempt_id"], ["call_attempts.id"], name=op.f("fk_device_events_attempt_id_call_attempts")),
        sa.ForeignKeyConstraint(["device_pk"], ["devices.id"], name=op.f("fk_device_events_device_pk_devices"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["elder_id"], ["elders.id"], name=op.f("fk_device_events_elder_id_elders"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_device_events_task_id_tasks")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_events")),
    )
    op.create_index("ix_device_events_device", "device_events", ["elder_id", "device_kind", "device_ref", "at"])
    op.create_index(op.f("ix_device_events_elder_id"), "device_events", ["elder_id"])


def _records() -> None:
    op.create_table(
        "emergency_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("elder_id", sa.Integer(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("handled_at", sa.DateTime(), nullable=False),
        sa.Column("handler_id", sa.Integer(), nullable=True),
        sa.Column("handler_name", sa.String(length=64), nullable=True),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        *_stamps(),
        sa.ForeignKeyConstraint(["elder_id"], ["elders.id"], name=op.f("fk_emergency_records_elder_id_elders")),
        sa.ForeignKeyConstraint(["handler_id"], ["visitors.id"], name=op.f("fk_emergency_records_handler_id_visitors")),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_emergency_records_task_id_tasks"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_emergency_records")),
        sa.UniqueConstraint("task_id", name=op.f("uq_emergency_records_task_id")),
    )
    op.create_index(op.f("ix_emergency_records_elder_id"), "emergency_records", ["elder_id"])
    op.create_table(
        "referrals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("elder_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("visit_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("need", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("submitted_at", sa.DateTime(), nullable=False),
        sa.Column("submitted_by", sa.String(length=64), nullable=False),
        *[sa.Column(f"{s}_{c}", sa.DateTime() if c == "at" else sa.String(length=64), nullable=True)
          for s in ("accepted", "served", "closed") for c in ("at", "by")],
        sa.Column("note", sa.Text(), nullable=True),
        *_stamps(),
        sa.CheckConstraint("status IN ('submitted', 'accepted', 'served', 'closed')", name=op.f("ck_referrals_status_valid")),
        sa.ForeignKeyConstraint(["elder_id"], ["elders.id"], name=op.f("fk_referrals_elder_id_elders")),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_referrals_task_id_tasks")),
        sa.ForeignKeyConstraint(["visit_id"], ["visits.id"], name=op.f("fk_referrals_visit_id_visits")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referrals")),
    )
    op.create_index(op.f("ix_referrals_elder_id"), "referrals", ["elder_id"])
    op.create_index("ix_referrals_open", "referrals", ["status", "submitted_at"])


def upgrade() -> None:
    _devices()
    _records()
    with op.batch_alter_table("call_attempts") as batch:
        batch.add_column(sa.Column("meta", sa.JSON(), nullable=True))
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("service_minutes", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("service_minutes")
    with op.batch_alter_table("call_attempts") as batch:
        batch.drop_column("meta")
    for table in ("referrals", "emergency_records", "device_events", "devices"):
        op.drop_table(table)  # their indexes go with them
