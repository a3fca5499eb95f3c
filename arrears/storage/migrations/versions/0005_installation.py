"""installation id

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 07:30:00

One row per database holding the id that namespaces every key leaving it (Prefect idempotency
keys, provider references): two databases on one Prefect server never share a run (DESIGN §3).
The row is created here, at migrate time; `arrears.storage.installation` creates it on first use
for a database built some other way.
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

import arrears.storage.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "installation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("installation_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("created_at", arrears.storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    assert table is not None
    op.bulk_insert(
        table, [{"id": 1, "installation_id": uuid.uuid4().hex[:12], "created_at": datetime.now(UTC)}]
    )


def downgrade() -> None:
    op.drop_table("installation")
