"""The oldest waiting owner's email in one lookup: the inbox checks it on every page ("email has stopped").

Only waiting rows are in this index, so the check no longer scans a backlog (33 ms a page with 44,000 waiting).

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

WAITING = sa.text("state = 'pending'")


def upgrade():
    op.create_index("idx_outbox_waiting", "outbox", ["channel", "kind", "created_at"],
                    sqlite_where=WAITING, postgresql_where=WAITING, if_not_exists=True)  # PostgreSQL's 0001 has it


def downgrade():
    op.drop_index("idx_outbox_waiting", "outbox")
