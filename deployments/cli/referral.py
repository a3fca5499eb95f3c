"""`arrears referral close|refile`: the legal team's decisions on referrals waiting for them
(`arrears.storage.legal_team`; `arrears review list --waits-for legal-team` shows them).

Each is one transaction on our tables, audited on the account's timeline as the person's. A
refiling is a new referral drafted from today's facts; the command then sets its run going
through Prefect's API (a run waiting on the court is woken, else one is started on the served
deployment). If that cannot be done now, the refiling stands and the next cycle's run files it.
"""

from enum import StrEnum
from typing import Annotated

import typer

from deployments.cli._common import (
    AsOf,
    DatabaseOption,
    Json,
    Why,
    as_of_instant,
    audit_actor,
    audit_reason,
    command_group,
    console,
    console_err,
    emit_json,
    refusable_transaction,
)

__all__ = ["referral_app"]

referral_app = command_group(
    "referral",
    "Legal referrals waiting for the legal team: record counsel's decision (close), or file a rejected "
    "filing again from today's facts (refile). Audited with who and why.",
)

Account = Annotated[str, typer.Argument(help="The account referred, e.g. A-0000042.")]
By = Annotated[str, typer.Option("--by", help="Your name (the legal team's): kept in the audit trail.")]
ReferralId = Annotated[
    int | None,
    typer.Option(
        "--referral",
        min=1,
        help="The referral (`id` in `arrears review list --json`), when the account has several waiting.",
    ),
]


class Outcome(StrEnum):
    dismissal_filed = "dismissal-filed"
    not_suing = "not-suing"
    suing_off_system = "suing-off-system"
    judgment = "judgment"


@referral_app.command("close")
def close(
    account_id: Account,
    outcome: Annotated[
        Outcome,
        typer.Option(
            "--outcome",
            help="dismissal-filed, not-suing, suing-off-system, or judgment (of a suit off-system).",
            case_sensitive=False,
        ),
    ],
    by: By,
    reason: Why,
    referral_id: ReferralId = None,
    database: DatabaseOption = None,
    as_of: AsOf = None,
    json: Json = False,
) -> None:
    """Record the legal team's decision on a referral waiting for them; it leaves the team's queue
    in `arrears review list`.

    dismissal-filed: counsel filed the dismissal of a case whose account paid, cured or settled
    (a referral `dismissing`, a payment order objected to, a suit off-system). not-suing: no suit
    on a rejected filing, one not filed yet, a payment order objected to (counsel told the court
    the applicant does not agree to litigation) or a suit off-system withdrawn; an account still in
    legal referral is then charged off by the cycle once at the policy's charge-off days past due
    (`exits.charge_off_dpd`, 180 by default), at once if past. suing-off-system: counsel sues outside arrears
    (a civil suit after an objection, a rejected filing filed by hand): the account stays in legal
    referral, the referral waits for the court, and, should the account pay meanwhile, for the
    legal team to file its dismissal. judgment: that suit ended in judgment; the next cycle closes
    the account.

    The same decision again changes nothing (exit 0). Refused, exit 2 naming why, nothing changed: a
    referral that does not wait for the legal team (its filing before the court through the
    gateway), an outcome that does not fit it, a referral already ended otherwise, or an account
    with several referrals waiting and no --referral."""
    from arrears.storage.legal_team import close_referral

    why, who, at = audit_reason(reason), audit_actor(by, "--by"), as_of_instant(as_of)
    with refusable_transaction(database) as connection:
        decided = close_referral(
            connection,
            account_id=account_id,
            outcome=outcome.value,
            by=who,
            reason=why,
            at=at,
            referral_id=referral_id,
        )
    if json:
        emit_json(decided.as_json())
        return
    if not decided.changed:
        said = f"{account_id}: referral {decided.referral_id} is {decided.status} already; nothing changed"
    else:
        said = (
            f"{account_id}: referral {decided.referral_id} {decided.previous} → {decided.status} "
            f"({outcome.value}, by {who}): {decided.detail}"
        )
    console.print(said, markup=False, highlight=False, soft_wrap=True)


@referral_app.command("refile")
def refile(
    account_id: Account,
    by: By,
    reason: Why,
    referral_id: ReferralId = None,
    database: DatabaseOption = None,
    as_of: AsOf = None,
    json: Json = False,
) -> None:
    """File a rejected filing again, from today's facts, once its cause is fixed.

    After an import corrected the account, or a document was added: a new referral is opened from
    today's facts (balance, jurisdiction, notices, military status) and its run files it under a
    key of its own, now (a run waiting on
    the court is woken; else one is started where `arrears serve` serves the referral deployment)
    or at the next cycle. Refused, exit 2 naming why, nothing changed: no rejected filing of the
    account's present referral in legal referral (a payment order objected to is void: close it
    suing-off-system or not-suing), or one today's facts cannot draft either (no court for the
    jurisdiction). The same refile again changes nothing (exit 0)."""
    from arrears.settings import get_settings
    from arrears.storage.legal_team import refile_referral

    why, who, at = audit_reason(reason), audit_actor(by, "--by"), as_of_instant(as_of)
    with refusable_transaction(database) as connection:
        decided = refile_referral(
            connection,
            account_id=account_id,
            by=who,
            reason=why,
            at=at,
            lender=get_settings().lender_name,
            referral_id=referral_id,
        )
    run = _file_now(account_id, as_of) if decided.changed else None
    if json:
        emit_json({**decided.as_json(), "flow_run": run})
        return
    if not decided.changed:
        console.print(
            f"{account_id}: referral {decided.referral_id} {decided.detail}; nothing changed",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return
    console.print(
        f"{account_id}: referral {decided.referral_id} refiled by {who}: {decided.detail}; {run}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _file_now(account_id: str, as_of: str | None) -> str:
    """Set the new referral's run going; what was done, or why the next cycle does it."""
    from prefect.settings import PREFECT_API_URL

    later = "the next cycle's referral run files it"
    if not PREFECT_API_URL.value():  # no server to ask: an ephemeral one would hold no run of ours
        return f"no Prefect server is set (PREFECT_API_URL): {later}"
    from flows.legal_referral import start_referral

    try:
        return start_referral(account_id, as_of)
    except Exception as error:  # the refiling is stored: the cycle files it
        console_err.print(f"[yellow]warning:[/yellow] could not start the referral run: {error}; {later}")
        return f"not started now: {later}"
