"""layer_summary.histogram_sample: how many values a sampled histogram binned (NULL: all of them).

Rows written before it binned every value, so NULL is the truth for them.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("layer_summary", sa.Column("histogram_sample", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("layer_summary") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("histogram_sample")
