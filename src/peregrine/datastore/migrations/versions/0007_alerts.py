"""Alerts: rules (current and every version), the alerts they raise, windowed rules' counts.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

_AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("rule_id", sa.String(128), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Integer(), nullable=False),
        sa.Column("builtin", sa.Integer(), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("modified", sa.Double(), nullable=False),
        sa.Column("modified_by", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("rule_id", name="pk_alert_rules"),
    )
    op.create_table(
        "alert_rule_versions",
        sa.Column("rule_id", sa.String(128), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Integer(), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("modified", sa.Double(), nullable=False),
        sa.Column("modified_by", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("rule_id", "version", name="pk_alert_rule_versions"),
    )
    op.create_table(
        "alerts",
        sa.Column("alert_id", _AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("alert_key", sa.String(512), nullable=False),
        sa.Column("rule_id", sa.String(128), nullable=False),
        sa.Column("rule_version", sa.BigInteger(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("time", sa.Double(), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=True),
        sa.Column("hostname", sa.Text(), nullable=True),
        sa.Column("artifact", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("event_seq", sa.BigInteger(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("rows", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("acked_by", sa.Text(), nullable=True),
        sa.Column("acked_at", sa.Double(), nullable=True),
        sa.Column("ack_comment", sa.Text(), nullable=True),
        sa.CheckConstraint("state IN ('open', 'acknowledged')", name="ck_alerts_state"),
        sa.PrimaryKeyConstraint("alert_id", name="pk_alerts"),
        sa.UniqueConstraint("alert_key", name="uq_alerts_alert_key"),
    )
    op.create_index("ix_alerts_time", "alerts", ["time", "alert_id"])
    op.create_index("ix_alerts_state", "alerts", ["state", "alert_id"])
    op.create_index("ix_alerts_rule_id", "alerts", ["rule_id", "alert_id"])
    op.create_index("ix_alerts_client_id", "alerts", ["client_id", "alert_id"])
    op.create_table(
        "alert_window_hits",
        sa.Column("rule_id", sa.String(128), nullable=False),
        sa.Column("window_start", sa.Double(), nullable=False),
        sa.Column("group_key", sa.String(256), nullable=False),
        sa.Column("member", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint(
            "rule_id", "window_start", "group_key", "member", name="pk_alert_window_hits"
        ),
    )


def downgrade() -> None:
    op.drop_table("alert_window_hits")
    op.drop_index("ix_alerts_client_id", table_name="alerts")
    op.drop_index("ix_alerts_rule_id", table_name="alerts")
    op.drop_index("ix_alerts_state", table_name="alerts")
    op.drop_index("ix_alerts_time", table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("alert_rule_versions")
    op.drop_table("alert_rules")
