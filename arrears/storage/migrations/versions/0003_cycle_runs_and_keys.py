"""one cycle at a time, keyed bureau pulls

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 07:30:00

`cycle_run` gets a status (running, finished, failed, crashed), the owner that runs it, and a
`running` column unique across the table, so that a second running cycle cannot be recorded;
a row left unfinished by an earlier version is closed as crashed. Outbox leases name their
owner, so that the next run can take over the leases of a run that died. Bureau pulls get their
idempotency key as a unique column (from the payload of the rows already there; a pull recorded
twice keeps the key on its first row only).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cycle_run", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "status",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="finished",
            )
        )
        batch_op.add_column(sa.Column("running", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
        batch_op.add_column(sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True))
        batch_op.create_index("uq_cycle_run_running", ["running"], unique=True)
        batch_op.create_index("ix_cycle_run_as_of", ["as_of"], unique=False)
    cycle_run = sa.table("cycle_run", sa.column("status"), sa.column("finished_at"))
    op.execute(cycle_run.update().where(cycle_run.c.finished_at.is_(None)).values(status="crashed"))

    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("lease_owner", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )

    with op.batch_alter_table("bureau_record", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=160), nullable=True)
        )
    _backfill_pull_keys()
    with op.batch_alter_table("bureau_record", schema=None) as batch_op:
        batch_op.create_index("uq_bureau_record_idempotency_key", ["idempotency_key"], unique=True)


def _backfill_pull_keys() -> None:
    """Each pull's key from its payload, on the first row that carries it."""
    bureau = sa.table(
        "bureau_record",
        sa.column("id"),
        sa.column("kind"),
        sa.column("payload", sa.JSON),
        sa.column("idempotency_key"),
    )
    connection = op.get_bind()
    seen: set[str] = set()
    keyed = []
    for row_id, payload in connection.execute(
        sa.select(bureau.c.id, bureau.c.payload).where(bureau.c.kind == "pull").order_by(bureau.c.id)
    ):
        key = (payload or {}).get("idempotency_key")
        if isinstance(key, str) and key not in seen:
            seen.add(key)
            keyed.append({"row": row_id, "key": key})
    if keyed:
        connection.execute(
            bureau.update()
            .where(bureau.c.id == sa.bindparam("row"))
            .values(idempotency_key=sa.bindparam("key")),
            keyed,
        )


def downgrade() -> None:
    with op.batch_alter_table("bureau_record", schema=None) as batch_op:
        batch_op.drop_index("uq_bureau_record_idempotency_key")
        batch_op.drop_column("idempotency_key")
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("lease_owner")
    with op.batch_alter_table("cycle_run", schema=None) as batch_op:
        batch_op.drop_index("ix_cycle_run_as_of")
        batch_op.drop_index("uq_cycle_run_running")
        batch_op.drop_column("owner")
        batch_op.drop_column("running")
        batch_op.drop_column("status")
