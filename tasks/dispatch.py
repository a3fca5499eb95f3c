"""Dispatch: send due outbox rows through the SMS provider, checking compliance again at send time.

Before any batch, the rows an earlier (crashed) try may have sent are looked up at the provider
(`reconcile_in_doubt`): a send found there is recorded as sent, and so counts against the caps of
every verdict that follows; the others are released as never sent. Lookups go by the provider id
or by our own reference (the idempotency key, and `ref`, derived from it, in every request),
never by matching text.

Per batch: lease the rows, look up first those still in doubt (a retried batch), re-check each in
id order (stale stage, invalid number, then every rule of `check_contact` on the stored body:
holds, opt-out, template, content, the window in the borrower's zones, the caps counted from the
message log plus what this batch already approved or found sent), send the rest in one
`send_batch`, and record every outcome with the rule that decided it. Nothing leaves without a
verdict of SEND at this instant.

A batch in which the provider accepted nothing and every send failed as not executed or unknown
is an outage: its messages wait, scheduled, with the provider named in their reason
(`provider:<name>:outage`), and the batch says so in its counts; the flow then stops sending,
marks the rest waiting, and makes the outage loud (DESIGN §5).
"""

import hashlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.exceptions import MissingContextError

from arrears.compliance.caps import Contact
from arrears.compliance.contact import ContactRequest, ContactState, VerdictKind, check_contact
from arrears.compliance.report import recheck_sends
from arrears.masking import install_log_masking, mask_phone
from arrears.models import utcnow
from arrears.policy import Policy
from arrears.settings import get_settings
from arrears.storage import compliance, outbox, read_only
from arrears.storage.outbox import DueMessage, Outcome
from arrears.vocabulary import MessageStatus
from integrations.errors import (
    ConfigError,
    InvalidAddress,
    OptedOut,
    Permanent,
    ProviderError,
    Transient,
)
from integrations.sms.protocol import SmsProvider, SmsRequest, SmsResult
from tasks.cycle import crash, crash_due
from tasks.database import engine, policy
from tasks.isolation import SetAside, without_quarantined
from tasks.providers import ProviderConfig, current_sms, sms_config, sms_for
from tasks.workers import in_worker

# Every process that dispatches masks numbers in its log records, Prefect's run logs included.
install_log_masking()

__all__ = [
    "Batch",
    "Dispatched",
    "announce_outage",
    "dispatch_batch",
    "mark_outage_waiting",
    "outage_reason",
    "plan_dispatch",
    "reconcile_in_doubt",
    "send_batch",
]

LEASE = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Batch:
    index: int
    lo: int
    hi: int | None
    account_id: str | None = None  # only this account's messages (the single-account path)
    owner: str | None = None  # the cycle or dispatch run that leases the rows


@task(name="plan-dispatch", cache_policy=NO_CACHE)
def plan_dispatch(
    as_of: datetime,
    size: int,
    account_id: str | None = None,
    owner: str | None = None,
    first: int | None = None,
) -> list[Batch]:
    """The due rows in batches of at most `size`; the first of at most `first`, where given."""
    with read_only(engine()) as connection:
        ranges = outbox.due_batches(connection, now=as_of, size=size, account_id=account_id, first=first)
    return [Batch(i, lo, hi, account_id, owner) for i, (lo, hi) in enumerate(ranges)]


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
    """Send one batch; returns counts by outcome status.

    The body runs in a worker process while the run has them (`tasks.workers`), with a provider
    of the same config: leasing, checking and recording a batch is Python and SQLite, and in the
    run's own process each SQLite call waits for the GIL behind the bureau pulls and the other
    batches' threads. The task run, its retries and its counts stay here."""
    done = in_worker(send_batch, batch, as_of, cycle_id, sms_config(), crash_due("dispatch"))
    _log_refused_numbers(done.refused)
    return done.counts


