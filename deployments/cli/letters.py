"""`arrears letters list`, `pdf` and `rewrite`: the letters mailed, the PDF as mailed, and a way out
for a letter blocked for good once its cause is fixed."""

import hashlib
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from arrears.files import atomic_write
from deployments.cli._common import (
    AsOf,
    CliError,
    DatabaseOption,
    Json,
    Limit,
    Why,
    as_of_instant,
    audit_reason,
    command_group,
    console,
    counted,
    emit_json,
    existing_database,
    shown,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from arrears.storage.overdue_letters import OverdueLetter
    from tasks.lifecycle_letters import Rewrites

letters_app = command_group(
    "letters", "Letters mailed through the letters provider (right-to-cure notices…)."
)


@letters_app.command("list")
def list_(
    account: Annotated[str | None, typer.Option("--account", help="Only this account's letters.")] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status", help="Only letters with this status (pending, created, mailed, blocked, …)."
        ),
    ] = None,
    overdue: Annotated[
        bool,
        typer.Option(
            "--overdue",
            help="Only the letters the law says to mail by a date (an explanation asked for with "
            "`arrears sale explain`, a GB notice of sums in arrears, a US-CA validation notice) past "
            "it and not mailed "
            "(pending, blocked, refused, not yet mailed by the provider; one mailed and returned "
            "was sent), oldest deadline first; not a right-to-cure notice, whose deadline ends "
            "its cure period.",
        ),
    ] = False,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="With --overdue: past the deadline at this ISO 8601 instant (default now)."
        ),
    ] = None,
    database: DatabaseOption = None,
    json: Json = False,
    limit: Limit = None,
) -> None:
    """Letters with their kind, status, mailed date and deadline: a right-to-cure notice's, counted
    from its mailing; an explanation asked for (`arrears sale explain`) or a GB notice of sums in
    arrears, the day it is due.
    --overdue: those not mailed by that day, which the cycle's report alerts on
    (`arrears.letters.overdue`)."""
    # Imported in the command: `arrears --help` loads none of storage.
    from arrears.storage.letters import STATUSES, list_letters

    if status is not None and status not in STATUSES:
        raise CliError(f"--status {status!r}: one of {', '.join(STATUSES)}")
    if as_of is not None and not overdue:
        raise CliError("--as-of: only with --overdue (the other letters are listed as they are now)")
    now = as_of_instant(as_of)
    from arrears.storage.accounts import account_row
    from arrears.storage.overdue_letters import overdue_letters

    engine = existing_database(database)
    from arrears.storage import read_only  # no write lock: never waits for a writer

    with read_only(engine) as connection:
        if account is not None and account_row(connection, account) is None:  # a typo is not "no letters"
            raise CliError(f"no account {account!r}")
        late = overdue_letters(connection, now=now) if overdue else None
        letters = [] if overdue else list_letters(connection, account_id=account, status=status)
    if late is not None:
        _list_overdue(late, account, status, limit, json)
        return
    found = [row.as_json() for row in shown(letters, limit, json=json)]
    if json:
        emit_json(found)
        return
    table = Table(title=f"letters ({counted(len(letters), len(found), 'oldest')})")
    for column in ("id", "account", "kind", "status", "mailed at", "deadline", "reason"):
        table.add_column(column)
    for f in found:
        table.add_row(
            str(f["id"]),
            f["account_id"],
            f["kind"],
            f["status"],
            (f["mailed_at"] or "")[:16],
            (f["deadline"] or "")[:16],
            f["reason"] or "",
        )
    console.print(table)


def _list_overdue(
    late: "Sequence[OverdueLetter]", account: str | None, status: str | None, limit: int | None, json: bool
) -> None:
    """`letters list --overdue`: few letters at most, so `--account` and `--status` filter them here."""
    late = [
        x
        for x in late
        if (account is None or x.account_id == account) and (status is None or x.status == status)
    ]
    found = [x.as_json() for x in shown(late, limit, json=json)]
    if json:
        emit_json(found)
        return
    table = Table(title=f"letters not mailed by their deadline ({counted(len(late), len(found), 'oldest')})")
    for column in ("id", "account", "kind", "status", "deadline", "reason"):
        table.add_column(column)
    for f in found:
        table.add_row(
            str(f["id"]), f["account_id"], f["kind"], f["status"], f["deadline"][:16], f["reason"] or ""
        )
    console.print(table)


