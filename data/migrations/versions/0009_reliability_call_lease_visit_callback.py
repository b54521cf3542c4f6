"""reliability: call_attempts.heartbeat_at (the live call's lease, for the recovery sweep) and
visits.callback_task_id (the call-back promised in a visit, made exactly once)

Revision ID: 0004_reliability
Revises: 0004d
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_reliability"
down_revision = "0004d"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("call_attempts") as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("visits") as batch:
        batch.add_column(sa.Column("callback_task_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_visits_callback_task_id_tasks"), "tasks", ["callback_task_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("visits") as batch:
        batch.drop_constraint(op.f("fk_visits_callback_task_id_tasks"), type_="foreignkey")
        batch.drop_column("callback_task_id")
    with op.batch_alter_table("call_attempts") as batch:
        batch.drop_column("heartbeat_at")