@dataclass(frozen=True, slots=True)
class Dispatched:
    counts: dict[str, int]
    refused: list[tuple[int, str, str]]  # (message id, masked number, reason): for the run's log


def send_batch(
    batch: Batch, as_of: datetime, cycle_id: int | None, config: ProviderConfig, drill: bool = False
) -> Dispatched:
    """The body of `dispatch_batch`: lease, look up what is in doubt, check, send, record. Takes
    only picklable values, to run in a worker process."""
    provider = sms_for(config)  # before the lease: without a provider, nothing is leased
    rules = policy()
    # Messages (and accounts) in quarantine wait for their retry; one whose check raises joins them.
    rows = without_quarantined(_lease(batch, as_of, rules))
    found, rows = _look_up_first(provider, rows, as_of)
    aside = SetAside("dispatch")
    outcomes, to_send = _check(rows, rules, as_of, aside, found=found)
    sent = _send(provider, to_send, as_of)
    outage = _outage(sent, provider.info.name)
    outcomes += found + sent
    if drill:  # the crash drill's pass (ARREARS_CRASH_AT=dispatch:n): sent, not yet recorded
        crash()
    with engine().begin() as connection:
        outbox.record_outcomes(connection, outcomes=outcomes, at=as_of, cycle_id=cycle_id)
        quarantined = aside.record(connection, at=as_of, cycle_id=cycle_id)
    _recheck_recorded(outcomes, as_of, cycle_id, rules)
    counts: dict[str, int] = {"quarantined": quarantined} if quarantined else {}
    for o in outcomes:
        counts[o.status.value] = counts.get(o.status.value, 0) + 1
    return Dispatched(counts | outage, _refused_numbers(outcomes, {r.id: r.address for r in rows}))


def _lease(batch: Batch, as_of: datetime, rules: Policy) -> list[DueMessage]:
    """Take the batch's due rows for a while, with the message history their caps count: the
    lease in a write transaction of its own, the reading after it, holding no write lock (on
    SQLite, the other batches and the bureau pulls wait for every write transaction)."""
    wall = utcnow()
    with engine().begin() as connection:
        claimed = outbox.claim_batch(
            connection,
            lo=batch.lo,
            hi=batch.hi,
            now=as_of,
            wall=wall,
            lease_until=wall + LEASE,
            account_id=batch.account_id,
            owner=batch.owner,
        )
    with read_only(engine()) as connection:
        return outbox.load_batch(connection, claimed, now=as_of, lookback=rules.longest_cap_window())


def _check(
    rows: list[DueMessage],
    rules: Policy,
    as_of: datetime,
    aside: SetAside | None = None,
    found: Sequence[Outcome] = (),
) -> tuple[list[Outcome], list[DueMessage]]:
    """The send-time verdicts: the outcomes of the rows refused (blocked or deferred), and the
    rows that may go. `found` are sends of this batch found at the provider: they count. A row
    whose check raises is set `aside` (quarantined), neither sent nor refused."""
    lender = get_settings().lender_name
    outcomes: list[Outcome] = []
    to_send: list[DueMessage] = []
    approved: dict[str, list[Contact]] = defaultdict(list)  # per borrower: what this batch lets go
    for o in found:
        if o.sent_at is not None and o.borrower_id:
            approved[o.borrower_id].append(
                Contact(o.sent_at, "sms", o.account_id, o.address, message_id=o.id)
            )
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
    """Send the approved rows in one batch (those in doubt were looked up before the verdicts)."""
    requests = [_request(r) for r in to_send]
    results = provider.send_batch(requests) if requests else []
    # Sent "as of" the instant the send-time check approved: for a run as of now that is now, and
    # a replayed or simulated day keeps a timeline that the compliance re-check can trust.
    name = provider.info.name
    return [_outcome(row, result, name, as_of) for row, result in zip(to_send, results, strict=True)]


def reference(idempotency_key: str) -> str:
    """Our own reference for a message, derived from its idempotency key: it travels in every
    request (template parameter `ref`) so that a send whose answer was lost can be found by it."""
    return "r" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:20]


