"""Data access for delivery reports: a provider tells us what became of a message we sent.

Every function takes the caller's connection and does not commit (the task owns the
transaction). A report told twice changes nothing the second time: the state it asks for is
already there. A delivered or failed report about no message of ours (yet) is never refused:
it is kept once as an early report, and in the audit trail for operators. A vendor may report
within a second of taking a message, before dispatch has recorded the send (half of a live
cycle's receipts did: benchmarks/receipts.py --live), and `apply_early_reports` applies it once
the send is recorded. One whose send is never recorded (a message of another system's, a send
lost in a crash before its id was written, whose receipt the lookup sweep then asks about) is
waited for `EARLY_REPORT_KEPT` (7 days), then given up by `expire_early_reports`: deleted, and
kept in the audit trail as an `expired_report`, which `arrears callbacks list` shows, so the table
holds a week of them at most rather than every one ever pushed.

A report that the recipient opted out at the carrier (Twilio's 21610) is no failed delivery: the
number works, its owner texted STOP. It is recorded as a STOP is (`record_carrier_opt_out`, the
webhook's own `record_opt_out`), whether or not its send is recorded yet, and never counts
towards marking the number unreachable.

Nor does a failure the vendor says is about our message, our sender or our account rather than
the number (`sender_fault`: Twilio's 30007 content filtered, 30034 an unregistered sender,
Aliyun's template and signature codes…). Every borrower's number fails alike until a person
changes the template or the sender: counted, three days of it would mark every number
unreachable and send every borrower to skip tracing, towards third parties. The message is
failed with the vendor's code (its `reason`, which the reports show) and the number's count of
failures in a row is left as it was, neither raised nor reset. Since such a failure marks nothing,
nothing else would stop it either: `tally_reports` counts them, by provider, over a window of the
audit trail, and `failing_senders` is the rule that finds a run of them, for the cycle to make
it loud (`tasks.receipts`) and `arrears report` to show it.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, literal, select, update

from arrears.masking import mask_phone
from arrears.storage.bulk import among
from arrears.storage.inbound import Inbound, InboundRecorded, record_opt_out
from arrears.storage.tables import account, audit, contact, early_report, message
from arrears.vocabulary import Channel, InvalidBecause, MessageStatus

__all__ = [
    "EARLY_REPORT_KEPT",
    "EXPIRED_REPORT",
    "SENDER_FAULT_WINDOW",
    "UNMATCHED_REPORT",
    "ReportTally",
    "ReportsApplied",
    "SenderFaults",
    "StatusReport",
    "apply_delivery_reports",
    "apply_early_reports",
    "expire_early_reports",
    "failing_senders",
    "record_carrier_opt_out",
    "sender_fault_templates",
    "sender_faults_line",
    "tally_reports",
]

UNMATCHED_REPORT = "unmatched_report"  # audit kind: a delivery report about no message of ours
EXPIRED_REPORT = "expired_report"  # audit kind: an early report whose send was never recorded
# How long an early report waits for its send. Dispatch records a batch's sends seconds after the
# vendor took them, or, after a crash, at the next run's reconciliation (minutes; a day at worst):
# a week is well past both, and past the lookup sweep's horizon (tasks.receipts: 3 days).
EARLY_REPORT_KEPT = timedelta(days=7)
SOURCE = "webhook"  # where the reports recorded here came from

# A report moves a message forward only: sent → delivered | failed. Both ends are final, so a
# late or repeated `sent` (or a `delivered` after `failed`) changes nothing. Rows that are still
# scheduled are left to dispatch, which holds their lease and reconciles them itself.
_MOVES_FROM: dict[MessageStatus, tuple[str, ...]] = {
    MessageStatus.DELIVERED: (MessageStatus.SENT.value,),
    MessageStatus.FAILED: (MessageStatus.SENT.value,),
}


@dataclass(frozen=True, slots=True)
class StatusReport:
    """One delivery report in our words (the task translates the provider's `DeliveryReport`)."""

    provider_id: str
    status: MessageStatus  # SENT, DELIVERED or FAILED
    at: datetime
    error_code: str | None = None
    vendor_status: str | None = None
    number_cannot_text: bool = False  # the vendor says the number cannot take texts at all
    opted_out: bool = False  # the vendor says the recipient opted out at the carrier (STOP)
    sender_fault: bool = False  # the vendor says a failure is our message's or sender's, not the number's
    address: str | None = field(default=None, repr=False)  # the number it went to, if the vendor says


@dataclass(slots=True)
class ReportsApplied:
    changed: list[int] = field(default_factory=list)  # message ids whose status moved
    unchanged: int = 0  # known messages already at this status or past it
    unmatched: list[str] = field(default_factory=list)  # provider ids of no message of ours (yet)
    foreign: int = 0  # reports the provider says another system's messages are about: not applied


def apply_delivery_reports(
    connection: Connection,
    *,
    provider: str,
    reports: Sequence[StatusReport],
    unreachable_after: int | None = None,
) -> ReportsApplied:
    """Move each reported message forward (never back), audit each move, count the rest.

    The move is one conditional UPDATE, so two copies of a report racing each other move the
    message once. A failure counts against the number (`ContactPoint.failures`: consecutive
    failed deliveries); a delivery resets the count. A delivered or failed report about no message
    of ours is kept, once per id and status, as an early report and for operators (an
    `unmatched_report` audit event without an account); the webhook acknowledges it all the same,
    since a refusal only makes the vendor push it again.

    A number whose last `unreachable_after` deliveries failed (the policy's
    `segmentation.unreachable_after_failures`), or whose one failure the vendor says is about the
    number itself (`number_cannot_text`: a landline), is marked invalid: a dead number (用户停机,
    Twilio's 30003) is sent nothing more, and a borrower left without a working one is skip-traced.
    A failure that is our message's or sender's (`sender_fault`) counts neither way.
    """
    result = ReportsApplied()
    unmatched: list[StatusReport] = []
    for report in reports:
        moved = _move(connection, provider, report)
        if report.opted_out:  # the number's opt-out, whether or not its send is recorded yet
            numbers = {report.address} if report.address else {row.address for row in moved}
            for number in sorted(n for n in numbers if n):
                record_carrier_opt_out(
                    connection,
                    address=number,
                    at=report.at,
                    provider=provider,
                    why=report.error_code,
                    callback_id=f"{provider}:{report.provider_id}:opted-out",
                )
        if not moved:
            known = connection.execute(
                select(func.count())
                .select_from(message)
                .where(message.c.provider == provider, message.c.provider_id == report.provider_id)
            ).scalar_one()
            if known:
                result.unchanged += 1
            else:
                result.unmatched.append(report.provider_id)
                unmatched.append(report)
            continue
        failed = report.status is MessageStatus.FAILED
        ours = failed and report.sender_fault  # our message's or sender's fault: not the number's
        why = f": {report.error_code or report.vendor_status}" if failed else ""
        if ours:
            why += ", a fault of our message or sender, not counted against the number"
        events = []
        for row in moved:
            result.changed.append(row.id)
            # an opt-out says the number works, a fault of ours says nothing of it: neither counts
            if not report.opted_out and not ours:
                _count_delivery(connection, row.account_id, row.address, failed=failed)
            data: dict[str, Any] = {
                "message_id": row.id,
                "status": report.status.value,
                "provider_id": report.provider_id,
                "error_code": report.error_code,
                "vendor_status": report.vendor_status,
                "source": SOURCE,
            }
            events.append(
                {
                    "account_id": row.account_id,
                    "at": report.at,
                    "kind": "message",
                    "actor": provider,
                    "detail": f"message {row.id} {report.status.value}{why} (delivery report)",
                    "data": (data | {"sender_fault": True}) if ours else data,
                }
            )
            after = 1 if report.number_cannot_text else unreachable_after
            # after the failure's own event: the number is marked for it (an opt-out marks nothing)
            if failed and after and not report.opted_out and not ours:
                events += _unreachable(connection, row.account_id, row.address, after, report)
        connection.execute(audit.insert(), events)
    _record_unmatched(connection, provider, unmatched)
    return result


def record_carrier_opt_out(
    connection: Connection,
    *,
    address: str,
    at: datetime,
    provider: str,
    why: str | None,
    callback_id: str,
) -> InboundRecorded:
    """The provider says `address` opted out at the carrier (refused a send, or failed a delivery,
    with Twilio's 21610): recorded exactly as the borrower's STOP is (`record_opt_out`: the
    number's `opted_out_at`, an `sms_opt_out` hold on its borrowers' accounts, or kept for the
    number if no borrower holds it). providers.md: the law binds the lender, not the gateway, so
    our own ledger knows it. `callback_id` makes it idempotent: told again, nothing changes."""
    said = f"carrier opt-out ({why})" if why else "carrier opt-out"
    # text = keyword: there are no words of the borrower's to quote, only the carrier's refusal
    inbound = Inbound(
        address=address, text=said, at=at, provider=provider, callback_id=callback_id, keyword=said
    )
    return record_opt_out(connection, inbound=inbound)


def apply_early_reports(
    connection: Connection,
    *,
    provider: str,
    provider_ids: Sequence[str],
    unreachable_after: int | None = None,
) -> ReportsApplied:
    """Apply the reports `provider` sent about these messages before their sends were recorded
    (call it where the sends are recorded, in that transaction), and forget them."""
    if (
        not provider_ids
        or connection.execute(
            select(early_report.c.id).where(early_report.c.provider == provider).limit(1)
        ).first()
        is None
    ):  # the usual case, one probe a batch: no report came early
        return ReportsApplied()
    rows = connection.execute(
        select(early_report)
        .where(early_report.c.provider == provider, among(early_report.c.provider_id, provider_ids))
        .order_by(early_report.c.id)
    ).all()
    if not rows:
        return ReportsApplied()
    applied = apply_delivery_reports(
        connection,
        provider=provider,
        reports=[
            StatusReport(
                r.provider_id,
                MessageStatus(r.status),
                r.at,
                r.error_code,
                r.vendor_status,
                number_cannot_text=r.number_cannot_text,
                opted_out=r.opted_out,
                sender_fault=r.sender_fault,
            )
            for r in rows
        ],
        unreachable_after=unreachable_after,
    )
    connection.execute(delete(early_report).where(among(early_report.c.id, [r.id for r in rows])))
    return applied


def expire_early_reports(
    connection: Connection, *, as_of: datetime, kept_for: timedelta = EARLY_REPORT_KEPT, limit: int = 5000
) -> int:
    """Give up the early reports (of every provider) that waited `kept_for` by `as_of` for a send
    that was never recorded: delete them and keep each in the audit trail without an account, as
    an `expired_report` with the reason, for operators. How many; at most `limit` a call, oldest
    first (the next call takes the rest). Their age is the report's own instant: the vendor's
    report time (Aliyun) or when it reached us (Twilio), a few minutes apart at most."""
    due = (
        select(early_report.c.id)
        .where(early_report.c.at < as_of - kept_for)
        .order_by(early_report.c.at, early_report.c.id)
        .limit(limit)
    )
    ids = list(connection.scalars(due))
    if not ids:
        return 0
    # DELETE … RETURNING: a report applied or expired meanwhile by another transaction is not kept twice
    rows = connection.execute(
        delete(early_report).where(among(early_report.c.id, ids)).returning(*early_report.c)
    ).all()
    waited = f"{kept_for.days} days" if kept_for == timedelta(days=kept_for.days) else str(kept_for)
    events = [
        {
            "account_id": None,
            "at": as_of,
            "kind": EXPIRED_REPORT,
            "actor": r.provider,
            "detail": f"delivery report {r.status} for {r.provider_id}, kept since {r.at:%Y-%m-%d %H:%M} UTC "
            f"for a send of ours that was never recorded: given up after {waited}, not applied",
            "data": {
                "provider": r.provider,
                "provider_id": r.provider_id,
                "status": r.status,
                "error_code": r.error_code,
                "vendor_status": r.vendor_status,
                "reported_at": r.at.isoformat(),
                "reason": f"no send of ours with this provider id recorded within {waited}",
                "source": SOURCE,
            },
        }
        for r in sorted(rows, key=lambda r: r.id)
    ]
    if events:
        connection.execute(audit.insert(), events)
    return len(events)


@dataclass(slots=True)
class ReportTally:
    """One provider's delivery reports applied in a window (`tally_reports`)."""

    provider: str
    reports: int = 0  # delivered or failed, as the vendor told it (callbacks and lookups alike)
    sender_faults: int = 0  # failures the vendor said were our message's or sender's
    by_code: dict[str, int] = field(default_factory=dict)  # those failures by the vendor's code

    @property
    def share(self) -> float:
        return self.sender_faults / self.reports if self.reports else 0.0


def tally_reports(connection: Connection, *, since: datetime, until: datetime) -> list[ReportTally]:
    """Each provider's delivery reports applied with an instant in (`since`, `until`], and how many
    of them failed for a fault of our message or sender: one GROUP BY over the audit trail's message
    events of the window (found by kind and instant), never a row per message here."""
    fault = audit.c.data["sender_fault"].as_boolean().label("fault")
    code = audit.c.data["error_code"].as_string().label("code")
    tallies: dict[str, ReportTally] = {}
    for provider, ours, error_code, n in connection.execute(
        select(audit.c.actor, fault, code, func.count())
        .where(*_reports_between(since, until))
        .group_by(audit.c.actor, fault, code)
    ):
        tally = tallies.setdefault(provider, ReportTally(provider))
        tally.reports += n
        if ours:
            tally.sender_faults += n
            key = error_code or "unknown"
            tally.by_code[key] = tally.by_code.get(key, 0) + n
    return [tallies[p] for p in sorted(tallies)]


def sender_fault_templates(
    connection: Connection, *, provider: str, since: datetime, until: datetime
) -> dict[str, int]:
    """The templates of `provider`'s messages failed for a fault of ours in the window, and how many
    each: which template a person has to change (a filtered one is one name; a sender every carrier
    refuses is all of them)."""
    faulty = (
        select(message.c.template, func.count().label("n"))
        .select_from(audit.join(message, message.c.id == audit.c.data["message_id"].as_integer()))
        .where(
            *_reports_between(since, until),
            audit.c.actor == provider,
            audit.c.data["sender_fault"].as_boolean().is_(True),
        )
        .group_by(message.c.template)
    )
    return {row.template: row.n for row in connection.execute(faulty.order_by(message.c.template))}


# The delivery reports a failing sender is judged over: a daily cycle's sends and the day's deferred
# ones (the borrower's morning) have all been reported by the next cycle.
SENDER_FAULT_WINDOW = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class SenderFaults:
    """A provider whose delivery reports of the window failed for our message or sender too often,
    with the rule's values it was judged by (they travel in the event, the report and its JSON)."""

    provider: str
    reports: int  # delivery reports applied in the window
    sender_faults: int  # of them, failures the vendor said were our message's or sender's
    threshold: float  # the share at which a provider is failing
    minimum: int  # the fewest such failures at which it is
    by_code: dict[str, int] = field(default_factory=dict)
    templates: dict[str, int] = field(default_factory=dict)  # of the messages so failed

    @property
    def share(self) -> float:
        return self.sender_faults / self.reports if self.reports else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "reports": self.reports,
            "sender_faults": self.sender_faults,
            "share": round(self.share, 4),
            "threshold": self.threshold,
            "minimum": self.minimum,
            "by_code": self.by_code,
            "templates": self.templates,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SenderFaults":
        """Back from `as_json` (a report's JSON, a flow's result), its share counted again exactly."""
        return cls(
            data["provider"],
            data["reports"],
            data["sender_faults"],
            data["threshold"],
            data["minimum"],
            dict(data["by_code"]),
            dict(data["templates"]),
        )


def failing_senders(
    connection: Connection, *, as_of: datetime, share: float, minimum: int
) -> list[SenderFaults]:
    """The providers whose delivery reports of the `SENDER_FAULT_WINDOW` up to `as_of` failed for a
    fault of our message or sender at least `share` of the time and at least `minimum` times (the
    rule, ARREARS_SENDER_FAULT_ALERT_SHARE and _MIN: a share so that a large book's everyday few
    filtered texts stay quiet, a floor so that one of a handful pages no one): one GROUP BY, then
    the templates of those failing only. The cycle's report and `arrears report` alike."""
    since = as_of - SENDER_FAULT_WINDOW
    return [
        SenderFaults(
            t.provider,
            t.reports,
            t.sender_faults,
            share,
            minimum,
            dict(sorted(t.by_code.items())),
            sender_fault_templates(connection, provider=t.provider, since=since, until=as_of),
        )
        for t in tally_reports(connection, since=since, until=as_of)
        if t.sender_faults >= minimum and t.share >= share
    ]


def sender_faults_line(found: SenderFaults) -> str:
    """One line for a failing provider: the cycle's summary's, its log's and `arrears report`'s."""
    codes = ", ".join(f"{code} {n:,}" for code, n in found.by_code.items())
    templates = ", ".join(f"{name} {n:,}" for name, n in found.templates.items())
    return (
        f"SMS provider {found.provider}: {found.sender_faults:,} of {found.reports:,} delivery reports "
        f"in the day before ({found.share:.0%}) failed for our message or sender ({codes}; templates: "
        f"{templates or 'none recorded'}): no number is marked for them, and they go on failing until a "
        "person changes the template or the sender"
    )


def _reports_between(since: datetime, until: datetime) -> tuple[Any, ...]:
    """The audit events of delivery reports applied to messages of ours with an instant in the window."""
    return (
        audit.c.kind == "message",
        audit.c.at > since,
        audit.c.at <= until,
        audit.c.data["source"].as_string() == SOURCE,
    )


def _record_unmatched(connection: Connection, provider: str, reports: Sequence[StatusReport]) -> None:
    """Keep each report that would move a message of ours, were there one, once per id and status:
    as an early report (found again by its index, not by reading the audit trail's JSON, which
    took a scan of every earlier one per report while a cycle's receipts raced its dispatch) and
    in the audit trail for operators. One that moves nothing (`sent`) is only counted."""
    moving = [r for r in reports if r.status in _MOVES_FROM]
    if not moving:
        return
    kept = {
        (r.provider_id, r.status)
        for r in connection.execute(
            select(early_report.c.provider_id, early_report.c.status).where(
                early_report.c.provider == provider,
                among(early_report.c.provider_id, [r.provider_id for r in moving]),
            )
        )
    }
    events: list[dict[str, Any]] = []
    early: list[dict[str, Any]] = []
    for report in moving:
        if (report.provider_id, report.status.value) in kept:
            continue
        kept.add((report.provider_id, report.status.value))
        data = {
            "provider": provider,
            "provider_id": report.provider_id,
            "status": report.status.value,
            "error_code": report.error_code,
            "vendor_status": report.vendor_status,
        }
        events.append(
            {
                "account_id": None,
                "at": report.at,
                "kind": UNMATCHED_REPORT,
                "actor": provider,
                "detail": f"delivery report {report.status.value} for {report.provider_id}, "
                "which no message of ours has (acknowledged; applied if its send is recorded later)",
                "data": data | {"source": SOURCE},
            }
        )
        early.append(
            data
            | {
                "at": report.at,
                "number_cannot_text": report.number_cannot_text,
                "opted_out": report.opted_out,
                "sender_fault": report.sender_fault,
            }
        )
    if events:
        connection.execute(audit.insert(), events)
        connection.execute(early_report.insert(), early)


def _move(connection: Connection, provider: str, report: StatusReport) -> list[Any]:
    """The one conditional UPDATE: the rows it moved (none if the report moves nothing)."""
    sources = _MOVES_FROM.get(report.status, ())
    if not sources:
        return []
    values: dict[str, Any] = {
        "status": report.status.value,
        "sent_at": func.coalesce(message.c.sent_at, literal(report.at, message.c.sent_at.type)),
    }
    if report.status is MessageStatus.FAILED:
        values["reason"] = report.error_code or report.vendor_status or "undelivered"
    return list(
        connection.execute(
            update(message)
            .where(
                message.c.provider == provider,
                message.c.provider_id == report.provider_id,
                message.c.status.in_(sources),
            )
            .values(values)
            .returning(message.c.id, message.c.account_id, message.c.address)
        ).all()
    )


def _count_delivery(connection: Connection, account_id: str, address: str, *, failed: bool) -> None:
    connection.execute(
        update(contact)
        .where(*_number_of(account_id, address))
        .values(failures=contact.c.failures + 1 if failed else 0)
    )


def _unreachable(
    connection: Connection, account_id: str, address: str, after: int, report: StatusReport
) -> list[dict[str, Any]]:
    """Mark the number invalid once its last `after` deliveries failed; the audit event if it was."""
    marked = connection.execute(
        update(contact)
        .where(*_number_of(account_id, address), contact.c.valid.is_(True), contact.c.failures >= after)
        .values(valid=False, invalid_reason=InvalidBecause.UNDELIVERABLE.value)
        .returning(contact.c.failures)
    ).all()
    if not marked:
        return []
    why = report.error_code or report.vendor_status or "no reason given"
    failed = (
        f"its delivery failed for a reason about the number ({why})"
        if report.number_cannot_text
        else f"its last {marked[0].failures} deliveries failed (the last: {why})"
    )
    return [
        {
            "account_id": account_id,
            "at": report.at,
            "kind": "contact",
            "actor": "arrears",
            "detail": f"{mask_phone(address)} marked unreachable: {failed}; nothing more is sent to it",
            "data": {"number": mask_phone(address), "failures": marked[0].failures, "error_code": why},
        }
    ]


def _number_of(account_id: str, address: str) -> tuple[Any, ...]:
    """The conditions naming the account's borrower's SMS contact point at `address`."""
    borrower = select(account.c.borrower_id).where(account.c.account_id == account_id).scalar_subquery()
    return (
        contact.c.borrower_id == borrower,
        contact.c.address == address,
        contact.c.channel == Channel.SMS.value,
    )
