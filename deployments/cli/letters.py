"""`arrears letters list`, `pdf` and `rewrite`: the letters mailed, the PDF as mailed, and a way out
for a letter blocked for good once its cause is fixed."""

import hashlib
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from arrears.files import atomic_write
from deployments.cli._common import (
    AsOf,
    CliError,
    DatabaseOption,
    Json,
    Why,
    as_of_instant,
    audit_reason,
    command_group,
    console,
    emit_json,
    existing_database,
)

letters_app = command_group(
    "letters", "Letters mailed through the letters provider (right-to-cure notices…)."
)


@letters_app.command("list")
def list_(
    account: Annotated[str | None, typer.Option("--account", help="Only this account's letters.")] = None,
    database: DatabaseOption = None,
    json: Json = False,
) -> None:
    """Letters with their kind, status, mailed date and the deadline counted from it."""
    # Imported in the command: `arrears --help` loads none of storage.
    from arrears.storage.letters import list_letters

    engine = existing_database(database)
    with engine.connect() as connection:
        found = [row.as_json() for row in list_letters(connection, account_id=account)]
    if json:
        emit_json(found)
        return
    table = Table(title="letters")
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


@letters_app.command("pdf")
def pdf(
    letter_id: Annotated[int, typer.Argument(help="The letter's id (see `arrears letters list`).")],
    output: Annotated[Path, typer.Option("--output", help="Where to write the PDF.")],
    database: DatabaseOption = None,
) -> None:
    """Write the PDF as mailed (checked against the SHA-256 recorded when it was written)."""
    from arrears.storage.letters import letter_pdf

    engine = existing_database(database)
    with engine.connect() as connection:
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
    letter_id: Annotated[int, typer.Argument(help="The letter's id (see `arrears letters list`).")],
    reason: Why,
    as_of: AsOf = None,
    database: DatabaseOption = None,
    json: Json = False,
) -> None:
    """Write again a letter blocked for good (it could not be rendered, or its words were refused),
    once the cause is fixed: from today's facts, in its place and under its key; it goes with the
    next cycle or `arrears dispatch`. A letter blocked for want of an address waits for an import,
    and one that nothing owes any more (its review closed) is left as it was: both exit 2."""
    from tasks.lifecycle_letters import NotRewritten, rewrite_letter

    why, instant = audit_reason(reason), as_of_instant(as_of)
    engine = existing_database(database)
    try:
        row = rewrite_letter(letter_id, why=why, at=instant, engine_=engine)
    except NotRewritten as error:
        raise CliError(str(error)) from None
    if json:
        emit_json(row.as_json())
        return
    console.print(f"letter {letter_id} ({row.kind}, account {row.account_id}): {row.status}", markup=False)