def _request(row: Any) -> SmsRequest:
    params = {**(row.params or {}), "ref": reference(row.idempotency_key)}
    return SmsRequest(row.idempotency_key, row.address, row.template, params, row.body)


def _found(row: Any, result: SmsResult, provider: str, as_of: datetime, borrower_id: str = "") -> Outcome:
    """A send an earlier try made, found at the provider: recorded as sent, as of this instant."""
    return replace(
        _outcome(row, result, provider, as_of),
        detail="found at the provider: an earlier try sent it",
        borrower_id=borrower_id,
        address=row.address,
    )


def _look_up_first(
    provider: SmsProvider, rows: list[DueMessage], as_of: datetime
) -> tuple[list[Outcome], list[DueMessage]]:
    """Rows in doubt (a retried batch) are looked up before any verdict: the sends found, and
    the rows left to judge (those the provider never saw). A failed lookup keeps its row in doubt."""
    found: list[Outcome] = []
    rest: list[DueMessage] = []
    for row in rows:
        if not row.in_doubt:
            rest.append(row)
            continue
        try:
            result = provider.status(_request(row), row.provider_id)
        except ConfigError:
            raise
        except ProviderError as failed:
            found.append(
                Outcome(
                    row.id,
                    row.account_id,
                    MessageStatus.SCHEDULED,
                    outbox.UNKNOWN,
                    not_before=as_of,
                    detail=str(failed),
                )
            )
            continue
        if result is None:
            rest.append(row)
        else:
            found.append(_found(row, result, provider.info.name, as_of, row.borrower_id))
    return found, rest


@task(name="reconcile-in-doubt", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def reconcile_in_doubt(as_of: datetime, cycle_id: int | None, owner: str) -> dict[str, int]:
    """Before any verdict: take over the leases of dead runs, look up every row they (or an
    unknown outcome) may have sent, record the sends found, release the rest as never sent.

    Runs under the database's run lock, so no other cycle or dispatch is sending meanwhile."""
    with engine().begin() as connection:
        outbox.expire_dead_leases(connection, owner=owner)
        rows = outbox.in_doubt(connection, wall=utcnow())
    counts = {"in_doubt": len(rows), "found_sent": 0, "lookups_failed": 0}
    if not rows:
        return counts
    provider = current_sms()

    def look_up(row: Any) -> SmsResult | ProviderError | None:
        try:
            return provider.status(_request(row), row.provider_id)
        except ConfigError:
            raise
        except ProviderError as failed:
            return failed

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(look_up, rows))
    found = [
        _found(row, result, provider.info.name, as_of)
        for row, result in zip(rows, results, strict=True)
        if isinstance(result, SmsResult)
    ]
    never = [row.id for row, result in zip(rows, results, strict=True) if result is None]
    with engine().begin() as connection:
        outbox.record_outcomes(connection, outcomes=found, at=as_of, cycle_id=cycle_id)
        outbox.clear_doubt(connection, ids=never)
    _recheck_recorded(found, as_of, cycle_id, policy())
    counts["found_sent"] = len(found)
    counts["lookups_failed"] = sum(isinstance(r, ProviderError) for r in results)
    return counts


def _recheck_recorded(outcomes: list[Outcome], as_of: datetime, cycle_id: int | None, rules: Policy) -> None:
    """Re-check a cycle's sends just recorded against every rule but the caps, and record what
    that found: the cycle's compliance report then reads these instead of every body again
    (`arrears.compliance.report`). A re-check that fails is logged and left to the report,
    which then re-checks every send of the cycle itself."""
    ids = [o.id for o in outcomes if o.sent_at is not None]
    if cycle_id is None or not ids:
        return
    try:
        with read_only(engine()) as connection:
            checked = recheck_sends(connection, ids, policy=rules, lender=get_settings().lender_name)
        with engine().begin() as connection:
            compliance.record_check(
                connection,
                at=as_of,
                cycle_id=cycle_id,
                ids=ids,
                sent_checked=checked.sent_checked,
                violations=[v.as_json() for v in checked.violations],
            )
    except Exception:
        _logger().warning("re-check of %d sends failed; the report re-checks them", len(ids), exc_info=True)


