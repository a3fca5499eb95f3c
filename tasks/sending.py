"""One dispatch batch: lease the due rows, re-check each at send time, send, record.

Per batch: lease the rows, look up first those still in doubt (a retried batch), re-check each in
id order (stale stage, invalid number, then every rule of `check_contact` on the stored body:
holds, opt-out, template, content, the window in the borrower's zones, the caps counted from the
message log plus what this batch already approved or found sent), send the rest in one
`send_batch`, and record every outcome with the rule that decided it. Nothing leaves without a
verdict of SEND at this instant.

Which instant: the send time counts (Reg F 1006.6(b)(1)(i) commentary: "for SMS and email, the
send time counts"). A live run (`live`: the cycle or the dispatch without an `as_of`) checks at
the wall clock: the batch at its start, and each round again when the clock has moved
`RECHECK_AFTER` since (a provider's rate limit can hold a day's dispatch for hours, past the end
of a borrower's window), each send recorded at the instant of its round. So does every run
through a provider whose texts reach phones: a day replayed as of yesterday morning (a missed
cycle run late) sends its texts tonight, and they are checked tonight. Only a simulated provider
(`ProviderInfo.simulated`: the sandbox) lets a run as of a given time (a simulated day, the
benchmark) check and record every send at that time, a timeline the compliance re-check trusts.

A batch in which the provider accepted nothing and every send failed as not executed or unknown
is an outage: its messages wait, scheduled, with the provider named in their reason
(`provider:<name>:outage`), and the batch says so in its counts (`tasks.dispatch` then stops). A
recipient held back by flow control is not one of those failures: the provider answered.

Apart from the Prefect tasks (`tasks.dispatch`): `send_batch` runs in the cycle's worker
processes (`tasks.workers`), which import this module and never Prefect.
"""

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from arrears.compliance.caps import Contact
from arrears.compliance.contact import ContactRequest, ContactState, VerdictKind, check_contact
from arrears.compliance.report import recheck_sends
from arrears.masking import mask_phone
from arrears.models import utcnow
from arrears.policy import Policy
from arrears.processes import collection_paused
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
    RecipientThrottled,
    Transient,
)
from integrations.sms.protocol import SmsProvider, SmsRequest, SmsResult
from tasks.database import engine, installation, policy
from tasks.drill import crash
from tasks.isolation import SetAside, without_quarantined
from tasks.logs import run_logger
from tasks.providers import ProviderConfig, sms_for

__all__ = [
    "LEASE",
    "PROVIDER_BUSY",
    "RECIPIENT_THROTTLED",
    "Batch",
    "Dispatched",
    "found_outcome",
    "look_up",
    "outage_reason",
    "recheck_recorded",
    "reference",
    "request_of",
    "send_batch",
    "travelling_key",
    "went_at",
]

LEASE = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Batch:
    index: int
    lo: int
    hi: int | None
    account_id: str | None = None  # only this account's messages (the single-account path)
    owner: str | None = None  # the cycle or dispatch run that leases the rows


@dataclass(frozen=True, slots=True)
class Dispatched:
    counts: dict[str, int]
    refused: list[tuple[int, str, str]]  # (message id, masked number, reason): for the run's log


def send_batch(
    batch: Batch,
    as_of: datetime,
    cycle_id: int | None,
    config: ProviderConfig,
    drill: bool = False,
    live: bool = False,
) -> Dispatched:
    """The body of `dispatch_batch`: lease, look up what is in doubt, check, send, record. Takes
    only picklable values, to run in a worker process. `live`: checked at the wall clock, not
    `as_of` (the module's docstring)."""
    with collection_paused():  # the batch's rows and outcomes live until they are recorded
        return _send_batch(batch, as_of, cycle_id, config, drill, live)


