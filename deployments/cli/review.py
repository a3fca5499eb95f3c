"""`arrears review list` and `arrears review decide`: the human decisions (DESIGN §7, §8).

`decide` records the decision in our `Review` row and audit trail (so the lifecycle sees it
whatever happens next), then resumes the review's waiting flow run through Prefect's API with the
same decision as its `ReviewDecision` input. If the run cannot be resumed now (no Prefect server
reachable, the run busy), the decision stands and the next cycle hands it to the run.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from arrears.currencies import display
from deployments.cli._common import (
    AsOf,
    CliError,
    DatabaseOption,
    Json,
    Limit,
    as_of_instant,
    audit_actor,
    command_group,
    console,
    console_err,
    counted,
    emit_json,
    existing_database,
    rows_wanted,
)

if TYPE_CHECKING:
    from arrears.storage.waiting import Waiting

__all__ = ["review_app"]

review_app = command_group("review", "Repossession reviews and legal referrals waiting for a person.")


class Decision(StrEnum):
    repossess = "repossess"
    legal = "legal"
    negotiate = "negotiate"


class WaitsFor(StrEnum):
    """Who or what a review, referral or recovered car waits for (`Waiting.waits_for`, spaces as
    hyphens)."""

    mailing = "mailing"
    cure_period = "cure-period"
    promise = "promise"
    reviewer = "reviewer"
    hold = "hold"
    blocked = "blocked"
    court = "court"
    legal_team = "legal-team"
    return_car = "return-car"


@review_app.command("list")
def list_waiting(
    database: DatabaseOption = None,
    as_of: AsOf = None,
    json: Json = False,
    waits_for: Annotated[
        WaitsFor | None,
        typer.Option("--waits-for", help="Only what waits for this.", case_sensitive=False),
    ] = None,
    limit: Limit = None,
) -> None:
    """What waits for whom and since when: reviews (mailing, cure period, promise, reviewer, hold,
    blocked), referrals (court, or the legal team for a rejected filing or a payment order
    objected to) and recovered vehicles to return (return-car: the account cured, paid off or
    settled while the car was on the agency's lot; listed until `arrears sale reinstate|redeem|return`
    records its return), oldest first. A review sent back to a person because its repossession
    order ended undone (closed by the agency without the car, called off while the account stayed
    in review, or not sendable for want of a VIN or a mailing address) says why (`reopened`).

    The table shows how many wait for each, then the oldest; a first cycle can open tens of
    thousands of reviews at once, more than a terminal can show."""
    from arrears.storage.vendor_orders import reopened_reasons
    from arrears.storage.waiting import DECIDE, oldest_waiting

    now = as_of_instant(as_of)
    engine = existing_database(database)
    asked = waits_for.value.replace("-", " ") if waits_for else None
    from arrears.storage import read_only  # no write lock: never waits for a writer, nor holds one up

    with read_only(engine) as connection:  # the oldest asked for: the whole list is held only for all
        oldest = oldest_waiting(
            connection, now=now, limit=rows_wanted(limit, json=json) or None, waits_for=asked
        )
        # Reviews an order closed without the car sent back to a person say so (`reopened`).
        reopened = reopened_reasons(connection, [w.ref for w in oldest.first if w.what == "review"])
    counts, chosen, found = oldest.counts, oldest.chosen, oldest.first
    every = len(found) == chosen  # then every live run is read, a page at a time
    runs = _runs(None if every else {f"{w.what} {w.account_id}" for w in found}) if found else None
    if json:
        emit_json(
            [
                {**w.as_json(), "reopened": _reopened(reopened, w), **_run_of(runs, w.what, w.account_id)}
                for w in found
            ]
        )
        return
    if not found:
        console.print("nothing waits for a person" + (f" ({waits_for.value})" if waits_for else ""))
        return
    kinds = sorted({what for what, _ in counts})
    by_kind = "; ".join(
        f"{what}s: " + ", ".join(f"{who} {n:,}" for (w, who), n in sorted(counts.items()) if w == what)
        for what in kinds
    )
    console.print(f"waiting: {counts.total():,} ({by_kind})", highlight=False, soft_wrap=True)
    # The decide line is the same for every review waiting for its reviewer: said once, under the table.
    deciding = any(w.waits_for == "reviewer" for w in found)
    caption = f"to decide one: {DECIDE.format(account='ACCOUNT_ID')}" if deciding else None
    whom = f" for {waits_for.value}" if waits_for else ""
    title = f"waiting{whom} ({counted(chosen, len(found), 'oldest')})"
    table = Table(title=title, caption=caption, caption_justify="left")
    columns = ["account", "what", "waits for", "since", "until", "past due", "detail"]
    for column in columns + (["flow run", "started by cycle run"] if runs else []):
        table.add_column(column, overflow="fold")
    for w in found:
        run = _run_of(runs, w.what, w.account_id)
        links = [_link(run, "flow_run"), _link(run, "cycle_run")] if runs else []
        table.add_row(
            w.account_id,
            w.what,
            w.waits_for,
            _short(w.since),
            _short(w.until),
            f"{display(w.past_due, w.currency)} {w.currency} ({w.days_past_due}d)",
            "; ".join(
                filter(
                    None,
                    [_reopened(reopened, w), "decide: see below" if w.waits_for == "reviewer" else w.detail],
                )
            ),
            *links,
        )
    console.print(table)


@dataclass(frozen=True, slots=True)
class _Run:
    """A live review or referral run, and the cycle run that started it (None when started
    outside a cycle), each with its UI URL when a UI is configured."""

    id: str
    url: str | None
    cycle_run_id: str | None
    cycle_run_url: str | None


def _runs(names: set[str] | None = None) -> dict[str, _Run] | None:
    """The live review and referral runs by name (`review A-1`; only those named `names`, where
    given: the server need not page through every run for the fifty shown), when a Prefect server
    is set (PREFECT_API_URL); None without one or when it cannot be reached."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return None
    from flows._waiting import live_runs, ui_url

    try:
        chosen = sorted(names) if names is not None else None
        found = live_runs("repossession-review", chosen) + live_runs("legal-referral", chosen)
    except Exception as error:  # an unreachable server: the list still shows what waits
        console_err.print(f"[yellow]warning:[/yellow] no flow runs from Prefect: {error}")
        return None
    runs = {}
    for r in found:
        cycle = (r.parameters or {}).get("cycle_run")
        cycle = str(cycle) if cycle else None
        runs[str(r.name)] = _Run(str(r.id), ui_url(str(r.id)), cycle, ui_url(cycle) if cycle else None)
    return runs