def outage_reason(provider: str) -> str:
    return f"provider:{provider}:outage"


def _outage(sent: list[Outcome], provider: str) -> dict[str, int]:
    """An outage: something was sent to the provider, it accepted nothing, and every failure was
    "not executed" or "unknown" (connection refused, timeouts, 503s, 5xx). The rows not executed
    are relabelled to wait for the provider; those unknown stay in doubt, to be looked up."""
    if not sent or any(o.sent_at is not None or o.status is not MessageStatus.SCHEDULED for o in sent):
        return {}
    for n, o in enumerate(sent):
        if o.reason != outbox.UNKNOWN:
            sent[n] = Outcome(
                o.id,
                o.account_id,
                o.status,
                outage_reason(provider),
                not_before=o.not_before,
                detail=o.detail,
            )
    return {"outage": 1, "waiting": len(sent)}


@task(name="mark-outage-waiting", cache_policy=NO_CACHE)
def mark_outage_waiting(as_of: datetime, provider: str, account_id: str | None = None) -> int:
    """The rows an outage kept from being tried: they wait, scheduled, with the provider as reason."""
    with engine().begin() as connection:
        return outbox.mark_waiting(
            connection, now=as_of, reason=outage_reason(provider), account_id=account_id
        )


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


def announce_outage(outage: dict[str, Any], as_of: datetime) -> None:
    """Make an outage loud for operations: a warning in the run's log and an
    `arrears.provider.outage` event, for an automation to alert on (DESIGN §9)."""
    provider, waiting = outage["provider"], outage["waiting"]
    _logger().warning("SMS provider %s could not be reached: %d messages wait", provider, waiting)
    emit_event(
        "arrears.provider.outage",
        resource={
            "prefect.resource.id": f"arrears.provider.sms.{provider}",
            "prefect.resource.name": provider,
        },
        payload={"kind": "sms", "provider": provider, "waiting": waiting, "as_of": as_of.isoformat()},
    )


def _logger() -> Any:
    try:
        return get_run_logger()
    except MissingContextError:  # outside a run (a task body called with `.fn`)
        return logging.getLogger("arrears.dispatch")


def _refused_numbers(outcomes: list[Outcome], addresses: dict[int, str]) -> list[tuple[int, str, str]]:
    """The numbers a provider refused, masked, like every number in a log."""
    return [
        (o.id, mask_phone(addresses.get(o.id, "")), o.reason or "")
        for o in outcomes
        if o.invalid_address or (o.reason or "").startswith("opt_out:carrier")
    ]


def _log_refused_numbers(refused: list[tuple[int, str, str]]) -> None:
    """Tell operations which numbers a provider refused (masked), in the run's log."""
    if not refused:
        return
    log = _logger()
    for message_id, number, reason in refused:
        log.warning("message %s to %s: %s", message_id, number, reason)


# Provider errors that end a message: the status and the reason each records.
_REFUSED: tuple[tuple[type[ProviderError], MessageStatus, str], ...] = (
    (InvalidAddress, MessageStatus.FAILED, "invalid_number"),
    (OptedOut, MessageStatus.BLOCKED, "opt_out:carrier"),
    (Permanent, MessageStatus.FAILED, "provider:refused"),
)


def _outcome(row: Any, result: SmsResult | ProviderError, provider: str, at: datetime) -> Outcome:
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
    # Unknown outcome (or any other provider error): keep it scheduled and in doubt; the next
    # try looks it up through status() before any verdict.
    return Outcome(
        row.id, row.account_id, MessageStatus.SCHEDULED, outbox.UNKNOWN, not_before=at, detail=str(result)
    )
