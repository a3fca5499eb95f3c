"""Delivery receipts that never came: ask the provider what became of what it accepted.

Gateways drop callbacks (the sandbox does on request; real ones do under load or while our
webhook is down). A message still `sent` an hour after the provider took it is looked up by its
provider id (`SmsProvider.status`), and the answer is applied exactly as a callback would be
(`tasks.inbound.record_delivery_reports`): a late callback and the lookup move the message once,
never backwards. The outbox sweep runs it after each dispatch, a bounded number at a time.
"""

from datetime import datetime, timedelta
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from arrears.settings import get_settings
from arrears.storage import outbox
from integrations.errors import ConfigError, ProviderError
from integrations.providers import provider_class
from integrations.sms.protocol import DeliveryReport, SmsRequest
from tasks.database import engine
from tasks.inbound import record_delivery_reports
from tasks.providers import current_sms

__all__ = ["RECEIPT_GRACE", "RECEIPT_HORIZON", "receipts_to_reconcile", "reconcile_receipts"]

RECEIPT_GRACE = timedelta(hours=1)  # a receipt normally comes within seconds; an hour is a lost one
RECEIPT_HORIZON = timedelta(days=3)  # vendors keep message records for days, not forever


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
        reports.append(
            DeliveryReport(
                found.provider_id, found.status, as_of, found.error_code, vendor_status="status lookup"
            )
        )
    if reports:
        applied = record_delivery_reports(engine(), provider=_provider_name(), reports=reports)
        counts["receipts_applied"] = len(applied.changed)
    return counts