def _run_of(runs: dict[str, _Run] | None, what: str, account_id: str) -> dict[str, Any]:
    if runs is None:
        return {}
    run = runs.get(f"{what} {account_id}")
    return {
        "flow_run_id": run.id if run else None,
        "flow_run_url": run.url if run else None,
        "cycle_run_id": run.cycle_run_id if run else None,
        "cycle_run_url": run.cycle_run_url if run else None,
    }


def _link(run: dict[str, Any], what: str) -> str:
    """A run's id above its URL, for a table cell."""
    return f"{run[f'{what}_id'] or ''}\n{run[f'{what}_url'] or ''}".strip()


@review_app.command("decide")
def decide(
    account_id: Annotated[str, typer.Argument(help="The account under review, e.g. A-0000042.")],
    decision: Annotated[
        Decision, typer.Option("--decision", help="repossess, legal or negotiate.", case_sensitive=False)
    ],
    reviewer: Annotated[str, typer.Option("--reviewer", help="Your name: recorded with the decision.")],
    reason: Annotated[str, typer.Option("--reason", help="Why: kept in the audit trail.")],
    database: DatabaseOption = None,
    as_of: AsOf = None,
    json: Json = False,
) -> None:
    """Decide a repossession review once its cure period is over; resumes the waiting flow run.

    The first decision recorded stands: the same decision again changes nothing (exit 0); another
    one is refused (exit 2), naming the decision that stands. While a promise to pay runs, repossess
    and legal are refused (exit 2, naming the promise and its date); negotiate is not. An order the
    agency closes without the car, one called off while the account stays in review (a payment
    that did not cure, a hold, a lapsed settlement) or one that cannot be sent (no VIN or mailing
    address: an import that brings it sends the order instead) opens the review again, to be
    decided anew. The output says at once when the order just approved cannot be sent (and what is
    missing) or was withheld under a hold, and that the review comes back (`order_status`
    placed|blocked|withheld|cancelled and `order_reason` in --json); the decision stands (exit 0)."""
    from tasks.review import ReviewError, decide_review

    now = as_of_instant(as_of)
    reviewer = audit_actor(reviewer, "--reviewer")
    engine = existing_database(database)
    try:
        decided = decide_review(
            engine, account_id=account_id, decision=decision.value, reviewer=reviewer, reason=reason, at=now
        )
    except ReviewError as error:
        raise CliError(str(error)) from None
    if not decided.changed and _contradicts(decision.value, decided.decision):
        # The first decision stands: exit 0 would read as done, and a script or a reviewer's tool
        # would take the account for sent where this one asked.
        when = f" on {decided.state.decided_at:%Y-%m-%d}" if decided.state.decided_at else ""
        by = f" by {decided.state.reviewer}" if decided.state.reviewer else ""
        raise CliError(
            f"{account_id}: already decided {decided.decision}{by}{when}, and that decision stands: "
            f"--decision {decision.value} was not recorded; nothing changed"
        )
    if decided.order_id:
        from tasks.agency import agency_configured, push_assignments

        if agency_configured():
            push_assignments.fn()  # the approved order goes to the agency now
    run = (
        # The decision as settled (a military hold makes repossess legal): the run's form offers only that.
        _resume(decided.state.flow_run_id, decided.decision, reviewer, reason, as_of)
        if decided.changed
        else None
    )
    result = {**decided.as_json(), "flow_run": run}
    if json:
        emit_json(result)
        return
    if not decided.changed:
        console.print(f"{account_id}: already decided [bold]{decided.decision}[/bold]; nothing changed")
        return
    line = f"{account_id}: [bold]{decided.decision}[/bold] recorded for reviewer {reviewer}"
    if decided.decision != decided.requested or decided.note:
        line += f" ({decided.note})"
    if decided.order_id:
        line += f"; vendor order {decided.order_id} placed"
    console.print(line)
    said = decided.order_said()
    if said:
        # The decision is recorded (exit 0), but the car is not being fetched, and the review
        # comes back to a person: said now, not left for `review list` to reveal.
        console.print(f"[yellow]{escape(said)}[/yellow]", highlight=False)
    if run:
        console.print(f"flow run {run['id']}: {run['outcome']}")