@letters_app.command("pdf")
def pdf(
    letter_id: Annotated[int, typer.Argument(help="The letter's id (see `arrears letters list`).")],
    output: Annotated[Path, typer.Option("--output", help="Where to write the PDF.")],
    database: DatabaseOption = None,
) -> None:
    """Write the PDF as mailed (checked against the SHA-256 recorded when it was written)."""
    from arrears.files import check_target
    from arrears.storage.letters import letter_pdf

    try:
        check_target(output)
    except OSError as error:  # a device, a FIFO, a directory: refused, never replaced by the PDF
        raise CliError(f"--output {output}: {error.strerror or error}") from None
    engine = existing_database(database)
    from arrears.storage import read_only  # no write lock: never waits for a writer

    with read_only(engine) as connection:
        found = letter_pdf(connection, letter_id)
    if found is None:
        raise CliError(f"no letter {letter_id} with a PDF (a letter is rendered when it is sent)")
    content, recorded = found
    if recorded and hashlib.sha256(content).hexdigest() != recorded:
        raise CliError(f"letter {letter_id}: the stored PDF does not match its recorded SHA-256", exit_code=1)
    try:
        with atomic_write(output, "wb") as file:  # 0600: it carries the borrower's name and address
            file.write(content)
    except OSError as error:
        raise CliError(f"{output}: {error.strerror or error}", exit_code=1) from None
    console.print(
        f"letter {letter_id}: {len(content):,} bytes, sha256 {recorded}, written to {output}", markup=False
    )


@letters_app.command("rewrite")
def rewrite(
    reason: Why,
    letter_id: Annotated[
        int | None, typer.Argument(help="The letter's id (see `arrears letters list`).", metavar="LETTER_ID")
    ] = None,
    blocked_for: Annotated[
        str | None,
        typer.Option(
            "--blocked-for",
            help="Instead of one letter: every letter blocked with a reason starting with this text "
            "(as `arrears letters list --status blocked` shows it), e.g. 'not rendered'.",
        ),
    ] = None,
    as_of: AsOf = None,
    database: DatabaseOption = None,
    json: Json = False,
) -> None:
    """Write again a letter blocked for good (it could not be rendered, or its words were refused),
    once the cause is fixed: from today's facts, in its place and under its key; it goes with the
    next cycle or `arrears dispatch`. A letter blocked for want of an address waits for an import,
    and one that nothing owes any more (its review closed) is left as it was: both exit 2.

    With --blocked-for, every letter blocked for that cause, each in a transaction of its own:
    written again, or left as it was with the reason; exit 1 when one failed with an error (the
    others are done), 2 when none is written again."""
    from tasks.lifecycle_letters import NotRewritten, rewrite_blocked, rewrite_letter

    if (letter_id is None) == (blocked_for is None):
        raise CliError("name one letter (LETTER_ID) or a cause (--blocked-for TEXT), not both or neither")
    why, instant = audit_reason(reason), as_of_instant(as_of)
    engine = existing_database(database)
    if blocked_for is not None:
        if not blocked_for.strip():
            raise CliError("--blocked-for: give the start of the reason the letters are blocked for")
        _rewrite_blocked(rewrite_blocked(blocked_for, why=why, at=instant, engine_=engine), blocked_for, json)
        return
    assert letter_id is not None
    try:
        row = rewrite_letter(letter_id, why=why, at=instant, engine_=engine)
    except NotRewritten as error:
        raise CliError(str(error)) from None
    if json:
        emit_json(row.as_json())
        return
    console.print(f"letter {letter_id} ({row.kind}, account {row.account_id}): {row.status}", markup=False)


def _rewrite_blocked(done: "Rewrites", blocked_for: str, json: bool) -> None:
    """Exit 1 when a rewrite failed (the others were done), 2 when no letter was written again."""
    set_aside = [("left as it was", row, why) for row, why in done.left]
    set_aside += [("failed", row, error) for row, error in done.failed]
    if json:
        emit_json(
            {
                "rewritten": [row.as_json() for row in done.rewritten],
                "left": [row.as_json() | {"why_not": why_not} for row, why_not in done.left],
                "failed": [row.as_json() | {"error": error} for row, error in done.failed],
            }
        )
    else:
        kinds = Counter(row.kind for row in done.rewritten)
        console.print(
            f"{len(done.rewritten):,} letters written again"
            + (f" ({', '.join(f'{kind} {n:,}' for kind, n in sorted(kinds.items()))})" if kinds else "")
            + f", {len(done.left):,} left as they were, {len(done.failed):,} failed",
            markup=False,
        )
        if set_aside:
            table = Table(title="not written again")
            for column in ("id", "account", "kind", "", "why"):
                table.add_column(column)
            for what, row, why in set_aside:
                table.add_row(str(row.id), row.account_id, row.kind, what, why)
            console.print(table)
    if done.failed:
        raise CliError(f"{len(done.failed):,} letters failed to be written again", exit_code=1)
    if not done.rewritten:
        raise CliError(
            f"no letter written again: none blocked for {blocked_for!r}"
            if not done.left
            else "no letter written again"
        )
