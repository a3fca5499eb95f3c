"""Dispatch: send due outbox rows through the SMS provider, checking compliance again at send time.

Per batch: lease the rows, re-check each in id order (stale stage, invalid number, then every
rule of `check_contact` on the stored body: holds, opt-out, template, content, the window in the
borrower's zones, the caps counted from the message log plus what this batch already approved),
reconcile rows an earlier try may have sent, send the rest in one `send_batch`, and record every
outcome with the rule that decided it. Nothing leaves without a verdict of SEND at this instant.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

from arrears.compliance.caps import Contact
from arrears.compliance.contact import ContactRequest, ContactState, VerdictKind, check_contact
from arrears.masking import install_log_masking, mask_phone
from arrears.models import utcnow
from arrears.policy import Policy
from arrears.settings import get_settings
from arrears.storage import outbox
from arrears.storage.outbox import DueMessage, Outcome
from arrears.vocabulary import MessageStatus
from integrations.errors import InvalidAddress, OptedOut, Permanent, ProviderError, Transient
from integrations.sms.protocol import SmsProvider, SmsRequest, SmsResult
from tasks.database import engine, policy
from tasks.isolation import SetAside, without_quarantined
from tasks.providers import current_sms

# Every process that dispatches masks numbers in its log records, Prefect's run logs included.
install_log_masking()

__all__ = ["Batch", "dispatch_batch", "plan_dispatch"]

LEASE = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Batch:
    index: int
    lo: int
    hi: int | None
    account_id: str | None = None  # only this account's messages (the single-account path)


@task(name="plan-dispatch", cache_policy=NO_CACHE)
def plan_dispatch(as_of: datetime, size: int, account_id: str | None = None) -> list[Batch]:
    with engine().connect() as connection:
        ranges = outbox.due_batches(connection, now=as_of, size=size, account_id=account_id)
    return [Batch(i, lo, hi, account_id) for i, (lo, hi) in enumerate(ranges)]


@task(
    name="dispatch-batch",
    task_run_name="dispatch-sms-{batch.index}",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[10, 60],
    # One stable tag: an operator may cap concurrent batches with a tag limit on it
    # (`prefect concurrency-limit create channel:sms 2`). Every tagged task run asks the server for
    # slots, so nothing else in the cycle is tagged (PREFECT.md).
    tags=["channel:sms"],
)
def dispatch_batch(batch: Batch, as_of: datetime, cycle_id: int | None) -> dict[str, int]:
    """Send one batch; returns counts by outcome status."""
    provider = current_sms()  # before the lease: without a provider session, nothing is leased
    rules = policy()
    # Messages (and accounts) in quarantine wait for their retry; one whose check raises joins them.
    rows = without_quarantined(_lease(batch, as_of, rules))
    aside = SetAside("dispatch")
    outcomes, to_send = _check(rows, rules, as_of, aside)
    outcomes += _send(provider, to_send, as_of)
    with engine().begin() as connection:
        outbox.record_outcomes(connection, outcomes=outcomes, at=as_of, cycle_id=cycle_id)
        quarantined = aside.record(connection, at=as_of, cycle_id=cycle_id)
    _log_refused_numbers(outcomes, {r.id: r.address for r in rows})
    counts: dict[str, int] = {"quarantined": quarantined} if quarantined else {}
    for o in outcomes:
        counts[o.status.value] = counts.get(o.status.value, 0) + 1
    return counts


def _lease(batch: Batch, as_of: datetime, rules: Policy) -> list[DueMessage]:
    """Take the batch's due rows for a while, with the message history their caps count."""
    wall = utcnow()
    with engine().begin() as connection:
        return outbox.lease_batch(
            connection,
            lo=batch.lo,
            hi=batch.hi,
            now=as_of,
            wall=wall,
            lease_until=wall + LEASE,
            account_id=batch.account_id,
            lookback=rules.longest_cap_window(),
        )


def _check(
    rows: list[DueMessage], rules: Policy, as_of: datetime, aside: SetAside | None = None
) -> tuple[list[Outcome], list[DueMessage]]:
    """The send-time verdicts: the outcomes of the rows refused (blocked or deferred), and the
    rows that may go. A row whose check raises is set `aside` (quarantined), neither sent nor refused."""
    lender = get_settings().lender_name
    outcomes: list[Outcome] = []
    to_send: list[DueMessage] = []
    approved: dict[str, list[Contact]] = defaultdict(list)  # per borrower: what this batch lets go
    for row in rows:  # in id order: the caps let the earlier of two rows go first
        try:
            refusal = _refusal(row, rules, as_of, lender=lender, approved=approved[row.borrower_id])
        except Exception as error:
            if aside is None:
                raise
            aside.message(row.id, row.account_id, error)
            continue
        if refusal is not None:
            outcomes.append(refusal)
        else:
            to_send.append(row)
            approved[row.borrower_id].append(
                Contact(as_of, "sms", row.account_id, row.address, message_id=row.id)
            )
    return outcomes, to_send