def _contradicts(requested: str, standing: str) -> bool:
    """Whether a decision asked for differs from the one recorded. A repeat of it is not (exit 0,
    nothing changed), nor a `repossess` on a review decided `legal`: a repossession that needs a
    court order (a military hold) is recorded as a referral to legal, and is the same decision."""
    return requested != standing and (requested, standing) != (Decision.repossess, Decision.legal)


def _resume(
    flow_run_id: str | None,
    decision: str,
    reviewer: str,
    reason: str,
    as_of: str | None,
) -> dict[str, Any] | None:
    """Hand the decision to the waiting run: its `ReviewDecision` when it waits for one, a wake
    when it still waits on the cure period (it then reads the decision from our table)."""
    if flow_run_id is None:
        return None
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(flow_run_id))
        state = run.state
        if state is None or not state.is_paused():
            current = state.name if state else "no state"
            outcome = f"not waiting ({current}): it reads the decision when it next runs"
        elif state.state_details.pause_key == "decision":
            resume_flow_run(run.id, run_input={"decision": decision, "reviewer": reviewer, "reason": reason})
            outcome = "resumed with the decision"
        else:
            resume_flow_run(run.id, run_input={"as_of": as_of})
            outcome = "woken: it reads the decision from arrears"
    except Exception as error:  # any API failure: the decision is stored, the next cycle hands it over
        console_err.print(
            f"[yellow]warning:[/yellow] could not resume flow run {flow_run_id}: {error}; "
            "the decision is recorded and the next cycle hands it to the run"
        )
        outcome = f"not resumed: {error}"
    return {"id": flow_run_id, "outcome": outcome}


def _reopened(reasons: dict[int, str], w: "Waiting") -> str | None:
    """Why a review went back to a person (`vendor_orders.reopened_reasons`), or None."""
    return reasons.get(w.ref) if w.what == "review" else None


def _short(value: datetime | None) -> str:
    return value.isoformat()[:16].replace("T", " ") if value else ""
