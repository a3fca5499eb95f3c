"""`arrears show` and `arrears report`: what happened to an account, and to the portfolio."""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from arrears.buckets import BUCKETS
from deployments.cli._common import (
    CliError,
    DatabaseOption,
    Json,
    app,
    console,
    emit_json,
    existing_database,
)

if TYPE_CHECKING:
    from sqlalchemy import Connection


@app.command()
def show(
    account_id: Annotated[str, typer.Argument(help="The account to show, e.g. A-0000042.")],
    database: DatabaseOption = None,
    json: Json = False,
) -> None:
    """Stage, days past due, segment, holds, the borrower's numbers (masked), a plan, a settlement,
    messages and the timeline of one account."""
    # Imported in the command: `arrears --help` loads none of storage.
    from arrears.storage.accounts import account_story
    from arrears.storage.assignments import list_assignments
    from arrears.storage.letters import list_letters
    from arrears.storage.plans import current_plan, plan_json
    from arrears.storage.settlements import current_settlement, settlement_json

    engine = existing_database(database)
    from arrears.storage import read_only  # no write lock: never waits for a writer

    with read_only(engine) as connection:
        story = account_story(connection, account_id)
        if story is None:
            raise CliError(f"no account {account_id!r}")
        data = story.as_json()
        data["letters"] = [row.as_json() for row in list_letters(connection, account_id=account_id)]
        data["agency_assignments"] = [
            row.as_json() for row in list_assignments(connection, account_ids=[account_id])
        ]
        agreed = current_settlement(connection, account_id)
        data["settlement"] = None if agreed is None else settlement_json(agreed)
        planned = current_plan(connection, account_id)
        data["plan"] = None if planned is None else plan_json(planned)
    if json:
        emit_json(data)
        return
    holds = ", ".join(data["holds"]) or "none"
    if data["episode"]:
        state = (
            f"[bold]{data['stage']}[/bold] since {data['stage_since'][:10]} · "
            f"{data['days_past_due']} days past due ({data['bucket']})"
        )
    else:  # never taken into collection: the stored stage is the resting `cured` (JSON keeps it)
        state = f"[bold]not in collection[/bold] · oldest due {data['oldest_due_date'] or 'none'}"
    console.print(
        Panel.fit(
            f"{state} · past due {data['past_due_amount']} of {data['balance']} {data['currency']}\n"
            f"segment {data['segment']} · holds {holds} · {data['jurisdiction']} {data['timezone']}",
            title=f"account {escape(data['account_id'])}",  # an id is data, not markup: `Q-[b]1`
        )
    )
    planned = data["plan"]
    if planned:
        schedule = planned["schedule"]
        span = (
            f" from {schedule[0]['due']} to {schedule[-1]['due']}"
            if len(schedule) > 1
            else "".join(f" due {item['due']}" for item in schedule)
        )
        console.print(
            f"plan {planned['id']} {planned['kind']} {planned['status']}{span} (`arrears plan show`)",
            markup=False,
            highlight=False,
        )
    agreed = data["settlement"]
    if agreed:
        console.print(
            f"settlement {agreed['id']} {agreed['status']}: {agreed['currency']} {agreed['amount']} "
            f"by {agreed['pay_by']} (`arrears settlement show`)",
            markup=False,
            highlight=False,
        )
    if data["numbers"]:
        numbers = Table(title="numbers")
        for column in ("number", "usable", "why not", "failures in a row", "from"):
            numbers.add_column(column)
        for n in data["numbers"]:
            why_not = _why_not(n)
            numbers.add_row(
                n["number"] + (" (primary)" if n["primary"] else ""),
                "no" if why_not else "yes",
                why_not,
                str(n["failures"]),
                n["source"] + ("" if n["verified"] else ", unverified"),
            )
        console.print(numbers)
    if data["messages"]:
        messages = Table(title="messages")
        for column in ("template", "status", "not before", "sent at", "reason"):
            messages.add_column(column)
        for m in data["messages"]:
            messages.add_row(
                m["template"], m["status"], _short(m["not_before"]), _short(m["sent_at"]), m["reason"] or ""
            )
        console.print(messages)
    else:  # an empty table's header says less than this
        console.print("no messages")
    if data["letters"] or data["agency_assignments"]:
        mail = Table(title="letters and agency assignments")
        for column in ("what", "status", "mailed / assigned", "deadline / recovered", "reason"):
            mail.add_column(column)
        for x in data["letters"]:
            mail.add_row(
                f"letter {x['id']} {x['kind']}",
                x["status"],
                _short(x["mailed_at"]),
                _short(x["deadline"]),
                x["reason"] or "",
            )
        for x in data["agency_assignments"]:
            mail.add_row(
                f"assignment {x['order_id']}",
                x["status"],
                _short(x["assigned_at"]),
                _short(x["recovered_at"]),
                x["reason"] or "",
            )
        console.print(mail)
    timeline = Table(title="timeline")
    for column in ("at", "kind", "detail", "by"):
        # A detail's long words (a letter's SHA-256, a vendor's id) fold rather than being cut.
        timeline.add_column(column, overflow="fold" if column == "detail" else "ellipsis")
    for e in data["timeline"]:
        attached = "".join(f"\n{url}" for url in e.get("media", ()))
        timeline.add_row(_short(e["at"]), e["kind"], e["detail"] + attached, e["actor"])
    console.print(timeline)


