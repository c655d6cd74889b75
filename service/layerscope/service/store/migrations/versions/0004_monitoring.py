"""monitor_window and monitor_reference: live-traffic monitoring's windows and references.

Revision ID: 0004
Revises: 0003
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
        "monitor_window",
        sa.Column("window_id", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("replica", sa.String(128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reference_id", sa.String(80), nullable=True),
        sa.Column("resolution", sa.String(16), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("first_drifting", sa.String(512), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("window_id", name="pk_monitor_window"),
    )
    op.create_index("ix_monitor_window_model", "monitor_window", ["model_name", "model_version", "ended_at"])
    op.create_table(
        "monitor_reference",
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("reference_id", sa.String(80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(160), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("model_name", "model_version", name="pk_monitor_reference"),
    )


def downgrade() -> None:
    op.drop_table("monitor_reference")
    op.drop_index("ix_monitor_window_model", table_name="monitor_window")
    op.drop_table("monitor_window")
