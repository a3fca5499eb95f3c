"""`arrears compliance report`: what the rules held back, and every sent message checked again.

    arrears compliance report [--from 2026-12-01] [--to 2027-01-01] [--json]

Exit code 0 when no sent message breaks a rule, 1 when one does (each is listed), 2 when the
command cannot run. Numbers are masked in every line it prints.
"""

from typing import Annotated, Any

import typer
from rich.table import Table

from arrears.masking import install_log_masking, mask_text
from deployments.cli._common import (
    CliError,
    DatabaseOption,
    command_group,
    console,
    emit_json,
    open_database,
    period_bound,
    use_database,
)

__all__ = ["compliance_app"]

compliance_app = command_group(
    "compliance", "Compliance: verdicts by rule, and every sent message re-checked."
)

_SHOWN = 50  # violations listed in the table; --json lists them all


@compliance_app.command("report")
def report(
    start: Annotated[
        str | None,
        typer.Option(
            "--from", help="Start of the period (included): an instant, or a date in the lender's zone."
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--to", help="End of the period: an instant (excluded), or a date (included)."),
    ] = None,
    database: DatabaseOption = None,
    json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Count deferrals and blocks per rule, and re-check every message sent in the period against
    the rules (window at its send time in the borrower's zones, caps, holds and opt-outs active
    then, content, approved templates). Exit code 1 lists the violations."""
    # Imported here, not at the top: `arrears --help` loads none of the rules, policy or storage.
    from arrears.compliance.report import compliance_report
    from arrears.policy import PolicyError, load_policy
    from arrears.settings import get_settings

    install_log_masking()
    url = use_database(database)
    lo, hi = period_bound(start, "--from", end=False), period_bound(end, "--to", end=True)
    if lo is not None and hi is not None and hi <= lo:
        raise CliError("--to must come after --from")
    settings = get_settings()
    try:
        policy = load_policy(settings.policy_file)
    except PolicyError as error:
        raise CliError(str(error)) from None
    engine = open_database(url, create=False, upgrade=False)
    from arrears.storage import read_only  # no write lock: never waits for a writer

    with read_only(engine) as connection:
        data = compliance_report(
            connection, start=lo, end=hi, policy=policy, lender=settings.lender_name
        ).as_json()
    if json:
        emit_json(data)
    else:
        _print(data)
    if data["violations"]:
        raise typer.Exit(1)


def _print(data: dict[str, Any]) -> None:
    period = f"{data['from'] or 'the beginning'} to {data['to'] or 'now'}"
    verdicts = Table(title=f"messages held back, {period}")
    verdicts.add_column("rule")
    verdicts.add_column("deferred", justify="right")
    verdicts.add_column("blocked", justify="right")
    rules = sorted(set(data["deferrals_by_rule"]) | set(data["blocks_by_rule"]))
    for rule in rules:
        deferred, blocked = data["deferrals_by_rule"].get(rule, 0), data["blocks_by_rule"].get(rule, 0)
        verdicts.add_row(rule, f"{deferred:,}" if deferred else "", f"{blocked:,}" if blocked else "")
    verdicts.add_row("all", f"{data['deferrals']:,}", f"{data['blocks']:,}", style="bold")
    console.print(verdicts)
    if not data["violations"]:
        console.print(f"[green]{data['sent_checked']:,} sent messages re-checked: no violation.[/green]")
        return
    found = Table(title=f"{len(data['violations']):,} violations in {data['sent_checked']:,} sent messages")
    for column in ("message", "account", "sent at", "rule", "detail"):
        found.add_column(column)
    for v in data["violations"][:_SHOWN]:
        found.add_row(
            str(v["message_id"]), v["account_id"], v["sent_at"][:16], v["rule"], mask_text(v["detail"])
        )
    console.print(found)
    if len(data["violations"]) > _SHOWN:
        console.print(f"… and {len(data['violations']) - _SHOWN:,} more (--json lists them all)")