@app.command()
def report(
    cycle: Annotated[
        int | None, typer.Option("--cycle", help="Report this cycle run (default: the latest).")
    ] = None,
    database: DatabaseOption = None,
    json: Json = False,
) -> None:
    """Accounts by stage and bucket, the last cycle's transitions and messages, roll and cure rates,
    the SMS providers failing for our message or sender, the letters not mailed by the day the law
    says (`letters_overdue`).

    A cycle that closed is reported as it closed: its portfolio, rates and messages by status are
    those it stored then, so an earlier cycle's report does not change as its messages are sent or
    fail later (`statuses_as_of` in the JSON says which). A --cycle that names no cycle run is exit
    2, not an empty report."""
    from arrears.storage.quarantine import counts as quarantine_counts
    from arrears.storage.reports import latest_cycle_id, portfolio_report
    from arrears.storage.unattributed import counts_for_report

    engine = existing_database(database)
    from arrears.storage import read_only  # no write lock: never waits for a writer

    with read_only(engine) as connection:
        cycle_id = cycle if cycle is not None else latest_cycle_id(connection)
        found = portfolio_report(connection, cycle_id=cycle_id)
        if cycle is not None and found.as_of is None:
            # A mistyped id would read as a quiet cycle: no transitions, no messages.
            raise CliError(f"no cycle {cycle} (`arrears report` without --cycle reports the latest)")
        data = found.as_json()
        data["quarantine"] = quarantine_counts(connection, cycle_id=cycle_id)
        data["callbacks_kept"] = counts_for_report(connection, found.as_of)
        data["sender_faults"] = _sender_faults(connection, found.as_of)
        data["letters_overdue"] = _letters_overdue(connection, found.as_of)
    data["webhook_spool"] = _spool_counts(engine)
    if json:
        emit_json(data)
    else:
        print_report_tables(data)


def print_report_tables(data: dict[str, Any]) -> None:
    labels = [label for label, _ in BUCKETS]
    stages = Table(title="accounts by stage and days past due")
    stages.add_column("stage", no_wrap=True)
    for label in labels:
        stages.add_column(label, justify="right")
    stages.add_column("total", justify="right", style="bold")
    for stage, buckets in sorted(data["accounts_by_stage_and_bucket"].items()):
        stages.add_row(
            stage, *(f"{buckets.get(label, 0):,}" for label in labels), f"{sum(buckets.values()):,}"
        )
    console.print(stages if _fits(stages) else _stages_by_line(data["accounts_by_stage_and_bucket"]))
    if data["transitions"]:
        targets = sorted({t for row in data["transitions"].values() for t in row})
        matrix = Table(title=f"transitions in cycle {data['cycle_id']} (from → to)")
        matrix.add_column("from", no_wrap=True)
        for t in targets:
            matrix.add_column(t, justify="right")
        for src, row in sorted(data["transitions"].items()):
            matrix.add_row(src, *(f"{row.get(t, 0):,}" if row.get(t) else "" for t in targets))
        console.print(matrix if _fits(matrix) else _moves(data["cycle_id"], data["transitions"]))
    messages = Table(title=f"messages decided in the cycle, by {_statuses_as_of(data)}")
    messages.add_column("status")
    messages.add_column("reason")
    messages.add_column("count", justify="right")
    for status, n in sorted(data["messages_by_status"].items()):
        messages.add_row(status, "(all)", f"{n:,}", style="bold")
    for reason, n in sorted(data["blocked_by_reason"].items()):
        messages.add_row("blocked", reason, f"{n:,}")
    for reason, n in sorted(data["scheduled_by_reason"].items()):
        messages.add_row("scheduled", reason, f"{n:,}")
    for reason, n in sorted(data.get("failed_by_reason", {}).items()):
        messages.add_row("failed", reason, f"{n:,}")
    console.print(messages)
    if data.get("provider_failures"):
        failures = Table(
            title="sends the provider failed, refused or held back in the cycle"
            + (" (held: never tried, the provider down)" if "held" in data["provider_failures"] else "")
        )
        for column in ("status", "reason", "count"):
            failures.add_column(column, justify="right" if column == "count" else "left")
        for status, reasons in sorted(data["provider_failures"].items()):
            for reason, n in sorted(reasons.items()):
                failures.add_row(status, reason, f"{n:,}")
        console.print(failures)
    from tasks.report import callbacks_kept_line, rate  # one format, the artifacts' and the CLI's

    rates = [
        f"{name} {rate(data[key])}"
        for name, key in (("roll rate", "roll_rate"), ("cure rate", "cure_rate"))
        if data[key] is not None
    ]
    if rates:
        console.print(" · ".join(rates))
    held = data.get("quarantine")
    if held and (held["open_total"] or held["this_cycle"]):
        kinds = ", ".join(f"{n:,} {what}" for what, n in sorted(held["open"].items()) if n)
        console.print(
            f"quarantined in this cycle: {held['this_cycle']:,} · in quarantine: {held['open_total']:,}"
            + (f" ({kinds}): `arrears quarantine list`" if kinds else "")
        )
    if data.get("callbacks_kept"):
        console.print(callbacks_kept_line(data["callbacks_kept"]))
    from arrears.storage.delivery_reports import SenderFaults, sender_faults_line

    for faulty in data.get("sender_faults", ()):  # the summary's line: a template or sender refused
        console.print(sender_faults_line(SenderFaults.from_json(faulty)), style="bold", markup=False)
    if data.get("letters_overdue", {}).get("count"):
        from tasks.report import overdue_letters_line

        console.print(overdue_letters_line(data["letters_overdue"]), style="bold", markup=False)
    spooled = data.get("webhook_spool")
    if spooled and (spooled["waiting"] or spooled["failed"]):
        console.print(
            f"webhook spool: {spooled['waiting']:,} callbacks acknowledged and waiting to be stored"
            f" (the webhook server stores them once the database is free), {spooled['failed']:,}"
            f" set aside: {escape(spooled['directory'])}"
        )