def _send_batch(
    batch: Batch, as_of: datetime, cycle_id: int | None, config: ProviderConfig, drill: bool, live: bool
) -> Dispatched:
    provider = sms_for(config)  # before the lease: without a provider, nothing is leased
    rules = policy()
    if not provider.info.simulated:  # its texts reach phones now, whatever the run is as of
        as_of, live = utcnow(), True
    elif live:  # the batch may start minutes after the run's instant (the advance, earlier batches)
        as_of = max(as_of, utcnow())
    # Messages (and accounts) in quarantine wait for their retry; one whose check raises joins them.
    rows = without_quarantined(_lease(batch, as_of, rules))
    ours = installation()
    found, rows = _look_up_first(provider, rows, as_of, ours)
    aside = SetAside("dispatch")
    outcomes, to_send = _check(rows, rules, as_of, aside, found=found)
    stopped, sent = _send(provider, to_send, as_of, rules, ours, live=live)
    outage = _outage(sent, provider.info.name)
    outcomes += found + stopped + sent
    if drill:  # the crash drill's pass (ARREARS_CRASH_AT=dispatch:n): sent, not yet recorded
        crash()
    with engine().begin() as connection:
        outbox.record_outcomes(
            connection,
            outcomes=outcomes,
            at=as_of,
            cycle_id=cycle_id,
            unreachable_after=rules.segmentation.unreachable_after_failures,
        )
        quarantined = aside.record(connection, at=as_of, cycle_id=cycle_id)
    recheck_recorded(outcomes, as_of, cycle_id, rules)
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


# Rows handed to the provider between two reads of what stops a send (`_send`): the window in
# which an opt-out acknowledged by the webhook cannot stop a text is one round (~0.1 s at the
# benchmark's rate), not a whole batch (seconds), for three indexed queries a round.
SEND_ROUND = 1_000
# In a live run, the wall clock's move since the verdicts after which a round checks its rows again
# (`_send`): a window ends, or a holiday begins at midnight, while a batch waits on the provider.
RECHECK_AFTER = timedelta(seconds=30)


def _send(
    provider: SmsProvider,
    to_send: list[DueMessage],
    as_of: datetime,
    rules: Policy,
    installation: str,
    *,
    live: bool = False,
) -> tuple[list[Outcome], list[Outcome]]:
    """Send the approved rows (those in doubt were looked up before the verdicts), a round at a
    time. Before each round what stops a send is read again: an opt-out (STOP), a hold or a stage
    change committed while the batch was checked, or while earlier rounds went out, blocks what
    has not gone yet. In a live run each round goes at the wall clock, and once that has moved
    `RECHECK_AFTER` since the verdicts, every rule is checked again at it: a window that has
    ended defers what has not gone. Returns the rows so stopped and the outcomes of the sends."""
    step = max(SEND_ROUND, provider.info.batch_size)
    lender = get_settings().lender_name
    stopped: list[Outcome] = []
    sent: list[Outcome] = []
    checked = as_of  # when the verdicts the rows go on were given
    approved: dict[str, list[Contact]] = defaultdict(list)  # per borrower: what earlier rounds sent
    for start in range(0, len(to_send), step):
        part = to_send[start : start + step]
        now = max(as_of, utcnow()) if live else as_of
        again = now - checked >= RECHECK_AFTER
        with read_only(engine()) as connection:
            changed = outbox.changed_since_loaded(connection, part)
        going = part
        if changed or again:
            going = []
            for row in part:
                late = None
                if again:  # every rule at the clock's instant, counting what this batch sent
                    current = changed.get(row.id, row)
                    late = _refusal(current, rules, now, lender=lender, approved=approved[row.borrower_id])
                elif row.id in changed:
                    late = _refusal(changed[row.id], rules, now, lender=lender)
                    late = late if late is not None and late.status is MessageStatus.BLOCKED else None
                if late is not None:
                    stopped.append(late)
                    continue
                going.append(row)
                if again:  # the next row of the borrower counts it against the caps
                    approved[row.borrower_id].append(
                        Contact(now, "sms", row.account_id, row.address, message_id=row.id)
                    )
        if live and not again:  # a later round's re-check counts them against the caps
            for row in going:
                approved[row.borrower_id].append(
                    Contact(now, "sms", row.account_id, row.address, message_id=row.id)
                )
        checked = now if again else checked
        requests = [request_of(r, installation) for r in going]
        results = provider.send_batch(requests) if requests else []
        # Sent "as of" the instant the round was approved at: the wall clock's in a live run, the
        # run's own in a replayed or simulated day, whose timeline the compliance re-check trusts.
        name = provider.info.name
        sent += [_outcome(row, result, name, now) for row, result in zip(going, results, strict=True)]
    return stopped, sent


def reference(idempotency_key: str) -> str:
    """Our own reference for a message, derived from its idempotency key: it travels in every
    request (template parameter `ref`) so that a send whose answer was lost can be found by it."""
    return "r" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:20]


def travelling_key(idempotency_key: str, installation: str | None) -> str:
    """A message's key as it travels to the provider (`request_of`)."""
    return idempotency_key if installation is None else f"{installation}-{idempotency_key}"


