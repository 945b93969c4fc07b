"""Event monitoring: which event artifacts run where (versioned), and how each runs on each client.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "event_assignments",
        sa.Column("artifact", sa.String(256), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("permissions", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("removed", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("modified", sa.Double(), nullable=False),
        sa.Column("modified_by", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("artifact", name="pk_event_assignments"),
    )
    op.create_index("ix_event_assignments_version", "event_assignments", ["version"])
    op.create_table(
        "event_status",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("artifact", sa.String(256), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("restarts", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("reported", sa.Double(), nullable=False),
        sa.Column("updated", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.client_id"],
            name="fk_event_status_client_id_clients",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("client_id", "artifact", name="pk_event_status"),
    )


def downgrade() -> None:
    op.drop_table("event_status")
    op.drop_index("ix_event_assignments_version", table_name="event_assignments")
    op.drop_table("event_assignments")
