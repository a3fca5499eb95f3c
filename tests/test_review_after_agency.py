"""A repossession order the agency closes without the car sends its review back to a person.

Before, the review stayed decided (repossess): `arrears review list` showed nothing, `arrears review
decide` refused a new decision, and the account waited in repossession review for good. Now a new
review of the same stay opens, with the closing as its reason, listed, decidable by the CLI and the
flow run's form, with the audit trail saying why; once per order, and never for an account that
left review or a car that was recovered."""

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, update
from typer.testing import CliRunner

from arrears.models import AgencyAssignment
from tests.later_stage_helpers import (
    account_t,
    at,
    events,
    in_thread,
    put_in_review,
    review_t,
    rows,
    wait_paused,
)
from tests.test_agency_overtaken import _approved

assignment_t = AgencyAssignment.__table__  # type: ignore[attr-defined]
UNLOCATED = "unable to locate the vehicle after 60 days"


def _cli(*args: str) -> Any:
    from deployments.cli import app

    return CliRunner().invoke(app, list(args))


def _assigned(engine: Engine, tmp_path: Path, account_id: str) -> Any:
    """A US-CA account (no cure notice owed) whose repossession a reviewer approved and whose
    assignment the sandbox agency holds; its assignment row."""
    from tasks.agency import push_assignments

    _approved(engine, tmp_path, account_id)
    assert push_assignments.fn()["assignments_sent"] == 1
    [row] = rows(engine, assignment_t, account_id)
    assert row.status == "assigned" and row.provider_id
    return row


def _closed(row: Any, when: str, reason: str | None = UNLOCATED) -> tuple[int, int]:
    """The agency's word that it closed the assignment without the car, as its webhook or a
    lookup gives it."""
    from integrations.agency.protocol import AssignmentStatus
    from tasks.agency import record_statuses

    status = AssignmentStatus(row.provider_id, "closed", at(when), event_id="evt_closed", reason=reason)
    return record_statuses([status], seen_at=at(when) + timedelta(minutes=1))


def _listed(db_url: str, as_of: str) -> list[dict[str, Any]]:
    out = _cli("review", "list", "--json", "--database", db_url, "--as-of", as_of)
    assert out.exit_code == 0, out.output
    return list(json.loads(out.stdout))


