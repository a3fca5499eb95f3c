"""Repossession agencies: approved orders sent as assignments, overtaken ones called off there.

- `push_assignments`: pending assignments to the agency provider (under their idempotency key: a
  resend after a crash returns the first assignment), and `cancel_pending` ones cancelled there
  (a payment, plan, settlement or hold overtook the order: regulators' most common finding in
  auto servicing is a car taken after the borrower paid, because nobody called the agent off).
  One blocked for want of a VIN or a mailing address goes once an import brings them.
- `record_statuses`: the agency's status changes, from its signed webhooks or a lookup; a
  recovery is recorded with where and in what condition. An order closed (or refused) without
  the car sends its review back to a person (`vendor_orders.close_unrecovered_order`).
- `track_assignments`: looks up assignments still working at the agency (`GET`), as letters are
  looked up, so a one-off `arrears cycle` + `arrears dispatch` sees a recovery without webhooks.

Batch steps: a few assignments per task run, never one task run per account.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Connection, Engine

from arrears.models import utcnow
from arrears.settings import get_settings
from arrears.storage import assignments, mailing, vendor_orders
from arrears.storage.assignments import AssignmentRow
from integrations.agency.protocol import (
    AgencyProvider,
    AssignmentNotCancellable,
    AssignmentRequest,
    AssignmentStatus,
    KnownAddress,
    LenderContact,
    Vehicle,
)
from integrations.errors import Permanent, ProviderError
from tasks.database import engine
from tasks.logs import run_logger
from tasks.providers import agency_provider

__all__ = [
    "agency_configured",
    "assignments_waiting",
    "assignments_working",
    "call_off_overtaken",
    "push_assignments",
    "record_statuses",
    "track_assignments",
    "vin_year",
]

# Where an order still stands to take the car: one the agency closes from here ends unrecovered. Not
# one called off (cancel_pending, cancelled): what overtook it (a payment, a hold) stands instead.
_WORKING = frozenset({"pending", "sending", "assigned", "accepted", "located"})

# The 10th character of a VIN codes the model year in a 30-year cycle (49 CFR 565.15).
_YEAR_CODES = "ABCDEFGHJKLMNPRSTVWXY123456789"


def vin_year(vin: str, today: datetime) -> int:
    """The model year a VIN states: the latest year of its code's cycle not after next year."""
    offset = _YEAR_CODES.find(vin[9].upper())
    if offset < 0:
        return today.year
    year = 1980 + offset
    while year + 30 <= today.year + 1:
        year += 30
    return year


def agency_configured() -> bool:
    """Whether a lasting agency is configured: the embedded sandbox (no base URL) is started per
    session and remembers no assignment, so nothing can be cancelled or looked up there."""
    settings = get_settings()
    return settings.agency_base_url is not None or settings.agency_provider != "sandbox"


def assignments_waiting() -> bool:
    """Whether `push_assignments` has anything to do: orders to send or call off, or blocked ones
    (an import may have brought the data they wait for: `vendor_orders.release_blocked_orders`)."""
    with engine().connect() as connection:
        return bool(
            assignments.assignments_to_push(connection, limit=1)
            or assignments.blocked_assignments(connection, limit=1)
        )


def assignments_working() -> bool:
    """Whether any assignment is still working at the agency (so no provider is opened for nothing)."""
    with engine().connect() as connection:
        return bool(assignments.assignments_to_track(connection, limit=1))


def call_off_overtaken() -> dict[str, int]:
    """After an import that overtook repossession orders: tell the agency at once (outside a
    flow, so no Prefect task run)."""
    if not agency_configured() or not assignments_waiting():
        return {}
    return push_assignments.fn()


def _request(connection: Connection, row: AssignmentRow) -> AssignmentRequest:
    name, vin = mailing.borrower_of(connection, row.account_id)
    address = mailing.mailing_address(connection, row.account_id)
    if address is None or not vin:
        raise ValueError("no VIN or no mailing address on file")
    settings = get_settings()
    return AssignmentRequest(
        idempotency_key=row.idempotency_key,
        account_reference=row.account_id,
        vehicle=Vehicle(vin, vin_year(vin, datetime.now(UTC)), "(see VIN)", "(see VIN)"),
        borrower_name=name,
        addresses=[
            KnownAddress(
                "home",
                address.line1,
                address.city,
                address.postal_code,
                address.state,
                address.country,
                address.line2,
            )
        ],
        lender=LenderContact(f"{settings.lender_name} recovery desk", settings.lender_contact.split(",")[0]),
    )


