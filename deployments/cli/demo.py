"""`arrears demo`: the embedded default end to end, on a generated portfolio, in one command."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from json import dumps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from arrears.clock import business_date
from arrears.files import create_private_file, private_directory
from deployments.cli._common import (
    CliError,
    app,
    as_of_instant,
    console,
    emit_json,
    open_database,
    policy_ready,
    use_database,
)
from deployments.cli.cycle import print_cycle, run_cycle

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from arrears.simulate import AccountState, PortfolioRow
    from integrations.letters.sandbox import LettersSandbox


@app.command()
def demo(
    accounts: Annotated[int, typer.Option(min=1, help="Accounts in the generated portfolio.")] = 1_000,
    days: Annotated[
        int, typer.Option(min=1, help="Simulated days: each day brings payments, then a cycle.")
    ] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the generated portfolio and payments.")] = 7,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="First day's instant (ISO 8601); default now.")
    ] = None,
    database: Annotated[
        str | None,
        typer.Option("--database", help="Database URL (default: a fresh SQLite file ~/.arrears/demo.db)."),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print the last cycle's figures as JSON.")] = False,
) -> None:
    """Generate a portfolio across CN and US borrowers, import it, run the daily cycle, summarise.

    Runs on the embedded default: SQLite, the sandbox providers (SMS, letters, bureau: started for
    the run) and Prefect's local server. The default demo database is recreated on every run.
    Over several days the sandbox print shop mails each day's letters before the next day's cycle,
    which looks them up: the reviews' cure periods count from those mailings.
    """
    # Imported here, not at the top: `arrears --help` loads none of the simulation, import or storage.
    from arrears.importing import Kind, open_source
    from arrears.settings import default_home, get_settings
    from arrears.simulate import (
        generate_portfolio,
        simulate_payments,
        write_accounts_file,
        write_payments_file,
    )
    from arrears.storage import database_file
    from arrears.storage.importer import run_import

    start = as_of_instant(as_of)  # a malformed --as-of is exit 2 before the demo database is recreated
    url = database or f"sqlite:///{default_home() / 'demo.db'}"
    use_database(url)
    _sandboxes_only()  # before the demo database is recreated: nothing changed
    policy_ready()
    path = database_file(url)
    if database is None and path is not None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    engine = open_database(url, create=True, upgrade=True)
    lender_zone = get_settings().lender_timezone
    work = private_directory(default_home() / "demo")  # the generated borrowers are PII-shaped

    day0 = business_date(start, lender_zone)
    portfolio = list(generate_portfolio(accounts, seed=seed, business_date=day0))
    accounts_file = work / "accounts.csv"
    _private_file(accounts_file)
    write_accounts_file(portfolio, accounts_file)
    with console.status(f"importing {accounts:,} accounts"):
        # As of the portfolio's day: its due dates are that day's, which --as-of may set ahead.
        summary = run_import(engine, open_source(accounts_file, Kind.ACCOUNTS), now=start)
    console.print(f"imported {summary.accepted:,} accounts from {accounts_file}", markup=False)
    _seed_profiles(engine, portfolio)

    stats: dict[str, Any] = {}
    with _one_print_shop() as lob:
        for day in range(days):
            instant = start + timedelta(days=day)
            if day:
                if lob is not None:
                    _mail_overnight(lob, at=instant - timedelta(hours=12))
                payments = work / f"payments-{business_date(instant, lender_zone).isoformat()}.csv"
                _private_file(payments)
                paid = write_payments_file(
                    simulate_payments(
                        _states(engine, portfolio),
                        day=business_date(instant, lender_zone) - timedelta(days=1),
                        seed=seed,
                    ),
                    payments,
                )
                run_import(engine, open_source(payments, Kind.PAYMENTS), now=instant)  # on the simulated day
                console.print(f"day {day + 1}: {paid:,} payments received")
            stats = run_cycle(instant.isoformat(), quiet=json)
            if day + 1 < days:
                _sweep(engine, after=instant, before=instant + timedelta(days=1))
    if json:
        emit_json(stats)
        return
    print_cycle(stats)
    hint = "" if database else f"--database {url} "
    console.print(
        f"\nExplore: [bold]arrears show {hint}{portfolio[0].account_id}[/bold] · "
        f"[bold]arrears report {hint}[/bold]"
        "\nTo keep flow runs and artifacts for the Prefect UI: "
        "[bold]prefect server start[/bold] in another terminal, "
        "then [bold]PREFECT_API_URL=http://127.0.0.1:4200/api arrears demo[/bold]"
    )


# Every kind of provider the demo's cycles reach (texts, letters, bureau pulls, repossession
# orders, court filings).
_DEMO_KINDS = ("sms", "letters", "bureau", "agency", "court")


def _sandboxes_only() -> None:
    """Refuse to run the demo through a provider that is not a sandbox. Its borrowers are generated,
    but their numbers and addresses are real-looking ones (valid prefixes and exchanges) that may
    be a stranger's: through a configured Twilio or Lob (a production shell, an `arrears.toml`),
    each would be texted or mailed about a debt that does not exist, and a real bureau asked for
    their profile. The README and `--help` promise the sandbox providers, started for the run."""
    from arrears.settings import get_settings

    settings = get_settings()
    chosen = {kind: getattr(settings, f"{kind}_provider") for kind in _DEMO_KINDS}
    others = [
        f"ARREARS_{kind.upper()}_PROVIDER is {name!r}" for kind, name in chosen.items() if name != "sandbox"
    ]
    if others:
        raise CliError(
            "arrears demo texts, mails and pulls for generated borrowers whose numbers and addresses "
            f"may be real people's, so it runs on the sandbox providers only: {'; '.join(others)} "
            "(unset it, or run the demo from a shell and directory without arrears.toml); nothing was done"
        )


# Outbox runs a simulated day makes at most, between its cycle and the next day's (one a zone's
# morning, as `arrears serve`'s quarter-hourly run would find them due).
_SWEEPS_A_DAY = 8


def _sweep(engine: "Engine", *, after: datetime, before: datetime) -> None:
    """Send what the day's cycle deferred to a borrower's morning, at the instants it falls due and
    before the next day's cycle, as `arrears serve`'s outbox run does. Without it a text deferred
    to 08:00 in a zone the cycles' hour is never inside (the US, for a lender in Shanghai) was due
    again only at the next cycle, outside the window again, and waited for ever."""
    from arrears.storage import outbox
    from flows.daily_cycle import dispatch_outbox

    at = after
    for _ in range(_SWEEPS_A_DAY):
        with engine.connect() as connection:
            due = outbox.next_due(connection, after=at, before=before)
        if due is None:
            return
        dispatch_outbox(as_of=due.isoformat())
        at = due


@contextmanager
def _one_print_shop() -> "Iterator[LettersSandbox | None]":
    """One sandbox Lob for all the demo's days, where the cycles would each start their own (which
    forgets the letters it took when the cycle ends): what a day hands over is mailed before the
    next (`_mail_overnight`), so the demo's reviews show their cure periods counting from the
    mailing, as with a print shop. None where the letters go to a sandbox of the operator's own
    (`ARREARS_LETTERS_BASE_URL`: `arrears sandbox`), which mails as it is told."""
    from arrears.settings import get_settings
    from integrations.letters.sandbox import start_letters_sandbox

    settings = get_settings()
    if settings.letters_provider != "sandbox" or settings.letters_base_url is not None:
        yield None
        return
    names = ("ARREARS_LETTERS_BASE_URL", "ARREARS_LETTERS_CREDENTIALS")
    before = {name: os.environ.get(name) for name in names}
    with start_letters_sandbox() as lob:
        os.environ["ARREARS_LETTERS_BASE_URL"] = lob.base_url
        os.environ["ARREARS_LETTERS_CREDENTIALS"] = dumps(dict(lob.credentials))
        get_settings.cache_clear()
        try:
            yield lob
        finally:
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            get_settings.cache_clear()


def _mail_overnight(lob: "LettersSandbox", *, at: datetime) -> None:
    """The sandbox mails, dated `at`, every letter it took and has not mailed yet: the next cycle
    looks them up and starts their cure periods."""
    for taken in lob.letters():
        if taken["status"] == "created":
            lob.advance(taken["id"], "mailed", at=at.isoformat())


def _private_file(path: Path) -> None:
    """Recreate `path` empty and 0600, so the file written into it is private from the start and
    not written through a symlink left at its path."""
    path.unlink(missing_ok=True)
    create_private_file(path)


def _seed_profiles(engine: "Engine", portfolio: "list[PortfolioRow]") -> None:
    """Give the demo what bureau pulls and replies would have told us by now (DESIGN §2), each
    seeded value recorded in the audit trail as simulated."""
    from arrears.models import utcnow
    from arrears.storage.simulation import record_simulated_profiles

    with engine.begin() as connection:
        record_simulated_profiles(connection, portfolio, at=utcnow())


def _states(engine: "Engine", portfolio: "list[PortfolioRow]") -> "list[AccountState]":
    from arrears.storage.simulation import delinquent_states

    with engine.connect() as connection:
        return delinquent_states(connection, portfolio)
