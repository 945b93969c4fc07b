"""Hunts: the hunts table, the (hunt, client) index, and the hunt each flow belongs to.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_HUNT_STATES = "'Paused', 'Running', 'Stopped', 'Archived'"


def upgrade() -> None:
    op.create_table(
        "hunts",
        sa.Column("hunt_id", sa.String(64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("artifacts", sa.Text(), nullable=False),
        sa.Column("limits", sa.Text(), nullable=False),
        sa.Column("include_labels", sa.Text(), nullable=False),
        sa.Column("exclude_labels", sa.Text(), nullable=False),
        sa.Column("os", sa.Text(), nullable=False),
        sa.Column("client_limit", sa.BigInteger()),
        sa.Column("expires", sa.Double(), nullable=False),
        sa.Column("creator", sa.Text(), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("started", sa.Double()),
        sa.Column("stopped", sa.Double()),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("notifications_per_second", sa.Double()),
        sa.Column("permissions", sa.Text(), nullable=False),
        sa.Column("schedule", sa.Text()),
        sa.Column("parent_id", sa.String(64)),
        sa.Column("last_run", sa.Double()),
        sa.PrimaryKeyConstraint("hunt_id", name="pk_hunts"),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["hunts.hunt_id"], name="fk_hunts_parent_id_hunts", ondelete="SET NULL"
        ),
        sa.CheckConstraint(f"state IN ({_HUNT_STATES})", name="ck_hunts_state"),
    )
    op.create_index("ix_hunts_created", "hunts", ["created", "hunt_id"])
    op.create_index("ix_hunts_state", "hunts", ["state"])
    op.create_index("ix_hunts_parent_id", "hunts", ["parent_id"])

    op.create_table(
        "hunt_clients",
        sa.Column("hunt_id", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("flow_id", sa.String(64), nullable=False),
        sa.Column("scheduled", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("hunt_id", "client_id", name="pk_hunt_clients"),
        sa.UniqueConstraint("flow_id", name="uq_hunt_clients_flow_id"),
        sa.ForeignKeyConstraint(
            ["hunt_id"], ["hunts.hunt_id"], name="fk_hunt_clients_hunt_id_hunts", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.client_id"],
            name="fk_hunt_clients_client_id_clients",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["flow_id"], ["flows.flow_id"], name="fk_hunt_clients_flow_id_flows", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_hunt_clients_client_id", "hunt_clients", ["client_id"])
    op.create_index(
        "ix_hunt_clients_hunt_scheduled", "hunt_clients", ["hunt_id", "scheduled", "client_id"]
    )

    # A plain ADD COLUMN on both backends: existing flows belong to no hunt.
    op.add_column("flows", sa.Column("hunt_id", sa.String(64)))
    op.create_index("ix_flows_hunt_id", "flows", ["hunt_id"])


def downgrade() -> None:
    op.drop_index("ix_flows_hunt_id", table_name="flows")
    with op.batch_alter_table("flows") as batch:
        batch.drop_column("hunt_id")
    op.drop_table("hunt_clients")
    op.drop_table("hunts")
