"""loop: the ticket's city platform category code

Each ticket carries the event category code of its incident type (``tickets.category_codes``, GB/T
30428 style) for the city platform; tickets made before this migration carry none.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 16:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("category_code", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_column("category_code")