def request_of(row: Any, installation: str | None) -> SmsRequest:
    """The request that carries an outbox row to the provider. Its key, and the reference derived
    from it, carry the installation id (DESIGN §3): two databases texting the same account,
    stage and episode through one provider account never find each other's send for their own
    after a crash (a borrower left untexted). `None`: the bare key, as keys travelled before."""
    key = travelling_key(row.idempotency_key, installation)
    params = {**(row.params or {}), "ref": reference(key)}
    return SmsRequest(key, row.address, row.template, params, row.body, row.created_at)


def look_up(provider: SmsProvider, row: Any, installation: str) -> SmsResult | None:
    """A row an earlier try may have sent, at the provider: by its provider id, else by the key
    and reference it travels under; one that may have gone before keys carried the installation
    (an upgrade with rows in doubt) is looked for under its bare key too."""
    found = provider.status(request_of(row, installation), row.provider_id)
    if found is None and not row.provider_id:
        found = provider.status(request_of(row, None), None)
    return found


def went_at(result: SmsResult, as_of: datetime, *, simulated: bool) -> datetime:
    """When a send found at the provider went, as its record says. A simulated provider's day is
    the run's own (`as_of`, the timeline the compliance re-check trusts); through one whose texts
    reach phones, the hour it went is what the audit trail and the re-check must hold, whatever
    the rerun is as of (a morning long past): the vendor's, never later than now."""
    return as_of if simulated else min(result.accepted_at, utcnow())


def found_outcome(
    row: Any, result: SmsResult, provider: str, as_of: datetime, borrower_id: str = ""
) -> Outcome:
    """A send an earlier try made, found at the provider: recorded as sent, as of this instant."""
    return replace(
        _outcome(row, result, provider, as_of),
        detail="found at the provider: an earlier try sent it",
        borrower_id=borrower_id,
        address=row.address,
    )


def _look_up_first(
    provider: SmsProvider, rows: list[DueMessage], as_of: datetime, installation: str
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
            result = look_up(provider, row, installation)
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
            went = went_at(result, as_of, simulated=provider.info.simulated)
            found.append(found_outcome(row, result, provider.info.name, went, row.borrower_id))
    return found, rest


def recheck_recorded(outcomes: list[Outcome], as_of: datetime, cycle_id: int | None, rules: Policy) -> None:
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
        run_logger("arrears.dispatch").warning(
            "re-check of %d sends failed; the report re-checks them", len(ids), exc_info=True
        )


def outage_reason(provider: str) -> str:
    return f"provider:{provider}:outage"


# Why a message the provider did not execute waits: the provider is busy or down (throttled, 503s,
# no connection), or it holds back only this recipient (flow control per number), as it answers.
PROVIDER_BUSY = "provider:busy"
RECIPIENT_THROTTLED = "provider:recipient_throttled"


def _outage(sent: list[Outcome], provider: str) -> dict[str, int]:
    """An outage: something was sent to the provider, it accepted nothing, and every failure was
    "not executed" or "unknown" (connection refused, timeouts, 503s, 5xx). The rows not executed
    are relabelled to wait for the provider; those unknown stay in doubt, to be looked up.

    A recipient held back by flow control is none of those: the provider answered about that
    number, so it is up, and a batch of such rows (one borrower's texts) is no outage (DESIGN §5
    keeps the loud path, exit code and event included, for a provider that is down)."""
    down = (PROVIDER_BUSY, outbox.UNKNOWN)  # what a provider down answers, or fails to
    if not sent or any(
        o.sent_at is not None or o.status is not MessageStatus.SCHEDULED or o.reason not in down for o in sent
    ):
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
            region=row.region,
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


def _refused_numbers(outcomes: list[Outcome], addresses: dict[int, str]) -> list[tuple[int, str, str]]:
    """The numbers a provider refused, masked, like every number in a log."""
    return [
        (o.id, mask_phone(addresses.get(o.id, "")), o.reason or "")
        for o in outcomes
        if o.invalid_address or (o.reason or "").startswith("opt_out:carrier")
    ]


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
            RECIPIENT_THROTTLED if isinstance(result, RecipientThrottled) else PROVIDER_BUSY,
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
                # errors.OptedOut: recorded as the borrower's STOP (the law binds the lender)
                opted_out=row.address if kind is OptedOut else None,
                detail=str(result),
            )
    # Unknown outcome (or any other provider error): keep it scheduled and in doubt; the next
    # try looks it up through status() before any verdict.
    return Outcome(
        row.id, row.account_id, MessageStatus.SCHEDULED, outbox.UNKNOWN, not_before=at, detail=str(result)
    )