@task(name="push-assignments", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=30)
def push_assignments(limit: int = 500) -> dict[str, int]:
    """Send pending assignments and cancel overtaken ones at the agency; first, blocked ones whose
    VIN and mailing address an import has brought become pending (or are called off if a person
    decided again meanwhile: `vendor_orders.release_blocked_orders`), so they go in this run."""
    counts = {"assignments_sent": 0, "assignments_cancelled": 0, "assignments_waiting": 0}
    with engine().begin() as connection:
        vendor_orders.release_blocked_orders(connection, at=utcnow())
        todo = assignments.assignments_to_push(connection, limit=limit)
    if not todo:
        return counts
    name = get_settings().agency_provider
    with agency_provider() as provider:
        for row in todo:
            now = utcnow()
            try:
                current = row
                if row.provider_id is None:
                    # To send; or to call off, a send whose answer was never recorded: the agency
                    # answers the same key with the assignment it holds (or places it, to be
                    # called off at once below). A send is claimed before it leaves, so a payment
                    # or hold meanwhile marks it to be called off instead of cancelling it here.
                    with engine().begin() as connection:
                        request = _request(connection, row)
                        if row.status != "cancel_pending" and not assignments.claim_send(
                            connection, row_id=row.id, at=now
                        ):
                            continue  # cancelled meanwhile, before it left
                    assigned = provider.assign(request)
                    with engine().begin() as connection:
                        current = assignments.mark_assigned(
                            connection,
                            row_id=row.id,
                            provider=name,
                            provider_id=assigned.assignment_id,
                            at=now,
                        )
                    counts["assignments_sent"] += row.status != "cancel_pending"
                if current.status == "cancel_pending":  # overtaken, before or while it was sent
                    assert current.provider_id is not None
                    status = provider.cancel(current.provider_id, current.reason or "overtaken")
                    record_statuses([status], seen_at=now)
                    counts["assignments_cancelled"] += status.status == "cancelled"
            except AssignmentNotCancellable as late:
                # Too late: the car is recovered. Recorded as the agency reports it.
                _too_late(provider, row, late, now)
            except (Permanent, ValueError) as refused:
                if row.status == "cancel_pending":  # a cancel the agency could not apply: tried again later
                    counts["assignments_waiting"] += 1
                    continue
                with engine().begin() as connection:
                    assignments.move_assignment(
                        connection, row_id=row.id, status="closed", at=now, reason=f"refused: {refused}"
                    )
                    _closed_unrecovered(connection, row, f"refused: {refused}", now)
            except ProviderError:
                counts["assignments_waiting"] += 1
    return counts


def _too_late(
    provider: AgencyProvider, row: AssignmentRow, late: AssignmentNotCancellable, now: datetime
) -> None:
    """Record an order the agency could no longer cancel as the agency reports it: its lookup
    carries when, where and in what condition the car was recovered, the evidence the notice of
    sale and any deficiency claim rest on; the refusal alone only says that it was. Unreachable
    now, the refusal is recorded at our clock, and a later webhook cannot move it back."""
    try:
        found = provider.status(late.assignment_id)
    except ProviderError:
        found = None
    if found is not None and not found.cancellable and record_statuses([found], seen_at=now)[1]:
        return
    with engine().begin() as connection:
        assignments.move_assignment(connection, row_id=row.id, status=late.status, at=now, reason=str(late))


@task(
    name="track-assignments", cache_policy=NO_CACHE, persist_result=False, retries=1, retry_delay_seconds=30
)
def track_assignments(limit: int = 500) -> dict[str, int]:
    """Look up assignments still working at the agency whose webhooks may never come; record
    what moved (an unreachable agency is tried again next time, as a lost webhook would be)."""
    with engine().connect() as connection:
        todo = assignments.assignments_to_track(connection, limit=limit)
    counts = {"assignments_looked_up": 0, "assignments_moved": 0}
    if not todo:
        return counts
    with agency_provider() as provider:
        for row in todo:
            assert row.provider_id is not None
            try:
                found = provider.status(row.provider_id)
            except ProviderError:
                continue
            now = utcnow()
            counts["assignments_looked_up"] += 1
            counts["assignments_moved"] += record_statuses([found], seen_at=now)[1]
            with engine().begin() as connection:
                assignments.touch(connection, [row.id], now)
    return counts


def record_statuses(
    statuses: Sequence[AssignmentStatus], seen_at: datetime | None = None, *, engine_: Engine | None = None
) -> tuple[int, int]:
    """Record the agency's status changes (late, repeated, out of order: harmless); returns how
    many were about assignments we know and how many moved one. Unknown ids are ignored."""
    moved = known = 0
    with (engine_ or engine()).begin() as connection:
        for s in sorted(statuses, key=lambda s: s.at):
            row = assignments.assignment_by_provider_id(connection, s.assignment_id)
            if row is None:
                continue
            known += 1
            recovered = s.status == "recovered" or (s.recovered_at is not None and row.recovered_at is None)
            recovery = (
                {
                    "recovered_at": s.recovered_at.isoformat() if s.recovered_at else s.at.isoformat(),
                    "location": s.recovery_location,
                    "condition": s.condition,
                    # Held for the borrower to claim back, whatever becomes of the car.
                    "personal_property": list(s.personal_property),
                }
                if recovered
                else None
            )
            if recovered and row.status == "cancelled":
                # Recorded as the audit trail's alarm, not as a recovery (`move_assignment`).
                run_logger("arrears.agency").warning(
                    "the agency reports a car recovered on repossession order %s, which it had "
                    "cancelled: a person must act",
                    row.order_id,
                )
            if recovered and s.status != "recovered":
                # A lookup answers only the latest status: a car recovered and then closed
                # between two lookups is recorded as recovered first, with where and how.
                moved += assignments.move_assignment(
                    connection,
                    row_id=row.id,
                    status="recovered",
                    at=s.recovered_at or s.at,
                    recovery=recovery,
                )
            closing = s.status == "closed" and not recovered and row.recovered_at is None
            if assignments.move_assignment(
                connection, row_id=row.id, status=s.status, at=s.at, reason=s.reason, recovery=recovery
            ):
                moved += 1
                if closing and row.status in _WORKING:
                    _closed_unrecovered(connection, row, s.reason, s.at)
    return known, moved


def _closed_unrecovered(connection: Connection, row: AssignmentRow, reason: str | None, at: datetime) -> None:
    """The order ended without the car: its review goes back to a person, once."""
    vendor_orders.close_unrecovered_order(
        connection,
        account_id=row.account_id,
        order_id=row.order_id,
        review_id=row.review_id,
        reason=reason,
        at=at,
    )
