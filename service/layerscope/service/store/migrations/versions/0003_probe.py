"""probe: the training probe of a diagnosis with targets, one row per run (steps as JSON text).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the probe table; a run's probe is deleted with its run."""
    op.create_table(
        "probe",
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("optimizer", sa.String(128), nullable=False),
        sa.Column("loss", sa.String(512), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run.run_id"], name="fk_probe_run_id_run", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", name="pk_probe"),
    )


def downgrade() -> None:
    op.drop_table("probe")
