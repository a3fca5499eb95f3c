"""A borrower's hold a servicing file flags on one loan holds every open loan of the borrower.

A bankruptcy's automatic stay bars acts to collect every claim against the debtor (11 U.S.C.
362(a)), a death is the person's and active duty the servicemember's (`Hold.of_borrower`). An
import's flags hold the account of their row alone (`importer._sync_holds`, row by row, as the file
states them), so a file flagging bankruptcy on loan A-1 left the borrower's A-2 texted and its
repossession order live: "repossession after a bankruptcy filing", what regulators find most
often. An agent's `hold place`, a borrower's text and the bureau hold every open loan already.

Once the whole file is stored (every row's flags known, whichever chunk carried them), the import
holds the borrower's other open accounts with a hold of its own source, `SOURCE`: a row without
the flag (A-2 never had it) lifts only the file's own holds, never these, and the file's own flag
on such an account still places its hold beside this one, so that it outlives the borrower's
(`_sync_holds` sets these aside). These are lifted when no account of the borrower carries the
file's flag any more. A person's lift stands: an account whose hold of the kind was lifted since
the borrower's flag began (a loan reaffirmed in a discharge: `hold lift A-2 bankruptcy`) is not held
again while the file goes on flagging A-1.

A constant number of statements per import, none per account, whatever the number flagged: the
holds of this source whose borrower is flagged no more, read and lifted; whether any borrower is
flagged; each open account of a flagged borrower without a hold of the kind, read with its flags;
then one insert of holds and one of audit events for each. At a million accounts, three in a
hundred flagged, on SQLite: ~0.2 s an import when nothing changes.
"""

from collections import defaultdict
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Connection, Exists, and_, func, select, update

from arrears.storage._common import event, insert_events
from arrears.storage.bulk import among
from arrears.storage.cycle import TERMINAL
from arrears.storage.streaming import insert_rows
from arrears.storage.tables import account, hold
from arrears.vocabulary import Hold

__all__ = ["SOURCE", "Counts", "spread"]

SOURCE = "import_borrower"  # AccountHold.source: held because the file flags the borrower on another loan
_FLAG = "import"  # AccountHold.source of the holds a file's own flags place (`importer._sync_holds`)
_ACTOR = "import"
_KINDS = tuple(h.value for h in Hold if h.of_borrower)


class Counts(Protocol):
    """An import's counts (`importer.AccountCounts`), which this module cannot import: it imports this."""

    borrower_holds_placed: int
    borrower_holds_lifted: int


def spread(connection: Connection, counts: Counts, *, file: str, now: datetime) -> None:
    """Hold each borrower the file flags with a borrower's hold on every other open account of theirs,
    and lift the holds so placed whose borrower no account carries the flag of any more, counting
    both in `counts`. `file` (the file's name) is recorded with each audit event."""
    counts.borrower_holds_lifted += _lift_unflagged(connection, file, now)
    counts.borrower_holds_placed += _hold_other_loans(connection, file, now)


def _flagged(borrower_id: ColumnElement[str], kind: ColumnElement[str]) -> Exists:
    """Whether a file's flag of `kind` is in force on an account of the borrower."""
    flag, flagged = hold.alias("flag"), account.alias("flagged")
    return (
        select(1)
        .select_from(flag.join(flagged, flagged.c.account_id == flag.c.account_id))
        .where(
            flagged.c.borrower_id == borrower_id,
            flag.c.kind == kind,
            flag.c.source == _FLAG,
            flag.c.lifted_at.is_(None),
        )
        .exists()
    )


def _lift_unflagged(connection: Connection, file: str, now: datetime) -> int:
    stale = connection.execute(
        select(hold.c.id, hold.c.account_id, hold.c.kind)
        .join(account, account.c.account_id == hold.c.account_id)
        .where(
            hold.c.source == SOURCE, hold.c.lifted_at.is_(None), ~_flagged(account.c.borrower_id, hold.c.kind)
        )
        .order_by(hold.c.account_id, hold.c.kind)
    ).all()
    if not stale:
        return 0
    connection.execute(update(hold).where(among(hold.c.id, [h.id for h in stale])).values(lifted_at=now))
    why = "no account of the borrower is flagged {} any more"
    insert_events(
        connection, [_event(h.account_id, h.kind, "lifted", why.format(h.kind), file, now) for h in stale]
    )
    return len(stale)


