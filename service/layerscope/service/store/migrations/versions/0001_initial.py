"""The first schema: model, run, layer_summary, finding.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the four tables and their indexes."""
    op.create_table(
        "model",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model"),
        sa.UniqueConstraint("name", "version", "sha256", name="uq_model_name_version_sha256"),
    )
    op.create_table(
        "run",
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=False),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["model.id"], name="fk_run_model_id_model"),
        sa.PrimaryKeyConstraint("run_id", name="pk_run"),
    )
    op.create_index("ix_run_model_created", "run", ["model_id", "created_at"])
    op.create_index("ix_run_created", "run", ["created_at"])
    op.create_table(
        "layer_summary",
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("layer", sa.String(512), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("mean", sa.Float(), nullable=False),
        sa.Column("std", sa.Float(), nullable=False),
        sa.Column("min", sa.Float(), nullable=False),
        sa.Column("max", sa.Float(), nullable=False),
        sa.Column("zero_fraction", sa.Float(), nullable=False),
        sa.Column("nan", sa.BigInteger(), nullable=False),
        sa.Column("posinf", sa.BigInteger(), nullable=False),
        sa.Column("neginf", sa.BigInteger(), nullable=False),
        sa.Column("histogram", sa.JSON(), nullable=False),
        sa.Column("histogram_low", sa.Float(), nullable=False),
        sa.Column("histogram_high", sa.Float(), nullable=False),
        sa.Column("unit_activity", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run.run_id"], name="fk_layer_summary_run_id_run", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "position", name="pk_layer_summary"),
    )
    op.create_table(
        "finding",
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("layers", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("suggestion", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run.run_id"], name="fk_finding_run_id_run", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "position", name="pk_finding"),
    )
    op.create_index("ix_finding_code", "finding", ["code"])


def downgrade() -> None:
    """Drop them, each before the tables it refers to."""
    op.drop_index("ix_finding_code", table_name="finding")
    op.drop_table("finding")
    op.drop_table("layer_summary")
    op.drop_index("ix_run_created", table_name="run")
    op.drop_index("ix_run_model_created", table_name="run")
    op.drop_table("run")
    op.drop_table("model")
