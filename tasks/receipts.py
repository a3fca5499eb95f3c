"""Delivery receipts that never came: ask the provider what became of what it accepted.

Gateways drop callbacks (the sandbox does on request; real ones do under load or while our
webhook is down). A message still `sent` an hour after the provider took it is looked up by its
provider id (`SmsProvider.status`), and the answer is applied exactly as a callback would be
(`tasks.inbound.record_delivery_reports`): a late callback and the lookup move the message once,
never backwards, and what the error says of the number (a landline, an opt-out at the carrier,
or that the fault is our message's or sender's, not the number's) counts as it would have in the
callback. The outbox sweep runs it after each dispatch, a bounded
number at a time.

The other way round, a report that came before its send was recorded and whose send never was
is given up after a week (`expire_early_reports`, by every outbox run, whether or not a receipt
is awaited): kept for operators, no longer waited for.

A failure the vendor says is our message's or sender's counts against no number, so nothing marks
or stops anything when a template every carrier filters, or a sender not registered, fails every
borrower's text day after day. `failing_senders` applies the rule that makes it loud
(`arrears.storage.delivery_reports.failing_senders`, which `arrears report` applies too; one query
a run, and one for the templates of a provider found failing) with the operator's settings: a
provider whose delivery reports of the day before were at least `ARREARS_SENDER_FAULT_ALERT_SHARE`
(10 %) such failures, and at least `ARREARS_SENDER_FAULT_ALERT_MIN` (10) of them, is failing. The
cycle says so in its summary, its log and an `arrears.provider.sender-faults` event
(`announce_sender_faults`); the outbox run in its log and counts. A share, not a count alone, so
that a large book's everyday few filtered texts stay quiet; a floor, so that one filtered text of a
handful does not page anyone.

Dispatch holds nothing back for it: the codes are about a template (30007, CONTENT_KEYWORD), the
sender or the account (30034, 30032, a signature) or our own rates (30022, MOBILE_SEND_LIMIT), and
carriers filter unevenly; holding a template would keep back the texts that still get through (a
notice among them), and only a person can say which fix is due (the alert names codes and templates).
"""

from datetime import datetime, timedelta
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from arrears.settings import get_settings
from arrears.storage import delivery_reports, outbox, read_only
from integrations.errors import ConfigError, ProviderError
from integrations.providers import provider_class
from integrations.sms.protocol import DeliveryReport, SmsRequest, SmsResult
from tasks.database import engine
from tasks.inbound import record_delivery_reports
from tasks.logs import run_logger
from tasks.providers import current_sms

__all__ = [
    "RECEIPT_GRACE",
    "RECEIPT_HORIZON",
    "announce_sender_faults",
    "expire_early_reports",
    "failing_senders",
    "looked_up_report",
    "receipts_to_reconcile",
    "reconcile_receipts",
]

RECEIPT_GRACE = timedelta(hours=1)  # a receipt normally comes within seconds; an hour is a lost one
RECEIPT_HORIZON = timedelta(days=3)  # vendors keep message records for days, not forever


def failing_senders(as_of: datetime) -> list[delivery_reports.SenderFaults]:
    """The providers failing for our message or sender in the day up to `as_of`, by the rule
    (`delivery_reports.failing_senders`) with the operator's ARREARS_SENDER_FAULT_ALERT_SHARE and
    _MIN. Read only."""
    settings = get_settings()
    with read_only(engine()) as connection:
        return delivery_reports.failing_senders(
            connection,
            as_of=as_of,
            share=settings.sender_fault_alert_share,
            minimum=settings.sender_fault_alert_min,
        )


def announce_sender_faults(
    found: list[delivery_reports.SenderFaults], as_of: datetime, *, event: bool = True
) -> None:
    """Make each failing provider loud: a warning in the run's log and, with `event`, an
    `arrears.provider.sender-faults` event for an automation to alert on (as a provider outage is).
    The outbox run, every quarter hour, logs only: an event there would page every quarter hour."""
    log = run_logger("arrears.receipts")
    for each in found:
        log.warning("%s", delivery_reports.sender_faults_line(each))
        if event:
            emit_event(
                "arrears.provider.sender-faults",
                resource={
                    "prefect.resource.id": f"arrears.provider.sms.{each.provider}",
                    "prefect.resource.name": each.provider,
                },
                payload={"kind": "sms", **each.as_json(), "as_of": as_of.isoformat()},
            )


def _provider_name() -> str:
    """The name dispatch records on the messages the configured provider sent (its `info.name`)."""
    return provider_class("sms", get_settings().sms_provider).info.name


def receipts_to_reconcile(as_of: datetime, limit: int) -> list[Any]:
    """The messages of the configured provider waiting on a lost receipt (no provider needed to ask)."""
    with engine().connect() as connection:
        return outbox.awaiting_receipt(
            connection,
            provider=_provider_name(),
            sent_before=as_of - RECEIPT_GRACE,
            sent_after=as_of - RECEIPT_HORIZON,
            limit=limit,
        )


def expire_early_reports(as_of: datetime) -> int:
    """Give up the early reports whose send was not recorded within `EARLY_REPORT_KEPT` of
    `as_of` (kept in the audit trail for `arrears callbacks list`); how many. One transaction."""
    with engine().begin() as connection:
        return delivery_reports.expire_early_reports(connection, as_of=as_of)


def looked_up_report(found: SmsResult, address: str, as_of: datetime) -> DeliveryReport:
    """A status lookup's answer as the callback that never came would have told it: what the error
    says of the number (Twilio's 30006 a landline, 21610 an opt-out at the carrier) or that it is
    our message's or sender's fault (30007 filtered, 30034 an unregistered sender) with it. Without
    those, a landline counted as one failure among the policy's run, a carrier opt-out as a failed
    delivery, its STOP never recorded, and a filtered template as a failure of every number."""
    return DeliveryReport(
        found.provider_id,
        found.status,
        as_of,
        found.error_code,
        vendor_status="status lookup",
        number_cannot_text=found.number_cannot_text,
        recipient_opted_out=found.recipient_opted_out,
        sender_fault=found.sender_fault,
        recipient=address,
    )


@task(
    name="reconcile-receipts", cache_policy=NO_CACHE, persist_result=False, retries=1, retry_delay_seconds=60
)
def reconcile_receipts(as_of: datetime, limit: int = 500) -> dict[str, int]:
    """Look up the outcome of up to `limit` messages, oldest first; counts: looked up, moved, still
    in flight, failed lookups."""
    counts = {
        "receipts_looked_up": 0,
        "receipts_applied": 0,
        "receipts_pending": 0,
        "receipt_lookups_failed": 0,
    }
    rows = receipts_to_reconcile(as_of, limit)
    if not rows:
        return counts
    provider = current_sms()
    reports: list[DeliveryReport] = []
    for row in rows:
        request = SmsRequest(
            row.idempotency_key, row.address, row.template, dict(row.params or {}), row.body, row.created_at
        )
        counts["receipts_looked_up"] += 1
        try:
            found = provider.status(request, row.provider_id)
        except ConfigError:
            raise  # every lookup would fail the same way
        except ProviderError as failed:  # the next sweep asks again
            get_run_logger().warning("status lookup for message %s failed: %s", row.id, type(failed).__name__)
            counts["receipt_lookups_failed"] += 1
            continue
        if found is None or found.status in ("queued", "sent"):
            counts["receipts_pending"] += 1
            continue
        reports.append(looked_up_report(found, row.address, as_of))
    if reports:
        applied = record_delivery_reports(engine(), provider=_provider_name(), reports=reports)
        counts["receipts_applied"] = len(applied.changed)
    return counts