def _send(provider: SmsProvider, to_send: list[DueMessage], as_of: datetime) -> list[Outcome]:
    """Send the approved rows in one batch, after looking up those an earlier try may have sent."""
    requests = [SmsRequest(r.idempotency_key, r.address, r.template, r.params, r.body) for r in to_send]
    # A row leased before may have reached the provider before its dispatcher died: ask first.
    known: dict[str, SmsResult] = {}
    for row, request in zip(to_send, requests, strict=True):
        if row.attempts > 0:
            found = provider.status(request, row.provider_id)
            if found is not None:
                known[row.idempotency_key] = found
    fresh = [req for req in requests if req.idempotency_key not in known]
    results = provider.send_batch(fresh) if fresh else []
    by_key: dict[str, SmsResult | ProviderError] = {**known}
    by_key.update({req.idempotency_key: res for req, res in zip(fresh, results, strict=True)})
    # Sent "as of" the instant the send-time check approved: for a run as of now that is now, and
    # a replayed or simulated day keeps a timeline that the compliance re-check can trust.
    name = provider.info.name
    return [_outcome(row, by_key[row.idempotency_key], name, as_of) for row in to_send]


def _refusal(
    row: DueMessage, rules: Policy, now: datetime, *, lender: str, approved: list[Contact] | None = None
) -> Outcome | None:
    """The send-time check: the same rules as at decision time (`check_contact`), plus what
    changed since. `approved` holds the rows of the borrower this batch already lets go."""
    if (row.account_stage, row.account_episode) != (row.stage, row.episode):
        return Outcome(
            row.id,
            row.account_id,
            MessageStatus.BLOCKED,
            "stale",
            detail=f"account is now {row.account_stage}",
        )
    if not row.address_valid or not row.address:
        return Outcome(row.id, row.account_id, MessageStatus.BLOCKED, "invalid_number")
    verdict = check_contact(
        request=ContactRequest(
            account_id=row.account_id,
            jurisdiction=row.jurisdiction,
            timezone=row.timezone,
            template=row.template,
            body=row.body,
            lender=row.params.get("lender", lender),
            address=row.address,
            fill=tuple(row.params.items()),
            message_id=row.id,
            stage=row.stage,
            episode=row.episode,
        ),
        state=ContactState(
            holds=row.holds, opted_out=row.opted_out, history=(*row.history, *(approved or ()))
        ),
        policy=rules,
        now=now,
    )
    if verdict.kind is VerdictKind.BLOCK:
        return Outcome(row.id, row.account_id, MessageStatus.BLOCKED, verdict.reason, detail=verdict.detail)
    if verdict.kind is VerdictKind.DEFER:
        return Outcome(
            row.id,
            row.account_id,
            MessageStatus.SCHEDULED,
            verdict.reason,
            not_before=verdict.not_before,
            detail=verdict.detail,
        )
    return None


def _log_refused_numbers(outcomes: list[Outcome], addresses: dict[int, str]) -> None:
    """Tell operations which numbers a provider refused: masked, like every number in a log."""
    refused = [o for o in outcomes if o.invalid_address or (o.reason or "").startswith("opt_out:carrier")]
    if not refused:
        return
    try:
        log: Any = get_run_logger()
    except MissingContextError:  # the task body called directly (`.fn`), outside a run
        log = logging.getLogger("arrears.dispatch")
    for o in refused:
        log.warning("message %s to %s: %s", o.id, mask_phone(addresses.get(o.id, "")), o.reason)


# Provider errors that end a message: the status and the reason each records.
_REFUSED: tuple[tuple[type[ProviderError], MessageStatus, str], ...] = (
    (InvalidAddress, MessageStatus.FAILED, "invalid_number"),
    (OptedOut, MessageStatus.BLOCKED, "opt_out:carrier"),
    (Permanent, MessageStatus.FAILED, "provider:refused"),
)


def _outcome(row: DueMessage, result: SmsResult | ProviderError, provider: str, at: datetime) -> Outcome:
    if isinstance(result, SmsResult):
        status = (
            MessageStatus.DELIVERED
            if result.status == "delivered"
            else (MessageStatus.FAILED if result.status in ("failed", "undelivered") else MessageStatus.SENT)
        )
        return Outcome(
            row.id,
            row.account_id,
            status,
            result.error_code,
            provider=provider,
            provider_id=result.provider_id,
            sent_at=at,
        )
    if isinstance(result, Transient):
        retry_at = at + timedelta(seconds=result.retry_after or 60)
        return Outcome(
            row.id,
            row.account_id,
            MessageStatus.SCHEDULED,
            "provider:busy",
            not_before=retry_at,
            detail=str(result),
        )
    for kind, status, reason in _REFUSED:  # the first that matches: the specific before Permanent
        if isinstance(result, kind):
            return Outcome(
                row.id,
                row.account_id,
                status,
                reason,
                provider=provider,
                invalid_address=row.address if kind is InvalidAddress else None,
                detail=str(result),
            )
    # Unknown outcome (or any other provider error): keep it scheduled; the next lease reconciles
    # it through status() before anything is sent again.
    return Outcome(
        row.id, row.account_id, MessageStatus.SCHEDULED, "provider:unknown", not_before=at, detail=str(result)
    )
