"""feature snapshots on alerts and count labels

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 10:05:00

``alerts.features``: the feature snapshot a score came with. ``count_labels.features`` and
``count_labels.as_of``: the alert's snapshot and its time, copied when the count completes, so a
label can become a training row. All nullable: rows from before this migration have none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("features", sa.JSON(), nullable=True))
    with op.batch_alter_table("count_labels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("as_of", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("features", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("count_labels", schema=None) as batch_op:
        batch_op.drop_column("features")
        batch_op.drop_column("as_of")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("features")
