"""`arrears quarantine list` and `arrears quarantine retry`: what a failure set aside (DESIGN §4, §8).

An account, an inbound message or an outbox message that failed in a cycle is quarantined with
its error, and the cycle went on without it. `list` shows them; `retry` runs each again through
the single-account path and resolves it once that work committed: one that fails, or whose retry
never finished (the database gone in its middle, the process killed), stays in quarantine, and
`list` says when that retry started. Errors are stored masked.
"""

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from deployments.cli._common import (
    AsOf,
    CliError,
    DatabaseOption,
    Json,
    Limit,
    as_of_instant,
    command_group,
    console,
    counted,
    emit_json,
    existing_database,
    shown,
)

__all__ = ["quarantine_app"]

quarantine_app = command_group(
    "quarantine", "Accounts and messages a failure set aside: list them, retry them."
)


@quarantine_app.command("list")
def list_entries(
    resolved: Annotated[bool, typer.Option("--resolved", help="Include the resolved entries.")] = False,
    database: DatabaseOption = None,
    json: Json = False,
    limit: Limit = None,
) -> None:
    """The quarantine, oldest first: what failed, where (account, reply, message), in which step, and the
    error."""
    from tasks.isolation import quarantine_entries

    existing_database(database)
    entries = quarantine_entries(include_resolved=resolved)
    found = shown(entries, limit, json=json)
    if json:
        emit_json(found)
        return
    if not found:
        console.print("nothing in quarantine")
        return
    table = Table(title=f"quarantine ({counted(len(entries), len(found), 'oldest')})")
    for column in ("id", "what", "ref", "account", "step", "error", "at", "retried", "resolved"):
        table.add_column(column)
    for e in found:
        table.add_row(
            *(
                Text(str(cell))
                for cell in (
                    e["id"],
                    e["what"],
                    e["ref"],
                    e["account_id"] or "(unattributed)",
                    e["step"],
                    f"{e['error_type']}: {e['error']}",
                    e["at"][:16],
                    _retried(e),
                    "yes" if e["resolved"] else "no",
                )
            )
        )
    console.print(table)


@quarantine_app.command("retry")
def retry(
    entry_id: Annotated[
        int | None, typer.Argument(help="The entry to retry (see `quarantine list`).")
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Retry every open entry.")] = False,
    database: DatabaseOption = None,
    as_of: AsOf = None,
    json: Json = False,
) -> None:
    """Run quarantined items again (an account, a message or a reply: through its account's lifecycle);
    each is resolved once it passed. One that fails, or whose retry cannot finish (the database gone),
    stays in quarantine. Exits 1 when one still fails."""
    from flows.account_lifecycle import retry_quarantined
    from tasks.isolation import open_entry_ids

    if (entry_id is None) == (not every):
        raise CliError("name one entry ID, or --all")
    as_of_instant(as_of)  # a malformed --as-of is a one-line error before anything runs
    existing_database(database)
    if entry_id is not None:
        from tasks.isolation import entry_state

        state = entry_state(entry_id)
        if state is None or state["resolved"]:
            said = "is resolved already" if state else "does not exist"
            raise CliError(
                f"quarantine entry {entry_id} {said}: nothing to retry (`arrears quarantine list`)"
            )
    ids = open_entry_ids() if every else [entry_id] if entry_id is not None else []
    results = retry_quarantined(ids, as_of=as_of)
    if json:
        emit_json(results)
    else:
        for r in results:
            said = (
                "resolved"
                if r["resolved"]
                else f"still in quarantine: {r.get('error_type', '')} {r['error']}"
            )
            console.print(Text(f"{r['id']}: {said}"))
        if not results:
            console.print("nothing in quarantine")
    if any(not r["resolved"] for r in results):
        raise typer.Exit(1)


def _retried(e: dict[str, Any]) -> str:
    """When a retry last ran; one that never resolved the entry (never finished) says so."""
    if e["retrying_since"]:
        return f"retry started {e['retrying_since'][:16]}, not confirmed"
    return str(e["retried_at"] or "")[:16]
