"""one hold of a kind in force on an account, kept so by the database

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07 18:00:00

Every placer read an account's holds in force and inserted the kinds it did not find. On
PostgreSQL (READ COMMITTED) two transactions placing the same hold at the same instant (an agent's
`hold place` and an import, two deliveries of one webhook) both read "not held" and both inserted:
the account listed the hold twice, and the trail said it was placed twice. The unique index
`uq_hold_active_kind` on (account_id, kind) of the holds in force now refuses the second, and
`place_holds` inserts ON CONFLICT DO NOTHING on it. A borrower's hold an import spreads to the
borrower's other loans (source `import_borrower`) stays out of it: the file's own flag on such a
loan places its hold beside that one, so that it outlives it (`storage.borrower_holds`).

A database already in use may hold such twins: each but the first placed (the lowest id among
those placed at the same instant) is lifted first, or the index could not be built. It is lifted at
this migration's instant, not backdated to its twin's placing: the row was in force until now,
and whatever read the holds meanwhile (a cycle holding the account, `hold list`) saw it so; a
lifting dated earlier would tell a history no reader saw. Its `reason` (why it was placed) stays.
Each lifting is audited like any other (kind `hold`, action `lifted`, by `arrears`), naming the twin
that stays in force, so that the trail's second "placed" is answered: the twins are few (races),
read and written once here. The compliance report reads the holds themselves beside the trail, so
the account still counts as held from its first placing.

Building the index reads the holds once; on PostgreSQL writes to them wait meanwhile. The
downgrade drops the index and leaves the twins lifted.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

import arrears.storage.types

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ONE_ACTIVE = "lifted_at IS NULL AND source <> 'import_borrower'"  # as `AccountHold` declares it

_hold = sa.table(
    "account_hold",
    sa.column("id", sa.Integer()),
    sa.column("account_id", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("source", sa.String()),
    sa.column("placed_at", arrears.storage.types.UTCDateTime(timezone=True)),
    sa.column("lifted_at", arrears.storage.types.UTCDateTime(timezone=True)),
)
_audit = sa.table(
    "audit_event",
    sa.column("account_id", sa.String()),
    sa.column("at", arrears.storage.types.UTCDateTime(timezone=True)),
    sa.column("kind", sa.String()),
    sa.column("detail", sa.String()),
    sa.column("data", sa.JSON()),
    sa.column("actor", sa.String()),
)


def upgrade() -> None:
    _lift_twins(datetime.now(UTC))
    op.create_index(
        "uq_hold_active_kind",
        "account_hold",
        ["account_id", "kind"],
        unique=True,
        sqlite_where=sa.text(_ONE_ACTIVE),
        postgresql_where=sa.text(_ONE_ACTIVE),
    )


def downgrade() -> None:
    op.drop_index("uq_hold_active_kind", table_name="account_hold")


def _lift_twins(now: datetime) -> None:
    """Lift every hold in force that a hold of its kind placed before it (or at the same instant,
    with a lower id) on its account is in force beside, each audited."""
    active = sa.text(_ONE_ACTIVE)
    twice = (
        sa.select(_hold.c.account_id, _hold.c.kind)
        .where(active)
        .group_by(_hold.c.account_id, _hold.c.kind)
        .having(sa.func.count() > 1)
        .subquery()
    )
    rows = (
        op.get_bind()
        .execute(
            sa.select(_hold.c.id, _hold.c.account_id, _hold.c.kind, _hold.c.source, _hold.c.placed_at)
            .join(twice, sa.and_(twice.c.account_id == _hold.c.account_id, twice.c.kind == _hold.c.kind))
            .where(active)
            .order_by(_hold.c.account_id, _hold.c.kind, _hold.c.placed_at, _hold.c.id)
        )
        .all()
    )
    kept: dict[tuple[str, str], Any] = {}  # the first placed of each pair: the one kept
    lifted: list[int] = []
    events: list[dict[str, object]] = []
    for row in rows:
        first = kept.setdefault((row.account_id, row.kind), row)
        if first is row:
            continue
        lifted.append(row.id)
        events.append(
            {
                "account_id": row.account_id,
                "at": now,
                "kind": "hold",
                "detail": (
                    f"{row.kind} hold lifted by arrears: placed twice (by {row.source} on "
                    f"{row.placed_at:%Y-%m-%d %H:%M} UTC); the {first.source} hold placed on "
                    f"{first.placed_at:%Y-%m-%d %H:%M} UTC stays in force"
                ),
                "data": {
                    "hold": row.kind,
                    "action": "lifted",
                    "source": row.source,
                    "reason": "placed twice",
                    "kept": first.id,
                },
                "actor": "arrears",
            }
        )
    if not lifted:
        return
    op.get_bind().execute(sa.update(_hold).where(_hold.c.id.in_(lifted)).values(lifted_at=now))
    op.get_bind().execute(sa.insert(_audit), events)
