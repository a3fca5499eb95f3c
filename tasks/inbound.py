"""The side effects of inbound callbacks: provider reports and replies into our tables.

Each function is one transaction on the given engine and returns what it did; the webhook server
(`deployments/webhooks.py`) verifies the callback first and, after these return, starts
`account_lifecycle` for the accounts they name (tasks may not import flows, DESIGN §1).

They are plain functions rather than Prefect tasks on purpose: an opt-out must be on record
before the next send whether or not the Prefect API answers, and a webhook must answer in
milliseconds. The lifecycle run they lead to is the observable Prefect part.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine

from arrears.inbound import Classified, InboundKind, classify, hardship_statement, storable
from arrears.lifecycle import is_open
from arrears.storage import accounts, court_statuses, promises
from arrears.storage import inbound as store
from arrears.storage.court_statuses import CourtRecorded
from arrears.storage.delivery_reports import ReportsApplied, StatusReport, apply_delivery_reports
from arrears.storage.inbound import Inbound, InboundRecorded
from arrears.storage.unreadable_callbacks import keep_unreadable
from arrears.vocabulary import MessageStatus
from integrations.callbacks import UnreadableItem
from integrations.sms.protocol import DeliveryReport
from tasks.database import policy

__all__ = [
    "InboundResult",
    "keep_unreadable_items",
    "reattribute_reply",
    "record_court_status",
    "record_delivery_reports",
    "record_inbound_sms",
    "to_status",
]

_STATUS = {
    "queued": MessageStatus.SENT,
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "failed": MessageStatus.FAILED,
    "undelivered": MessageStatus.FAILED,
}


def to_status(report: DeliveryReport) -> StatusReport:
    """A provider's report in our outbox's words (queued counts as sent: accepted, no outcome yet)."""
    return StatusReport(
        provider_id=report.provider_id,
        status=_STATUS[report.status],
        at=report.at,
        error_code=report.error_code,
        vendor_status=report.vendor_status,
        number_cannot_text=report.number_cannot_text,
        opted_out=report.recipient_opted_out,
        sender_fault=report.sender_fault,
        address=report.recipient,
    )


def record_delivery_reports(
    engine: Engine, *, provider: str, reports: Sequence[DeliveryReport]
) -> ReportsApplied:
    """Apply one callback's delivery reports to the messages `provider` sent. Those the provider
    says another system sent are only counted: kept, they would fill the audit trail and the early
    reports with messages that are never ours."""
    ours = [to_status(r) for r in reports if not r.foreign]
    with engine.begin() as connection:
        applied = apply_delivery_reports(
            connection,
            provider=provider,
            reports=ours,
            unreachable_after=policy().segmentation.unreachable_after_failures,
        )
    applied.foreign = len(reports) - len(ours)
    return applied


def keep_unreadable_items(
    engine: Engine, *, provider: str, route: str, items: Sequence[UnreadableItem], at: datetime
) -> int:
    """Keep for operators the items of a batch callback that could not be read; how many were new."""
    with engine.begin() as connection:
        return keep_unreadable(
            connection, provider=provider, route=route, items=[(i.reason, i.item) for i in items], at=at
        )


@dataclass(frozen=True, slots=True)
class InboundResult:
    classified: Classified
    recorded: InboundRecorded

    @property
    def lifecycle_accounts(self) -> tuple[str, ...]:
        """Accounts whose lifecycle should run now: the one a new reply is attributed to (a reply
        from a number several open accounts share, that we cannot attribute, runs none)."""
        if self.classified.kind is InboundKind.REPLY and not self.recorded.duplicate:
            return (self.recorded.attributed,) if self.recorded.attributed else ()
        return ()


def record_inbound_sms(
    engine: Engine,
    *,
    address: str,
    text: str,
    at: datetime,
    provider: str,
    callback_id: str,
    vendor_keyword: str | None = None,
    media: tuple[str, ...] = (),
) -> InboundResult:
    """Classify an inbound SMS (with the vendor's own reading, where it gives one) and record it:
    an opt-out, an opt-in, a wrong number, or a reply, and in the same transaction the dispute or
    bankruptcy hold its words call for, the hardship an opt-out tells of, and that its number
    works, if failed deliveries had it marked unreachable."""
    classified = classify(text, vendor_keyword)
    inbound = Inbound(
        address=address,
        text=storable(text),
        at=at,
        provider=provider,
        callback_id=callback_id,
        keyword=classified.keyword,
        media=media,
    )
    record = {
        InboundKind.OPT_OUT: store.record_opt_out,
        InboundKind.OPT_IN: store.record_opt_in,
        InboundKind.WRONG_NUMBER: store.record_wrong_number,
        InboundKind.REPLY: store.record_reply,
    }[classified.kind]
    with engine.begin() as connection:
        recorded = record(connection, inbound=inbound)
        if classified.hold is not None and classified.statement and not recorded.duplicate:
            store.record_statement(
                connection, inbound=inbound, hold=classified.hold, words=classified.statement
            )
        if classified.kind is not InboundKind.WRONG_NUMBER and not recorded.duplicate:
            store.record_number_works(connection, inbound=inbound)
        if classified.kind is InboundKind.OPT_OUT and not recorded.duplicate:
            _hardship_with_opt_out(connection, inbound, recorded)
        return InboundResult(classified, recorded)


def _hardship_with_opt_out(connection: Connection, inbound: Inbound, recorded: InboundRecorded) -> None:
    """ "STOP, I lost my job": the opt-out is honoured at once, and is no reply, which the cycle reads
    for a hardship (`tasks.promises`), so the hardship is stated here, in the same transaction, and
    nothing is sent for it: the borrower is unable from now on (hardship, not strategic: a plan, not
    an early review, and letters rather than texts). A job lost is the borrower's, not a loan's: on
    each of their open accounts. From a number several borrowers hold, whose it is cannot be told:
    nothing is stated (the opt-out's event keeps the words for an agent)."""
    statement = hardship_statement(inbound.text)
    if statement is None or len(recorded.borrowers) != 1:
        return
    accounts.lock_accounts(connection, recorded.open_accounts)
    for account_id in recorded.open_accounts:
        row = accounts.account_row(connection, account_id)
        if row is not None and is_open(row.stage):
            promises.state_hardship(
                connection,
                account_id=account_id,
                statement=statement,
                at=inbound.at,
                policy=policy().segmentation,
                data={"callback_id": inbound.callback_id},
            )


def record_court_status(
    engine: Engine,
    *,
    filing_id: str,
    status: str,
    at: datetime,
    provider: str,
    callback_id: str,
    reason: str | None = None,
    vendor_status: str | None = None,
) -> CourtRecorded:
    """Store a court status on its referral, with the court's own words (see
    `arrears.storage.court_statuses`)."""
    with engine.begin() as connection:
        return court_statuses.record_court_status(
            connection,
            filing_id=filing_id,
            status=status,
            at=at,
            provider=provider,
            callback_id=callback_id,
            reason=reason,
            vendor_status=vendor_status,
        )


def reattribute_reply(engine: Engine, *, callback_id: str, at: datetime) -> str | None:
    """Attribute again a reply set aside as `ambiguous sender`: the account it is now for, or None
    while the number still belongs to several open accounts (see `retry_unattributed`)."""
    with engine.begin() as connection:
        recorded = store.retry_unattributed(connection, callback_id=callback_id, at=at)
    return None if recorded is None else recorded.attributed
