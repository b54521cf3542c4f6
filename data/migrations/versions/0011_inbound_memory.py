"""elders who call in and memory between calls: call_attempts.direction (outbound | inbound);
inbound_calls (every call to the service number: the caller, what it became, an unknown caller's
call-back); visit_followups (the questions about concerns still open, and what each answer did)

Revision ID: 0004_u_inbound_memory
Revises: 0004_sms_template
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_u_inbound_memory"
down_revision = "0004_sms_template"
branch_labels = None
depends_on = None

TOKEN = 160  # data.sealed.TOKEN_COLUMN_LENGTH
HASH = 64    # data.sealed.HASH_LENGTH
CALLER_KINDS = "('elder', 'emergency_contact', 'family', 'visitor', 'unknown', 'anonymous')"
OUTCOMES = "('urgent', 'callback', 'duty_callback', 'in_progress')"
RISKS = "('none', 'concern', 'urgent')"
ACTIONS = "('closed', 'flagged', 'open', 'unclear')"


def _inbound_calls() -> None:
    op.create_table(
        "inbound_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("line", sa.String(length=16), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("caller", sa.String(length=TOKEN), nullable=True),
        sa.Column("caller_hash", sa.String(length=HASH), nullable=True),
        sa.Column("caller_kind", sa.String(length=20), nullable=False),
        sa.Column("elder_id", sa.Integer(), nullable=True),
        sa.Column("attempt_id", sa.Integer(), nullable=True),
        sa.Column("visit_id", sa.Integer(), nullable=True),
        sa.Column("pressed_help", sa.Boolean(), nullable=False),
        sa.Column("heard", sa.Text(), nullable=True),
        sa.Column("risk", sa.String(length=8), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("duty_visitor_id", sa.Integer(), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("callback_done_at", sa.DateTime(), nullable=True),
        sa.Column("callback_done_by", sa.String(length=64), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint(f"caller_kind IN {CALLER_KINDS}", name=op.f("ck_inbound_calls_caller_kind_valid")),
        sa.CheckConstraint(f"outcome IN {OUTCOMES}", name=op.f("ck_inbound_calls_outcome_valid")),
        sa.CheckConstraint(f"risk IN {RISKS}", name=op.f("ck_inbound_calls_risk_valid")),
        sa.ForeignKeyConstraint(["elder_id"], ["elders.id"], name=op.f("fk_inbound_calls_elder_id_elders")),
        sa.ForeignKeyConstraint(["attempt_id"], ["call_attempts.id"],
                                name=op.f("fk_inbound_calls_attempt_id_call_attempts")),
        sa.ForeignKeyConstraint(["visit_id"], ["visits.id"], name=op.f("fk_inbound_calls_visit_id_visits")),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_inbound_calls_task_id_tasks")),
        sa.ForeignKeyConstraint(["duty_visitor_id"], ["visitors.id"],
                                name=op.f("fk_inbound_calls_duty_visitor_id_visitors")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_calls")),
    )
    for col in ("at", "call_id", "caller_hash", "elder_id"):
        op.create_index(op.f(f"ix_inbound_calls_{col}"), "inbound_calls", [col])


def _visit_followups() -> None:
    op.create_table(
        "visit_followups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("visit_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("resolved", sa.Boolean(), nullable=True),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(f"action IN {ACTIONS}", name=op.f("ck_visit_followups_action_valid")),
        sa.ForeignKeyConstraint(["visit_id"], ["visits.id"], name=op.f("fk_visit_followups_visit_id_visits"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_visit_followups_task_id_tasks")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visit_followups")),
        sa.UniqueConstraint("visit_id", "seq", name=op.f("uq_visit_followups_visit_id")),
    )
    op.create_index(op.f("ix_visit_followups_visit_id"), "visit_followups", ["visit_id"])


def upgrade() -> None:
    with op.batch_alter_table("call_attempts") as batch:
        batch.add_column(sa.Column("direction", sa.String(length=8), server_default="outbound", nullable=False))
        batch.create_check_constraint(op.f("ck_call_attempts_direction_valid"), "direction IN ('outbound', 'inbound')")
    _inbound_calls()
    _visit_followups()


def downgrade() -> None:
    op.drop_table("visit_followups")
    op.drop_table("inbound_calls")
    with op.batch_alter_table("call_attempts") as batch:
        batch.drop_constraint(op.f("ck_call_attempts_direction_valid"), type_="check")
        batch.drop_column("direction")