def _hold_other_loans(connection: Connection, file: str, now: datetime) -> int:
    """Read in one statement: each pair of a file's borrower flag in force and an open account of the
    same borrower without a hold of its kind in force, with when one was last lifted there. Each
    account is paired with every flag of the borrower's, so the earliest is the borrower's hold's start.

    The flags are gathered first (materialized), then joined to the accounts by borrower: through the
    index of accounts by borrower, or, in a first load, which builds that index once its rows are in
    (`first_load`), by one pass over the accounts probing the flags (~0.4 s at a million accounts),
    not an index of a million accounts built for this one statement (~0.9 s)."""
    in_force = and_(hold.c.source == _FLAG, hold.c.lifted_at.is_(None), hold.c.kind.in_(_KINDS))
    if connection.execute(select(hold.c.id).where(in_force).limit(1)).first() is None:
        return 0  # no borrower flagged: not one pass over the accounts (a first load's) for nothing
    flagged, other, there = account.alias("flagged"), account.alias("other"), hold.alias("there")
    flags = (
        select(flagged.c.borrower_id, hold.c.kind, hold.c.account_id, hold.c.placed_at, hold.c.reason)
        .join(flagged, flagged.c.account_id == hold.c.account_id)
        .where(in_force)
        .cte("flags")
        .prefix_with("MATERIALIZED")
    )
    of_kind = and_(there.c.account_id == other.c.account_id, there.c.kind == flags.c.kind)
    pairs: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for p in connection.execute(
        select(
            other.c.account_id,
            flags.c.kind,
            flags.c.account_id.label("flagged_on"),
            flags.c.placed_at,
            flags.c.reason,
            select(func.max(there.c.lifted_at)).where(of_kind).scalar_subquery().label("last_lifted"),
        )
        .select_from(
            flags.join(
                other,
                and_(other.c.borrower_id == flags.c.borrower_id, other.c.account_id != flags.c.account_id),
            )
        )
        .where(
            other.c.stage.not_in(TERMINAL), ~select(1).where(of_kind, there.c.lifted_at.is_(None)).exists()
        )
    ):
        pairs[(p.account_id, p.kind)].append(p)
    placed: list[tuple[str, str, str]] = []
    events: list[dict[str, Any]] = []
    for (account_id, kind), found in sorted(pairs.items()):
        first = min(found, key=lambda p: (p.placed_at, p.flagged_on))
        if first.last_lifted is not None and first.last_lifted >= first.placed_at:
            continue  # a person lifted it, or the file its own flag there, since the borrower's began
        why = f"{kind} flagged on {first.flagged_on}" + (f" ({first.reason})" if first.reason else "")
        placed.append((account_id, kind, why))
        events.append(_event(account_id, kind, "placed", why, file, now, recorded_on=first.flagged_on))
    insert_rows(
        connection, hold, ("account_id", "kind", "reason"), placed, {"source": SOURCE, "placed_at": now}
    )
    insert_events(connection, events)
    return len(placed)


def _event(
    account_id: str,
    kind: str,
    action: str,
    why: str,
    file: str,
    at: datetime,
    *,
    recorded_on: str | None = None,
) -> dict[str, Any]:
    """As an agent's borrower hold (`holds._event`): `recorded_on` names the account the hold is the
    borrower's by; `file`, as for a flag (`importer._hold_event`), the import that placed or lifted it."""
    data = {"hold": kind, "action": action, "source": SOURCE, "reason": why, "file": file}
    return event(
        account_id,
        at,
        "hold",
        f"{kind} hold {action} by import for the borrower: {why}",
        data | ({"recorded_on": recorded_on} if recorded_on else {}),
        actor=_ACTOR,
    )
