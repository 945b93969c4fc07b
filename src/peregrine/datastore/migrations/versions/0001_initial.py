"""Initial schema: clients, flows (collections) and tasks (requests waiting for a client).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_STATES = "'Scheduled', 'In progress', 'Finished', 'Error', 'Cancelled', 'Unresponsive'"


def upgrade() -> None:
    op.create_table(
        "clients",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("first_seen", sa.Double(), nullable=False),
        sa.Column("last_seen", sa.Double(), nullable=False),
        sa.Column("last_address", sa.Text()),
        sa.Column("hostname", sa.Text()),
        sa.Column("fqdn", sa.Text()),
        sa.Column("os", sa.Text()),
        sa.Column("release", sa.Text()),
        sa.Column("kernel", sa.Text()),
        sa.Column("arch", sa.Text()),
        sa.Column("ip_addresses", sa.Text(), nullable=False),
        sa.Column("mac_addresses", sa.Text(), nullable=False),
        sa.Column("users", sa.Text(), nullable=False),
        sa.Column("agent_version", sa.Text()),
        sa.Column("boot_time", sa.Double()),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("interrogated", sa.Double()),
        sa.PrimaryKeyConstraint("client_id", name="pk_clients"),
    )
    op.create_index("ix_clients_first_seen", "clients", ["first_seen", "client_id"])

    op.create_table(
        "flows",
        sa.Column("flow_id", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("artifacts", sa.Text(), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("creator", sa.Text(), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("started", sa.Double()),
        sa.Column("finished", sa.Double()),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("row_count", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("byte_count", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("upload_count", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("upload_bytes", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("log_count", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("last_seq", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("last_activity", sa.Double()),
        sa.Column("sources", sa.Text(), nullable=False),
        sa.Column("timeout", sa.Double()),
        sa.Column("progress_timeout", sa.Double()),
        sa.PrimaryKeyConstraint("flow_id", name="pk_flows"),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.client_id"],
            name="fk_flows_client_id_clients",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(f"state IN ({_STATES})", name="ck_flows_state"),
    )
    op.create_index("ix_flows_client_created", "flows", ["client_id", "created"])
    op.create_index("ix_flows_state", "flows", ["state"])

    op.create_table(
        "tasks",
        sa.Column("task_id", _ID, nullable=False, autoincrement=True),
        sa.Column("flow_id", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("task_id", name="pk_tasks"),
        sa.UniqueConstraint("flow_id", name="uq_tasks_flow_id"),
        sa.ForeignKeyConstraint(
            ["flow_id"], ["flows.flow_id"], name="fk_tasks_flow_id_flows", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.client_id"],
            name="fk_tasks_client_id_clients",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_tasks_client", "tasks", ["client_id", "task_id"])


def downgrade() -> None:
    op.drop_table("tasks")
    op.drop_table("flows")
    op.drop_table("clients")