def test_an_order_closed_without_the_car_reopens_the_review_for_a_person_to_decide_again(
    mail_db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agency closes the assignment (could not locate the car): a new review opens with the
    closing as its reason and the cure deadline of the stay, `review list` shows it waiting for a
    reviewer and says why, and `review decide` takes a new decision, whose order is a new one
    under a new key. The decided review and its order stay as they were, in the audit trail."""
    account_id = "A-AC1"
    first = _assigned(mail_db, tmp_path, account_id)
    assert _listed(db_url, "2026-12-05T17:00:00Z") == []  # decided: nothing waits

    assert _closed(first, "2026-12-20T18:00:00Z") == (1, 1)

    decided, reopened = rows(mail_db, review_t, account_id)
    assert (decided.decision, decided.reviewer) == ("repossess", "Ana")
    assert (reopened.decision, reopened.decided_at) == (None, None)
    assert reopened.reason == f"agency closed the order without recovery: {UNLOCATED}"
    assert reopened.cure_deadline == decided.cure_deadline
    assert reopened.opened_at == at("2026-12-20T18:00:00Z")
    [opened] = [e for e in events(mail_db, account_id, "review") if e.data.get("reopens")]
    assert opened.data == {
        "review_id": reopened.id,
        "reopens": decided.id,
        "order_id": f"RO-{decided.id}",
        "reason": reopened.reason,
    }
    assert UNLOCATED in opened.detail and "needs a person again" in opened.detail
    actions = [e.data["action"] for e in events(mail_db, account_id, "vendor_order")]
    assert actions == ["placed", "closed"]

    [waiting] = _listed(db_url, "2026-12-21T17:00:00Z")
    assert (waiting["account_id"], waiting["waits_for"], waiting["id"]) == (
        account_id,
        "reviewer",
        reopened.id,
    )
    assert waiting["reopened"] == reopened.reason
    from deployments.cli._common import console

    monkeypatch.setattr(console, "width", 400)  # no cell folds
    table = _cli("review", "list", "--database", db_url, "--as-of", "2026-12-21T17:00:00Z")
    assert table.exit_code == 0, table.output
    assert f"{reopened.reason}; decide: see below" in table.stdout

    again = _cli(
        "review",
        "decide",
        account_id,
        "--decision",
        "repossess",
        "--reviewer",
        "Bo",
        "--reason",
        "new address from the bureau",
        "--as-of",
        "2026-12-21T17:00:00Z",
        "--database",
        db_url,
        "--json",
    )
    assert again.exit_code == 0, again.output
    result = json.loads(again.stdout)
    assert (result["review_id"], result["recorded"]) == (reopened.id, True)
    assert result["vendor_order"] == f"RO-{reopened.id}"
    old, new = rows(mail_db, assignment_t, account_id)
    assert (old.status, old.order_id) == ("closed", first.order_id)
    assert new.order_id == f"RO-{reopened.id}" and new.idempotency_key != old.idempotency_key
    assert [r.decision for r in rows(mail_db, review_t, account_id)] == ["repossess", "repossess"]


def test_the_closing_told_again_reopens_nothing_more(mail_db: Engine, db_url: str, tmp_path: Path) -> None:
    """Webhooks repeat and lookups poll again: the second word of the same closing, and the
    closing recorded again after a reviewer decided the reopened review, open no other review and
    write no second event."""
    from arrears.storage.vendor_orders import close_unrecovered_order

    account_id = "A-AC2"
    row = _assigned(mail_db, tmp_path, account_id)
    assert _closed(row, "2026-12-20T18:00:00Z") == (1, 1)
    assert _closed(row, "2026-12-20T18:00:00Z") == (1, 0)
    # The storage step itself, called again (a rerun of the same poll): nothing new either.
    with mail_db.begin() as c:
        again = close_unrecovered_order(
            c,
            account_id=account_id,
            order_id=row.order_id,
            review_id=row.review_id,
            reason=UNLOCATED,
            at=at("2026-12-21T18:00:00Z"),
        )
    assert again is None
    assert len(rows(mail_db, review_t, account_id)) == 2
    assert [e.data["action"] for e in events(mail_db, account_id, "vendor_order")] == ["placed", "closed"]
    assert len([e for e in events(mail_db, account_id, "review") if e.data.get("reopens")]) == 1


def test_an_account_that_left_review_meanwhile_is_not_reopened(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """Paid off (or cured, or closed) before the agency's closing arrives: the order is recorded as
    closed, and no review opens for an account with nothing left to decide."""
    account_id = "A-AC3"
    row = _assigned(mail_db, tmp_path, account_id)
    with mail_db.begin() as c:
        c.execute(
            update(account_t)
            .where(account_t.c.account_id == account_id)
            .values(stage="paid_off", stage_since=at("2026-12-10T16:00:00Z"))
        )
    assert _closed(row, "2026-12-20T18:00:00Z") == (1, 1)
    assert [r.decision for r in rows(mail_db, review_t, account_id)] == ["repossess"]
    assert [e.data["action"] for e in events(mail_db, account_id, "vendor_order")] == ["placed", "closed"]
    assert _listed(db_url, "2026-12-21T17:00:00Z") == []


def test_a_car_recovered_then_closed_at_the_agency_reopens_nothing(
    mail_db: Engine, db_url: str, tmp_path: Path, agency_sandbox: Any
) -> None:
    """The usual end of an assignment: recovered, then closed. `arrears dispatch` looks it up (the
    closing, with the recovery): a recovery, not an order ended without the car."""
    account_id = "A-AC4"
    row = _assigned(mail_db, tmp_path, account_id)
    agency_sandbox.advance(row.provider_id, "closed", reason="sold at auction", at="2026-12-20T15:00:00Z")
    out = _cli("dispatch", "--as-of", "2026-12-21T18:00:00Z", "--database", db_url, "--json")
    assert out.exit_code == 0, out.output
    [after] = rows(mail_db, assignment_t, account_id)
    assert after.status == "closed" and after.recovered_at is not None
    assert [r.decision for r in rows(mail_db, review_t, account_id)] == ["repossess"]
    assert not [e for e in events(mail_db, account_id, "review") if e.data.get("reopens")]


def test_an_assignment_the_agency_refuses_sends_the_review_back_to_a_person(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """The agency refuses the assignment for good (the VIN on file is not one): the row closes
    with the refusal, and the review goes back to a person with it as the reason."""
    from tasks.agency import push_assignments
    from tasks.review import decide_review, prepare_reviews

    account_id = "A-AC5"
    put_in_review(mail_db, tmp_path, account_id, jurisdiction="US-CA", timezone="America/Los_Angeles")
    with mail_db.begin() as c:  # a VIN mistyped since the import (the agency checks it)
        c.execute(
            update(account_t).where(account_t.c.account_id == account_id).values(vin="1HGCM82633A00435")
        )
    prepare_reviews.fn(at("2026-12-01T17:00:00Z"))
    decide_review(
        mail_db,
        account_id=account_id,
        decision="repossess",
        reviewer="Ana",
        reason="no contact",
        at=at("2026-12-02T17:00:00Z"),
    )
    push_assignments.fn()
    [row] = rows(mail_db, assignment_t, account_id)
    assert row.status == "closed"
    decided, reopened = rows(mail_db, review_t, account_id)
    assert decided.decision == "repossess" and reopened.decision is None
    assert reopened.reason.startswith("agency closed the order without recovery: refused: ")
    assert "VIN" in reopened.reason
    [waiting] = _listed(db_url, "2026-12-03T17:00:00Z")
    assert (waiting["waits_for"], waiting["reopened"]) == ("reviewer", reopened.reason)


def test_an_order_the_agency_closes_after_the_account_was_called_off_reopens_nothing(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """An order we called off (a payment overtook it) that the agency reports closed rather than
    cancelled: what overtook the order stands, and no review opens for it here."""
    from tests.later_stage_helpers import pay

    account_id = "A-AC6"
    row = _assigned(mail_db, tmp_path, account_id)
    pay(mail_db, tmp_path, account_id, "100.00", "2026-12-03T01:00:00Z")
    [marked] = rows(mail_db, assignment_t, account_id)
    assert marked.status == "cancel_pending"
    assert _closed(row, "2026-12-04T18:00:00Z") == (1, 1)
    assert [r.decision for r in rows(mail_db, review_t, account_id)] == ["repossess"]


@pytest.mark.usefixtures("prefect_harness")
def test_the_reopened_review_is_decided_in_its_flow_runs_form(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """A review flow run started for the reopened review (as the next cycle or the outbox run
    starts one for a review without a run) waits for the form at once (the cure period of the stay
    is over), and `review decide` resumes it with the decision."""
    from flows.repossession_review import repossession_review
    from tests.later_stage_helpers import review_run_id

    account_id = "A-AC7"
    row = _assigned(mail_db, tmp_path, account_id)
    _closed(row, "2026-12-20T18:00:00Z")
    running = in_thread(repossession_review, account_id, "2026-12-21T17:00:00Z")
    run_id = review_run_id(mail_db, account_id)
    wait_paused(run_id, "decision")
    [_, reopened] = rows(mail_db, review_t, account_id)
    assert reopened.flow_run_id == run_id
    out = _cli(
        "review",
        "decide",
        account_id,
        "--decision",
        "negotiate",
        "--reviewer",
        "Bo",
        "--reason",
        "the borrower called back",
        "--database",
        db_url,
        "--as-of",
        "2026-12-21T18:00:00Z",
    )
    assert out.exit_code == 0, out.output
    assert "resumed with the decision" in out.output
    assert running.result(timeout=60)["decision"] == "negotiate"
    assert [r.decision for r in rows(mail_db, review_t, account_id)] == ["repossess", "negotiate"]
