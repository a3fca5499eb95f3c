"""`arrears cycle` and `arrears dispatch`: run the daily cycle, or send what has become due."""

from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deployments.cli._common import (
    CliError,
    DatabaseOption,
    Json,
    app,
    as_of_instant,
    console,
    console_err,
    emit_json,
    open_database,
    policy_ready,
    use_database,
)

OUTAGE_EXIT = 4  # DESIGN §8: done, but the provider could not be reached and messages wait

AsOf = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="Run as of this ISO 8601 instant with offset (e.g. 2026-12-01T09:00:00+08:00); default now.",
    ),
]


@app.command()
def cycle(as_of: AsOf = None, database: DatabaseOption = None, json: Json = False) -> None:
    """Run the daily cycle: payments, advance, reviews and referrals, due SMS, bureau pulls, letters, report.

    Once a cycle finished for an --as-of, running it again for the same --as-of changes nothing and
    sends nothing; an --as-of before the latest cycle's is refused (exit 2, before any flow run
    starts), since days past due and stages only move forward. One cycle at a time per database:
    while another cycle (or `arrears dispatch`) runs, this exits 2 saying so. A cycle that was
    killed is closed as crashed by the next run, which carries on without sending anything twice;
    one stopped with Ctrl-C closes itself as failed (exit 1, saying so), and its rerun carries on
    the same way. With the default (sandbox) SMS and bureau providers a local sandbox server is
    started for the run. Review and referral runs start only where `arrears serve` serves their
    deployments; without it, reviews are still opened and decided with `arrears review decide`.

    With an SMS provider whose texts reach phones (not the sandbox), every text is checked at the
    hour it is sent, whatever the --as-of (a missed day run late texts no one at night), and an
    --as-of in the future is refused (exit 2).

    Exit codes: 0 done; 2 bad input (an --as-of empty or not an instant), an --as-of before the
    latest cycle's or (with a real SMS provider) in the future, or a cycle is already running; 4
    done, but the SMS provider could not be reached: one line on stderr names it and how many
    messages wait (scheduled; `arrears dispatch` sends them once it is back); 1 anything else.
    """
    instant = as_of_instant(as_of)  # a malformed --as-of is a one-line error before anything runs
    url = use_database(database)
    policy_ready()
    open_database(url, create=False, upgrade=True)
    _providers_ready(bureau=True)
    _refuse_ahead_of_the_clock(instant)

    def forward() -> dict[str, Any]:
        if as_of is not None:  # without one the flow runs as of its own now, or its scheduled time
            from tasks.cycle import refuse_backdated

            refuse_backdated(instant)  # said in one line, before a flow run is recorded as Failed
        return run_cycle(as_of, quiet=json)

    stats = _exclusively("cycle", forward)
    if json:
        emit_json(stats)
    else:
        print_cycle(stats)
    _exit_on_outage(stats.get("outage"))


