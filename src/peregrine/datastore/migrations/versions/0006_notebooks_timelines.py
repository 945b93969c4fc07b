"""Notebooks (cells with their last results) and timelines (definitions).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "notebooks",
        sa.Column("notebook_id", sa.String(64), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("shared", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("hunt_id", sa.String(64)),
        sa.Column("client_id", sa.String(64)),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("modified", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("notebook_id", name="pk_notebooks"),
    )
    op.create_index("ix_notebooks_owner", "notebooks", ["owner", "modified"])
    op.create_index("ix_notebooks_modified", "notebooks", ["modified", "notebook_id"])

    op.create_table(
        "notebook_cells",
        sa.Column("notebook_id", sa.String(64), nullable=False),
        sa.Column("cell_id", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("chart", sa.Text()),
        sa.Column("result", sa.Text()),
        sa.Column("ran", sa.Double()),
        sa.Column("duration", sa.Double()),
        sa.Column("ran_by", sa.Text()),
        sa.PrimaryKeyConstraint("notebook_id", "cell_id", name="pk_notebook_cells"),
        sa.ForeignKeyConstraint(
            ["notebook_id"],
            ["notebooks.notebook_id"],
            name="fk_notebook_cells_notebook_id_notebooks",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("kind IN ('markdown', 'sql')", name="ck_notebook_cells_kind"),
    )
    op.create_index("ix_notebook_cells_position", "notebook_cells", ["notebook_id", "position"])

    op.create_table(
        "timelines",
        sa.Column("timeline_id", sa.String(64), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("shared", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("sources", sa.Text(), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("modified", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("timeline_id", name="pk_timelines"),
    )
    op.create_index("ix_timelines_owner", "timelines", ["owner", "modified"])
    op.create_index("ix_timelines_modified", "timelines", ["modified", "timeline_id"])


def downgrade() -> None:
    op.drop_table("timelines")
    op.drop_table("notebook_cells")
    op.drop_table("notebooks")
