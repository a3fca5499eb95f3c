"""Dispatch: send due outbox rows through the SMS provider, checking compliance again at send time.

Per batch: lease the rows, re-check each (stale stage, holds, opt-out, invalid number, the hour
in the borrower's zone), reconcile rows an earlier try may have sent, send the rest in one
`send_batch`, and record every outcome. Nothing leaves without a verdict of SEND at this instant.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from prefect import task
from prefect.cache_policies import NO_CACHE

from arrears.compliance.contact import VerdictKind, check_contact
from arrears.models import utcnow
from arrears.storage import outbox
from arrears.storage.outbox import DueMessage, Outcome
from arrears.vocabulary import MessageStatus
from integrations.errors import InvalidAddress, OptedOut, Permanent, ProviderError, Transient
from integrations.sms.protocol import SmsRequest, SmsResult
from tasks.database import engine, policy
from tasks.sms import current_sms

__all__ = ["Batch", "plan_dispatch", "dispatch_batch"]

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
    tags=["stage:dispatch", "channel:sms"],
)
def dispatch_batch(batch: Batch, as_of: datetime, cycle_id: int | None) -> dict[str, int]:
    """Send one batch; returns counts by outcome status."""
    provider = current_sms()
    approved = policy().approved_templates
    wall = utcnow()
    with engine().begin() as connection:
        rows = outbox.lease_batch(
            connection, lo=batch.lo, hi=batch.hi, now=as_of, wall=wall, lease_until=wall + LEASE,
            account_id=batch.account_id,
        )

    outcomes: list[Outcome] = []
    to_send: list[DueMessage] = []
    for row in rows:
        refusal = _refusal(row, approved, as_of)
        if refusal is not None:
            outcomes.append(refusal)
        else:
            to_send.append(row)

    name = provider.info.name
    requests = [SmsRequest(r.idempotency_key, r.address, r.template, r.params, r.body) for r in to_send]
    # A row leased before may have reached the provider before its dispatcher died: ask first.
    known: dict[str, SmsResult] = {}
    for row, request in zip(to_send, requests, strict=True):
        if row.attempts > 0:
            found = provider.status(request, row.provider_id)
            if found is not None:
                known[row.idempotency_key] = found
    fresh = [(row, req) for row, req in zip(to_send, requests, strict=True) if row.idempotency_key not in known]
    results = provider.send_batch([req for _, req in fresh]) if fresh else []
    # Sent "as of" the instant the send-time check approved: for a run as of now that is now, and
    # a replayed or simulated day keeps a timeline that the compliance re-check can trust.
    sent_now = as_of
    by_key: dict[str, SmsResult | ProviderError] = {**known}
    by_key.update({req.idempotency_key: res for (_, req), res in zip(fresh, results, strict=True)})
    outcomes += [_outcome(row, by_key[row.idempotency_key], name, sent_now) for row in to_send]

    with engine().begin() as connection:
        outbox.record_outcomes(connection, outcomes=outcomes, at=as_of, cycle_id=cycle_id)
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status.value] = counts.get(o.status.value, 0) + 1
    return counts


def _refusal(row: DueMessage, approved: frozenset[str], now: datetime) -> Outcome | None:
    """The send-time check: the same rules as at decision time, plus what changed since."""
    if (row.account_stage, row.account_episode) != (row.stage, row.episode):
        return Outcome(row.id, row.account_id, MessageStatus.BLOCKED, f"stale: account is now {row.account_stage}")
    if not row.address_valid or not row.address:
        return Outcome(row.id, row.account_id, MessageStatus.BLOCKED, "invalid_number")
    verdict = check_contact(
        holds=row.holds, opted_out=row.opted_out, template=row.template, approved_templates=approved,
        jurisdiction=row.jurisdiction, timezone=row.timezone, now=now,
    )
    if verdict.kind is VerdictKind.BLOCK:
        return Outcome(row.id, row.account_id, MessageStatus.BLOCKED, verdict.reason)
    if verdict.kind is VerdictKind.DEFER:
        return Outcome(row.id, row.account_id, MessageStatus.SCHEDULED, verdict.reason, not_before=verdict.not_before)
    return None


def _outcome(row: DueMessage, result: SmsResult | ProviderError, provider: str, at: datetime) -> Outcome:
    if isinstance(result, SmsResult):
        status = MessageStatus.DELIVERED if result.status == "delivered" else (
            MessageStatus.FAILED if result.status in ("failed", "undelivered") else MessageStatus.SENT
        )
        return Outcome(row.id, row.account_id, status, result.error_code, provider=provider,
                       provider_id=result.provider_id, sent_at=at)
    if isinstance(result, Transient):
        retry_at = at + timedelta(seconds=result.retry_after or 60)
        return Outcome(row.id, row.account_id, MessageStatus.SCHEDULED, f"provider busy: {result}", not_before=retry_at)
    if isinstance(result, InvalidAddress):
        return Outcome(row.id, row.account_id, MessageStatus.FAILED, f"invalid_number: {result}", provider=provider,
                       invalid_address=row.address)
    if isinstance(result, OptedOut):
        return Outcome(row.id, row.account_id, MessageStatus.BLOCKED, f"opt_out at carrier: {result}", provider=provider)
    if isinstance(result, Permanent):
        return Outcome(row.id, row.account_id, MessageStatus.FAILED, str(result), provider=provider)
    # Unknown outcome (or any other provider error): keep it scheduled; the next lease reconciles
    # it through status() before anything is sent again.
    return Outcome(row.id, row.account_id, MessageStatus.SCHEDULED, f"unknown outcome: {result}", not_before=at)


