"""`arrears cycle` and `arrears dispatch`: run the daily cycle, or send what has become due."""

from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deployments.cli._common import (
    DatabaseOption,
    Json,
    app,
    as_of_instant,
    console,
    emit_json,
    existing_database,
    open_database,
    use_database,
)

AsOf = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="Run as of this ISO 8601 instant with offset (e.g. 2026-12-01T09:00:00+08:00); default now.",
    ),
]


@app.command()
def cycle(as_of: AsOf = None, database: DatabaseOption = None, json: Json = False) -> None:
    """Run the daily cycle: payments, advance, bureau pulls, reviews and referrals, due SMS, report.

    Running it again for the same --as-of changes nothing and sends nothing. With the default
    (sandbox) SMS and bureau providers a local sandbox server is started for the run. Review and
    referral runs start only where `arrears serve` serves their deployments; without it, reviews
    are still opened and decided with `arrears review decide`.
    """
    as_of_instant(as_of)  # a malformed --as-of is a one-line error before anything runs
    url = use_database(database)
    open_database(url, create=False)
    stats = run_cycle(as_of, quiet=json)
    if json:
        emit_json(stats)
    else:
        print_cycle(stats)


@app.command()
def dispatch(as_of: AsOf = None, database: DatabaseOption = None, json: Json = False) -> None:
    """Send outbox messages that have become due (e.g. those deferred to the borrower's morning).

    Then ask the provider about messages still `sent` an hour after it took them (their delivery
    receipt was lost) and record what it says, as a callback would.
    """
    as_of_instant(as_of)  # a malformed --as-of is a one-line error before anything runs
    existing_database(database)
    from flows.daily_cycle import dispatch_outbox

    counts = dispatch_outbox(as_of=as_of)
    if json:
        emit_json(counts)
    else:
        console.print("dispatch: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))


def run_cycle(as_of: str | None, *, quiet: bool = False) -> dict[str, Any]:
    """The daily cycle in this process, with a progress bar for people."""
    from flows.daily_cycle import daily_cycle, watch_progress

    if quiet:
        return daily_cycle(as_of=as_of)
    columns = (TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        phases: dict[str, Any] = {}

        def listen(phase: str, done: int, total: int) -> None:
            if phase not in phases:
                phases[phase] = bar.add_task(phase, total=total)
            bar.update(phases[phase], completed=done)

        starting = bar.add_task("starting", total=None)
        with watch_progress(listen):
            stats = daily_cycle(as_of=as_of)
        bar.remove_task(starting)
    return stats


def print_cycle(stats: dict[str, Any]) -> None:
    advance, dispatched, report = stats["advance"], stats["dispatch"], stats["report"]
    table = Table(title=f"Daily cycle {stats['business_date']} (as of {stats['as_of']})", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("payments applied", f"{stats['refresh']['payments_applied']:,}")
    table.add_row("accounts advanced", f"{advance.get('accounts', 0):,} in {advance['shards']} shards")
    table.add_row("transitions", f"{advance.get('transitions', 0):,}")
    table.add_row("accounts on hold", f"{advance.get('held', 0):,}")
    table.add_row("new messages", f"{advance.get('messages', 0):,}")
    # The later stages' counts (promises, plans, bureau pulls, reviews, referrals), where non-zero.
    later = {
        **stats["refresh"],
        **stats.get("bureau", {}),
        **stats.get("reviews", {}),
        **stats.get("referrals", {}),
    }
    for key, value in later.items():
        if value and key not in ("payments_applied", "accounts_refreshed"):
            table.add_row(key.replace("_", " "), f"{value:,}")
    for status in ("sent", "delivered", "scheduled", "blocked", "failed"):
        if dispatched.get(status):
            table.add_row(f"dispatch: {status}", f"{dispatched[status]:,}")
    console.print(table)
    from deployments.cli.report import print_report_tables

    print_report_tables(report)
