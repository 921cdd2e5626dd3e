"""outbox relay lease

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 15:10:00

One row naming the process that relays the outbox until when, so that ``serve`` and
``alerts consume`` on one database never relay at the same time.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    lease = op.create_table(
        "outbox_lease",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.bulk_insert(lease, [{"name": "relay", "holder": None, "until": None}])


def downgrade() -> None:
    op.drop_table("outbox_lease")
