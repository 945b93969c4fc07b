"""Flows: when a collection still waiting for its client expires.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Nullable, no default: flows stored before this revision get the server's default expiry
    # (counted from their creation) when the flow monitor looks at them.
    op.add_column("flows", sa.Column("expires", sa.Double()))


def downgrade() -> None:
    with op.batch_alter_table("flows") as batch:
        batch.drop_column("expires")