def _sender_faults(connection: "Connection", as_of: datetime | None) -> list[dict[str, Any]]:
    """The SMS providers failing for our message or sender in the day before the cycle's instant, by
    the cycle's own rule and the operator's settings: what its summary and event said, or would have."""
    if as_of is None:  # no cycle yet: no instant to look back from
        return []
    from arrears.settings import get_settings
    from arrears.storage.delivery_reports import failing_senders

    settings = get_settings()
    faulty = failing_senders(
        connection,
        as_of=as_of,
        share=settings.sender_fault_alert_share,
        minimum=settings.sender_fault_alert_min,
    )
    return [f.as_json() for f in faulty]


def _letters_overdue(connection: "Connection", as_of: datetime | None) -> dict[str, Any]:
    """The letters not mailed by the day the law says, at the cycle's instant: as its report said."""
    from arrears.storage.overdue_letters import overdue_letters
    from tasks.report import overdue_letters_json

    return overdue_letters_json(overdue_letters(connection, now=as_of) if as_of is not None else [])


def _statuses_as_of(data: dict[str, Any]) -> str:
    """Whose statuses the report's message counts are: a cycle that closed stored them as it
    closed; one running, failed or crashed stored none, and its messages are counted as they
    stand now (sent, delivered or failed since)."""
    if data.get("statuses_as_of") == "cycle close":
        return "status at the cycle's close"
    return "status now"


def _spool_counts(engine: Any) -> dict[str, Any]:
    """Callbacks the webhook server acknowledged while the database was busy and has not stored yet
    (an import holds SQLite's lock for minutes), and those it could not store (`failed/`)."""
    from arrears.settings import get_settings
    from arrears.spool import webhook_spool

    spool = webhook_spool(engine.url.render_as_string(hide_password=False), get_settings().webhook_spool_dir)
    size = spool.size()
    return {"waiting": size.waiting, "failed": size.failed, "directory": str(spool.directory)}


def _why_not(number: dict[str, Any]) -> str:
    """Why a number is not texted, or "" when it may be."""
    if not number["valid"]:
        why = number.get("invalid_reason")
        return f"invalid ({why.replace('_', ' ')})" if why else "invalid"
    return f"opted out {_short(number['opted_out_at'])}" if number["opted_out_at"] else ""


def _fits(table: Table) -> bool:
    """Whether the table fits the terminal with nothing cut ("negotiati…", "120,0…" on 80 columns)."""
    return console.measure(table, options=console.options.update_width(1_000_000)).maximum <= console.width


def _stages_by_line(by_stage: dict[str, dict[str, int]]) -> Table:
    """Accounts by stage, the buckets as words that wrap: what a terminal too narrow for a column
    per bucket shows (there, "120,000" was cut to "120,0…")."""
    labels = [label for label, _ in BUCKETS]
    stages = Table(title="accounts by stage and days past due")
    stages.add_column("stage", no_wrap=True)
    stages.add_column("days past due: accounts")
    stages.add_column("total", justify="right", style="bold", no_wrap=True)
    for stage, buckets in sorted(by_stage.items()):
        spread = " · ".join(f"{label}: {buckets[label]:,}" for label in labels if buckets.get(label))
        stages.add_row(stage, spread, f"{sum(buckets.values()):,}")
    return stages


def _moves(cycle_id: int, transitions: dict[str, dict[str, int]]) -> Table:
    """The transitions one move a row: what a terminal too narrow for the matrix shows."""
    moves = Table(title=f"transitions in cycle {cycle_id}")
    moves.add_column("from", no_wrap=True)
    moves.add_column("to", no_wrap=True)
    moves.add_column("accounts", justify="right")
    for src, row in sorted(transitions.items()):
        for to, n in sorted(row.items()):
            if n:
                moves.add_row(src, to, f"{n:,}")
    return moves


def _short(value: str | None) -> str:
    return value[:16].replace("T", " ") if value else ""