@app.command()
def dispatch(as_of: AsOf = None, database: DatabaseOption = None, json: Json = False) -> None:
    """Send outbox messages that have become due (e.g. those deferred to the borrower's morning).

    First, what a killed cycle or dispatch may have sent is looked up at the provider (and
    recorded as sent if found). Then ask the provider about messages still `sent` an hour after
    it took them (their delivery receipt was lost) and record what it says, as a callback would.
    Start the review runs a cycle had to defer (the Prefect server refused them) where the review
    deployment is served. Through an SMS provider that reaches phones (not the sandbox) each text
    is checked at the hour it is sent, whatever the --as-of.

    Exit codes: 0 done; 2 bad input, or a cycle or dispatch is already running on the database;
    4 done, but the SMS provider could not be reached: one line on stderr names it and how many
    messages wait (scheduled); 1 anything else.
    """
    as_of_instant(as_of)  # a malformed --as-of is a one-line error before anything runs
    url = use_database(database)
    policy_ready()
    open_database(url, create=False, upgrade=True)
    _providers_ready()
    from flows.daily_cycle import dispatch_outbox

    counts = _exclusively("dispatch", lambda: dispatch_outbox(as_of=as_of))
    outage = counts.pop("outage", None)
    if json:
        emit_json(counts | ({"outage": outage} if outage else {}))
    else:
        console.print("dispatch: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    _exit_on_outage(outage)


def _exclusively(what: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`run()` under the database's run lock: another cycle or dispatch running, or a cycle as of
    an instant before the latest cycle's, is exit 2, said in one line, before any flow starts."""
    from tasks.cycle import CycleBackdated, CycleRunning, run_exclusively

    try:
        with run_exclusively(what):
            return run()
    except (CycleRunning, CycleBackdated) as refused:
        raise CliError(str(refused)) from None
    except KeyboardInterrupt:
        # Ctrl-C: Prefect marks the flow run crashed and the run is closed as failed. Said in one
        # line, exit 1 as the import's (DESIGN §8), where typer would exit 130 and say nothing.
        leased = " (the messages it had taken wait out their ten-minute lease)" if what == "dispatch" else ""
        raise CliError(
            f"interrupted: the {what} stopped part-way. What it did is kept; `arrears {what}` "
            f"carries on from there without sending anything twice{leased}",
            exit_code=1,
        ) from None


def _providers_ready(*, bureau: bool = False) -> None:
    """A provider setting the run would refuse halfway (an unknown SMS provider, Twilio without
    its account; with `bureau`, a misnamed bureau the cycle's pulls open beside its dispatch) is
    a one-line error, exit 2, before anything runs."""
    from arrears.settings import get_settings
    from integrations.errors import ConfigError
    from tasks.providers import check_settings

    try:
        check_settings("sms")
        if bureau and get_settings().bureau_pulls_per_cycle:
            check_settings("bureau")
    except ConfigError as error:
        raise CliError(f"invalid settings: {error}") from None


def _refuse_ahead_of_the_clock(instant: datetime) -> None:
    """A cycle as of an instant still to come, with an SMS provider whose texts reach phones, is
    refused (exit 2): it decides a day that has not come, and once recorded it refuses every
    cycle before it as backdated, so a typo in the year would stop the daily runs. A simulated
    provider's days may run ahead of the clock (drills, simulations)."""
    from arrears.models import utcnow
    from arrears.settings import get_settings
    from integrations.providers import provider_class

    if instant <= utcnow():
        return
    name = get_settings().sms_provider
    if not provider_class("sms", name).info.simulated:
        raise CliError(
            f"--as-of {instant.isoformat()} is in the future: with the {name!r} SMS provider a cycle "
            "runs as of now or an instant already past; nothing was done"
        )


def _exit_on_outage(outage: dict[str, Any] | None) -> None:
    """Exit 4 with one line naming the provider and how many messages wait (DESIGN §8)."""
    if not outage:
        return
    console_err.print(
        f"SMS provider {outage['provider']} could not be reached: {outage['waiting']:,} messages wait "
        "(scheduled); `arrears dispatch` sends them once it is back",
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(OUTAGE_EXIT)


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


def later_counts(stats: dict[str, Any]) -> dict[str, int]:
    """The later stages' counts (promises, plans, bureau pulls, reviews, letters, referrals). The
    recoveries step runs twice in a cycle (after the reviews and after the letters): what it did
    (notices written, accounts closed) is summed, what waits (`*_waiting`, `*_to_return`) is
    counted again by each run, so the later run's count stands."""
    later: Counter[str] = Counter()
    for step in ("refresh", "bureau", "reviews", "letters", "referrals"):
        for key, value in stats.get(step, {}).items():
            if key.endswith(("_waiting", "_to_return")):
                later[key] = value
            else:
                later[key] += value
    return dict(later)


def print_cycle(stats: dict[str, Any]) -> None:
    if stats.get("already_finished"):
        console.print(
            f"cycle {stats['already_finished']} already finished as of {stats['as_of']}: nothing to do",
            highlight=False,
        )
        return
    advance, dispatched, report = stats["advance"], stats["dispatch"], stats["report"]
    table = Table(title=f"Daily cycle {stats['business_date']} (as of {stats['as_of']})", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("payments applied", f"{stats['refresh']['payments_applied']:,}")
    table.add_row("accounts advanced", f"{advance.get('accounts', 0):,} in {advance['shards']} shards")
    table.add_row("transitions", f"{advance.get('transitions', 0):,}")
    table.add_row("accounts on hold", f"{advance.get('held', 0):,}")
    table.add_row("new messages", f"{advance.get('messages', 0):,}")
    for key, value in later_counts(stats).items():
        if value and key not in ("payments_applied", "accounts_refreshed"):
            table.add_row(key.replace("_", " "), f"{value:,}")
    for status in ("sent", "delivered", "scheduled", "blocked", "failed"):
        if dispatched.get(status):
            table.add_row(f"dispatch: {status}", f"{dispatched[status]:,}")
    console.print(table)
    from deployments.cli.report import print_report_tables

    print_report_tables(report)
