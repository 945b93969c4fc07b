"""Users, API tokens, browser sessions and the audit log.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_RESULTS = "'ok', 'refused', 'error'"


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("password_hash", sa.Text()),
        sa.Column("roles", sa.Text(), nullable=False),
        sa.Column("permissions", sa.Text(), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("disabled", sa.Double()),
        sa.Column("last_login", sa.Double()),
        sa.PrimaryKeyConstraint("name", name="pk_users"),
    )

    op.create_table(
        "tokens",
        sa.Column("token_id", sa.String(32), nullable=False),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("expires", sa.Double(), nullable=False),
        sa.Column("last_used", sa.Double()),
        sa.Column("revoked", sa.Double()),
        sa.PrimaryKeyConstraint("token_id", name="pk_tokens"),
        sa.ForeignKeyConstraint(
            ["username"], ["users.name"], name="fk_tokens_username_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_tokens_username", "tokens", ["username", "created"])

    op.create_table(
        "sessions",
        sa.Column("session_hash", sa.String(64), nullable=False),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("expires", sa.Double(), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("address", sa.Text()),
        sa.PrimaryKeyConstraint("session_hash", name="pk_sessions"),
        sa.ForeignKeyConstraint(
            ["username"], ["users.name"], name="fk_sessions_username_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_sessions_username", "sessions", ["username"])
    op.create_index("ix_sessions_expires", "sessions", ["expires"])

    op.create_table(
        "audit",
        sa.Column("audit_id", _ID, nullable=False, autoincrement=True),
        sa.Column("time", sa.Double(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("credential", sa.Text()),
        sa.Column("address", sa.Text()),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.Text()),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.PrimaryKeyConstraint("audit_id", name="pk_audit"),
        sa.CheckConstraint(f"result IN ({_RESULTS})", name="ck_audit_result"),
    )
    op.create_index("ix_audit_time", "audit", ["time", "audit_id"])
    op.create_index("ix_audit_actor", "audit", ["actor", "audit_id"])
    op.create_index("ix_audit_action", "audit", ["action", "audit_id"])
    op.create_index("ix_audit_target", "audit", ["target", "audit_id"])


def downgrade() -> None:
    op.drop_table("audit")
    op.drop_table("sessions")
    op.drop_table("tokens")
    op.drop_table("users")
