"""outbox.template: the SMS template of a message (kind and variables, core.sms_templates), sealed
like the body it renders (the variables are names, phone numbers and what the elder said)

Revision ID: 0004_sms_template
Revises: 0004_reliability

A plain added column (no table rebuild on SQLite); rows written before it have none and go out as
free text, as they would have.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_sms_template"
down_revision = "0004_reliability"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("template", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("template")
