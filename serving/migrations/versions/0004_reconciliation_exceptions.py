"""reconciliation exceptions

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 10:10:00

Stock figures on which the stream and an ERP/WMS extract disagree beyond tolerance
(``shelfguard reconcile``); unique per (sku, location, source, as_of).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reconciliation_exceptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(length=100), nullable=False),
        sa.Column("location", sa.String(length=100), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stream_on_hand", sa.Integer(), nullable=True),
        sa.Column("source_on_hand", sa.Integer(), nullable=True),
        sa.Column("difference", sa.Integer(), nullable=False),
        sa.Column("tolerance", sa.JSON(), nullable=False),
        sa.Column("last_events", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detected_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sku", "location", "source", "as_of"),
    )
    with op.batch_alter_table("reconciliation_exceptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reconciliation_exceptions_location"), ["location"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_reconciliation_exceptions_sku"), ["sku"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("reconciliation_exceptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reconciliation_exceptions_sku"))
        batch_op.drop_index(batch_op.f("ix_reconciliation_exceptions_location"))
    op.drop_table("reconciliation_exceptions")
