"""Repossession orders that a payment or a bankruptcy overtakes never reach, or stay at, the
agency, however the two meet: a payment imported while the assignment is in flight, an answer lost
with the order at the agency, a bankruptcy the bureau reports (compliance.md, "What regulators find
most often"; DESIGN §2: "A payment or a hold cancels pending repossession work at once"; §6: "a
payment, plan or hold that overtakes it cancels it there")."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from arrears.importing import Kind
from arrears.models import AgencyAssignment
from tests.factories import payment_record
from tests.later_stage_helpers import at, events, import_rows, put_in_review, rows

assignment_t = AgencyAssignment.__table__  # type: ignore[attr-defined]


def _pay(engine: Engine, tmp_path: Path, account_id: str) -> Any:
    """The borrower pays the past due; the payments file is imported (the import's summary)."""
    return import_rows(
        engine,
        tmp_path,
        [payment_record(account_id=account_id, amount="825.00", received_at="2026-12-03T01:00:00Z")],
        Kind.PAYMENTS,
        now=at("2026-12-03T01:05:00Z"),
    )


def _assigning(monkeypatch: pytest.MonkeyPatch, assign: Callable[[Any, Any], Any]) -> Callable[[], Any]:
    """The push's agency provider with its `assign` replaced by `assign(provider, request)`; the
    real provider maker, to put back."""
    import tasks.agency as agency_tasks

    real = agency_tasks.agency_provider

    class Wrapped:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def assign(self, request: Any) -> Any:
            return assign(self.inner, request)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    @contextmanager
    def provider() -> Iterator[Any]:
        with real() as inner:
            yield Wrapped(inner)

    monkeypatch.setattr(agency_tasks, "agency_provider", provider)
    return real


def _answer_lost(provider: Any, request: Any) -> Any:
    """The order reaches the agency; its answer never comes back."""
    from integrations.errors import UnknownOutcome

    provider.assign(request)
    raise UnknownOutcome("the agency's answer never came")


def _agency_view(agency: Any) -> list[dict[str, Any]]:
    with httpx.Client(base_url=agency.base_url) as admin:
        return list(admin.get("/_sandbox/assignments").json()["assignments"])


def _approved(engine: Engine, tmp_path: Path, account_id: str) -> str:
    """A US-CA account (no cure notice owed) whose repossession a reviewer approved: the order and
    its assignment are written, pending, not yet sent."""
    from tasks.review import decide_review, prepare_reviews

    put_in_review(engine, tmp_path, account_id, jurisdiction="US-CA", timezone="America/Los_Angeles")
    prepare_reviews.fn(at("2026-12-01T17:00:00Z"))
    decided = decide_review(
        engine,
        account_id=account_id,
        decision="repossess",
        reviewer="Ana",
        reason="no contact",
        at=at("2026-12-02T17:00:00Z"),
    )
    assert decided.order_id is not None
    [row] = rows(engine, assignment_t, account_id)
    assert row.status == "pending"
    return decided.order_id


def test_a_payment_imported_while_the_assignment_is_being_sent_calls_the_agency_off(
    mail_db: Engine, tmp_path: Path, agency_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A payment imported while the request is on its way finds the row claimed (`sending`), not
    `pending`: it marks it to be called off, and the push that gets the agency's answer cancels it
    there at once. (Before the claim the payment cancelled the row outright as if it had never
    left, and the agency kept a live assignment nothing would ever cancel.)"""
    import tasks.agency as agency_tasks

    account_id = "A-PR1"
    _approved(mail_db, tmp_path, account_id)

    def pays_during_send(provider: Any, request: Any) -> Any:
        # The borrower pays; the payments file is imported while the assignment is in flight.
        assert _pay(mail_db, tmp_path, account_id).vendor_orders_cancelled == 1
        return provider.assign(request)

    _assigning(monkeypatch, pays_during_send)
    agency_tasks.push_assignments.fn()
    live = [a for a in _agency_view(agency_sandbox) if a["our_status"] not in ("cancelled", "closed")]
    [row] = rows(mail_db, assignment_t, account_id)
    assert live == [], (
        f"the agency still works an assignment for a borrower who paid: {live}; "
        f"our row says {row.status!r} with provider id {row.provider_id!r}"
    )
    assert row.status == "cancelled" and row.provider_id is not None
    assert len(_agency_view(agency_sandbox)) == 1


def test_a_bankruptcy_the_bureau_reports_cancels_the_open_order_at_once(
    mail_db: Engine, tmp_path: Path, agency_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A skip trace (run in the cycle after the reviews, for unreachable accounts in any stage,
    repossession review included) that reports a bankruptcy cancels the open repossession order
    as the hold is placed, as the borrower's own text telling of one does: the next
    `push_assignments` (`arrears dispatch`, the outbox run every quarter hour, another review's
    decision) must not send it to the agency under the automatic stay."""
    from arrears.storage import bureau_pulls
    from arrears.storage.bureau_pulls import Pulled, PullSubject
    from tasks.agency import push_assignments

    account_id = "A-PR2"
    _approved(mail_db, tmp_path, account_id)
    subject = PullSubject(
        account_id,
        "B-PR2",
        3,
        "skip_trace",
        "Dana Whitfield",
        None,
        "USD",
        Decimal("18450.00"),
        Decimal("412.50"),
        None,
        "probe",
    )
    pulled = Pulled(subject, "collection", "R-1", "C", None, (), 7, True, False)
    with mail_db.begin() as c:
        [result] = bureau_pulls.record_pulls(c, [pulled], at=at("2026-12-03T18:00:00Z"))
    assert result["holds"] == ["bankruptcy"] and result["vendor_orders_cancelled"] == 1

    push_assignments.fn()  # as `arrears dispatch` does, before any refresh

    actions = [e.data["action"] for e in events(mail_db, account_id, "vendor_order")]
    sent = [a for a in _agency_view(agency_sandbox) if a["our_status"] not in ("cancelled", "closed")]
    assert actions == ["placed", "cancelled"] and sent == [], (
        f"order events {actions}; assignments live at the agency after the bankruptcy: {sent}"
    )


def test_an_assignment_whose_answer_was_lost_is_sent_once_and_a_cancel_meanwhile_reaches_the_agency(
    mail_db: Engine, tmp_path: Path, agency_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order reaches the agency but its answer is lost (a timeout, a kill -9 before it is
    recorded): the row stays `sending`, and a payment imported then marks it to be called off,
    not cancelled as if it had never left. The next push sends the same key again, which the
    agency answers with the assignment it holds (no second one), and cancels it there."""
    import tasks.agency as agency_tasks

    account_id = "A-PR3"
    _approved(mail_db, tmp_path, account_id)
    real = _assigning(monkeypatch, _answer_lost)
    assert agency_tasks.push_assignments.fn()["assignments_waiting"] == 1
    [row] = rows(mail_db, assignment_t, account_id)
    assert (row.status, row.provider_id) == ("sending", None)
    [live] = _agency_view(agency_sandbox)
    assert live["our_status"] == "assigned"

    _pay(mail_db, tmp_path, account_id)
    [row] = rows(mail_db, assignment_t, account_id)
    assert row.status == "cancel_pending"

    monkeypatch.setattr(agency_tasks, "agency_provider", real)
    counts = agency_tasks.push_assignments.fn()
    assert counts["assignments_cancelled"] == 1 and counts["assignments_sent"] == 0
    [row] = rows(mail_db, assignment_t, account_id)
    [held] = _agency_view(agency_sandbox)
    assert row.status == "cancelled" and row.provider_id == held["id"]
    assert held["our_status"] == "cancelled"


def test_an_assignment_whose_answer_was_lost_is_recorded_from_the_same_key_sent_again(
    mail_db: Engine, tmp_path: Path, agency_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a payment, the next push sends the claimed order again under its key and records
    the one assignment the agency holds."""
    import tasks.agency as agency_tasks

    account_id = "A-PR4"
    _approved(mail_db, tmp_path, account_id)
    real = _assigning(monkeypatch, _answer_lost)
    agency_tasks.push_assignments.fn()
    monkeypatch.setattr(agency_tasks, "agency_provider", real)
    assert agency_tasks.push_assignments.fn()["assignments_sent"] == 1
    [row] = rows(mail_db, assignment_t, account_id)
    [held] = _agency_view(agency_sandbox)
    assert (row.status, row.provider_id) == ("assigned", held["id"])
    assert held["our_status"] == "assigned"


def test_a_car_the_agency_reports_recovered_after_it_cancelled_the_order_is_an_alarm_not_a_recovery(
    mail_db: Engine, tmp_path: Path
) -> None:
    """The agency confirmed the cancel, then reports the car recovered all the same (a tow truck that
    never heard): the assignment stays cancelled, so nothing closes the account or writes a notice
    of sale for a borrower who paid, and the audit trail says it once, for a person to act on."""
    from datetime import timedelta

    from arrears.storage.recoveries import recovered_accounts
    from integrations.agency.protocol import AssignmentStatus
    from tasks.agency import push_assignments, record_statuses

    account_id = "A-PR5"
    _approved(mail_db, tmp_path, account_id)
    push_assignments.fn()
    _pay(mail_db, tmp_path, account_id)
    push_assignments.fn()  # the agency confirms the cancel
    [row] = rows(mail_db, assignment_t, account_id)
    assert row.status == "cancelled" and row.provider_id is not None
    taken = at("2026-12-03T09:00:00Z")
    late = AssignmentStatus(
        row.provider_id, "recovered", taken, recovered_at=taken, recovery_location="lot 9", condition="fair"
    )
    for _ in range(2):  # told twice, as webhooks are
        record_statuses([late], seen_at=taken + timedelta(minutes=1))
    [row] = rows(mail_db, assignment_t, account_id)
    assert (row.status, row.recovered_at) == ("cancelled", None)
    with mail_db.connect() as c:
        assert recovered_accounts(c, account_id=account_id) == []
    [alarm] = [e for e in events(mail_db, account_id, "assignment") if "after it was cancelled" in e.detail]
    assert alarm.data["status"] == "recovered_after_cancel" and "lot 9" in alarm.detail
