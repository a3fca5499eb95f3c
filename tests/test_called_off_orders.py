"""A repossession order we call off, or one that cannot be sent, sends its review back to a person.

Before, as for an order the agency closed without the car (`tests/test_review_after_agency.py`),
the decided review (repossess) stood with nothing to carry it out: `arrears review list` showed
nothing, `arrears review decide` refused a new decision, and the account waited in repossession
review until charge-off. Two paths led there:

- an order called off (a partial payment that did not cure, a hold, a settlement) while the account
  stayed in review: a new review now opens once nothing that overtook the order still runs (the
  payment applied without curing; under a hold at once, listed as waiting for the hold; a
  settlement once it lapses), never for an account the payment cured;
- an order blocked for want of a VIN or a mailing address: a new review opens at once, saying so;
  an import that brings the data sends the blocked order at the next dispatch (the new review
  closes: the decision stands), or a person decides again (the blocked order is never sent then).

Each once, whatever runs again; end to end through the CLI, SQLite and the sandbox agency.
"""

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from arrears.models import AgencyAssignment
from tests.later_stage_helpers import (
    account,
    at,
    events,
    import_rows,
    pay,
    put_in_review,
    refresh_later,
    review_t,
    rows,
    us_account,
)
from tests.test_review_after_agency import _assigned, _cli, _closed, _listed

assignment_t = AgencyAssignment.__table__  # type: ignore[attr-defined]
CALIFORNIA = {"jurisdiction": "US-CA", "timezone": "America/Los_Angeles"}


def _decide(db_url: str, account_id: str, decision: str, as_of: str, reviewer: str = "Bo") -> Any:
    out = _cli(
        "review", "decide", account_id, "--decision", decision, "--reviewer", reviewer,
        "--reason", "decided again", "--as-of", as_of, "--database", db_url, "--json",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def _reopenings(engine: Engine, account_id: str) -> list[Any]:
    return [e for e in events(engine, account_id, "review") if e.data.get("reopens")]


# -- called off ---------------------------------------------------------------------------------


def test_a_partial_payment_that_does_not_cure_sends_the_review_back_once_applied(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """A payment of 100.00 of the 825.00 past due calls the order off at its import (the agency is
    told). Whether it cures is known once the cycle applies it: not at the import, so no review
    opens there; the cycle's refresh applies it, the account stays in review, and a new review
    opens with the payment as its reason, listed and decided anew. Refreshed again: nothing more."""
    account_id = "A-CO1"
    first = _assigned(mail_db, tmp_path, account_id)
    pay(mail_db, tmp_path, account_id, "100.00", "2026-12-03T18:00:00Z")
    [marked] = rows(mail_db, assignment_t, account_id)
    assert marked.status == "cancel_pending"
    assert [r.decision for r in rows(mail_db, review_t, account_id)] == ["repossess"]  # not applied yet

    refresh_later(mail_db, "2026-12-04T17:00:00Z")
    decided, reopened = rows(mail_db, review_t, account_id)
    assert reopened.decision is None and reopened.cure_deadline == decided.cure_deadline
    assert reopened.reason.startswith("repossession order called off: payment ")
    assert "USD 100.00 received 2026-12-03" in reopened.reason
    [opened] = _reopenings(mail_db, account_id)
    assert opened.data["reopens"] == decided.id and opened.data["order_id"] == first.order_id
    refresh_later(mail_db, "2026-12-05T17:00:00Z")
    assert len(rows(mail_db, review_t, account_id)) == 2 and len(_reopenings(mail_db, account_id)) == 1

    [waiting] = _listed(db_url, "2026-12-05T18:00:00Z")
    assert (waiting["waits_for"], waiting["id"], waiting["reopened"]) == (
        "reviewer",
        reopened.id,
        reopened.reason,
    )
    again = _decide(db_url, account_id, "repossess", "2026-12-05T18:00:00Z")
    assert (again["review_id"], again["vendor_order"]) == (reopened.id, f"RO-{reopened.id}")


def test_a_payment_that_cures_sends_nothing_back(mail_db: Engine, db_url: str, tmp_path: Path) -> None:
    """The whole past due paid: the order is called off and the account leaves review (cured) at
    the advance; no review opens for it, before or after."""
    account_id = "A-CO2"
    _assigned(mail_db, tmp_path, account_id)
    pay(mail_db, tmp_path, account_id, "825.00", "2026-12-03T18:00:00Z")
    refresh_later(mail_db, "2026-12-04T17:00:00Z")
    assert account(mail_db, account_id).past_due_amount == 0
    assert [r.decision for r in rows(mail_db, review_t, account_id)] == ["repossess"]
    assert not _reopenings(mail_db, account_id)


def test_a_hold_sends_the_review_back_to_wait_for_the_hold(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """A dispute placed on an account whose car is assigned calls the order off at once, and the
    review goes back to a person at once: `review list` shows it waiting for the hold, then, once
    the hold is lifted, for a reviewer, with the calling off as its reason."""
    account_id = "A-CO3"
    _assigned(mail_db, tmp_path, account_id)
    placed = _cli(
        "hold", "place", account_id, "dispute", "--reason", "borrower disputes the balance",
        "--as-of", "2026-12-03T18:00:00Z", "--database", db_url,
    )  # fmt: skip
    assert placed.exit_code == 0, placed.output
    assert rows(mail_db, assignment_t, account_id)[0].status == "cancelled"  # called off at the agency
    _, reopened = rows(mail_db, review_t, account_id)
    assert reopened.reason == "repossession order called off: hold:dispute"
    [held] = _listed(db_url, "2026-12-04T17:00:00Z")
    assert (held["waits_for"], held["reopened"]) == ("hold", reopened.reason)
    assert "hold:dispute" in held["detail"]

    lifted = _cli(
        "hold", "lift", account_id, "dispute", "--reason", "validated",
        "--as-of", "2026-12-10T18:00:00Z", "--database", db_url,
    )  # fmt: skip
    assert lifted.exit_code == 0, lifted.output
    refresh_later(mail_db, "2026-12-11T17:00:00Z")  # nothing more opens
    [waiting] = _listed(db_url, "2026-12-11T18:00:00Z")
    assert (waiting["waits_for"], waiting["id"]) == ("reviewer", reopened.id)
    assert len(_reopenings(mail_db, account_id)) == 1


def test_a_settlement_sends_the_review_back_only_once_it_lapses(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """While the settlement runs the account waits, and nothing is to decide; unpaid by its date it
    lapses and collection resumes where it stood, in review: the review goes back to a person."""
    account_id = "A-CO4"
    _assigned(mail_db, tmp_path, account_id)
    agreed = _cli(
        "settlement", "record", account_id, "--amount", "9000.00", "--pay-by", "2026-12-20",
        "--reason", "lump sum offered", "--as-of", "2026-12-03T18:00:00Z", "--database", db_url,
    )  # fmt: skip
    assert agreed.exit_code == 0, agreed.output
    refresh_later(mail_db, "2026-12-10T17:00:00Z")
    assert [r.decision for r in rows(mail_db, review_t, account_id)] == ["repossess"]
    assert _listed(db_url, "2026-12-10T18:00:00Z") == []

    refresh_later(mail_db, "2026-12-25T17:00:00Z")  # lapsed (three days' grace after the 20th)
    _, reopened = rows(mail_db, review_t, account_id)
    assert reopened.reason.startswith("repossession order called off: a settlement was agreed")
    assert "lapsed" in reopened.reason
    [waiting] = _listed(db_url, "2026-12-25T18:00:00Z")
    assert (waiting["waits_for"], waiting["reopened"]) == ("reviewer", reopened.reason)


# -- blocked --------------------------------------------------------------------------------------


def _blocked(engine: Engine, tmp_path: Path, account_id: str, missing: dict[str, None]) -> Any:
    """A US-CA account whose file lacks `missing` (the VIN, or the mailing address), in review; a
    reviewer approves the repossession. The order cannot be sent: its assignment row."""
    from tasks.agency import push_assignments
    from tasks.review import decide_review, prepare_reviews

    put_in_review(engine, tmp_path, account_id, **CALIFORNIA, **missing)  # type: ignore[arg-type]
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
    push_assignments.fn()
    [row] = rows(engine, assignment_t, account_id)
    assert row.status == "blocked" and row.provider_id is None
    return row


NO_VIN = {"vin": None}
NO_ADDRESS = {"address_line1": None, "city": None, "state": None, "postal_code": None}


@pytest.mark.parametrize(
    ("missing", "said"), [(NO_VIN, "no VIN on file"), (NO_ADDRESS, "no mailing address on file")]
)
def test_a_blocked_order_is_listed_and_goes_once_an_import_brings_the_data(
    mail_db: Engine, db_url: str, tmp_path: Path, agency_sandbox: Any, missing: dict[str, None], said: str
) -> None:
    """The order cannot be sent: a new review opens at once, `review list` says why. An accounts
    import brings the VIN (or address): the next `arrears dispatch` sends the same order under its
    key, the approval standing, and closes the review it had opened. Again: nothing more."""
    account_id = f"A-CB{len(said)}"
    row = _blocked(mail_db, tmp_path, account_id, missing)
    _, reopened = rows(mail_db, review_t, account_id)
    assert reopened.decision is None and reopened.reason.startswith(
        f"repossession order cannot be sent to the agency: {said}"
    )
    [waiting] = _listed(db_url, "2026-12-03T17:00:00Z")
    assert (waiting["id"], waiting["reopened"]) == (reopened.id, reopened.reason)

    import_rows(mail_db, tmp_path, [us_account(account_id, past_due_amount="825.00", **CALIFORNIA)])
    for _ in range(2):
        out = _cli("dispatch", "--as-of", "2026-12-04T18:00:00Z", "--database", db_url, "--json")
        assert out.exit_code == 0, out.output
    [sent] = rows(mail_db, assignment_t, account_id)
    assert (sent.status, sent.idempotency_key) == ("assigned", row.idempotency_key) and sent.provider_id
    assert len(agency_sandbox.assignments()) == 1
    decided_after, closed = rows(mail_db, review_t, account_id)
    assert decided_after.decision == "repossess" and closed.decided_at is not None
    assert closed.decision is None and closed.reason.startswith("closed: ")
    assert _listed(db_url, "2026-12-05T17:00:00Z") == []

    # The agency later closes it without the car: the review goes back to a person once more.
    assert _closed(sent, "2026-12-20T18:00:00Z") == (1, 1)
    *_, third = rows(mail_db, review_t, account_id)
    assert third.decision is None and third.reason.startswith("agency closed the order without recovery")


def test_a_blocked_order_decided_again_is_never_sent(
    mail_db: Engine, db_url: str, tmp_path: Path, agency_sandbox: Any
) -> None:
    """The VIN is imported and a reviewer decides the reopened review again (repossess) before the
    next dispatch: the new order goes, and the blocked one, superseded, is called off, never sent."""
    account_id = "A-CB9"
    old = _blocked(mail_db, tmp_path, account_id, NO_VIN)
    _, reopened = rows(mail_db, review_t, account_id)
    import_rows(mail_db, tmp_path, [us_account(account_id, past_due_amount="825.00", **CALIFORNIA)])
    again = _decide(db_url, account_id, "repossess", "2026-12-03T18:00:00Z")
    assert again["vendor_order"] == f"RO-{reopened.id}"
    out = _cli("dispatch", "--as-of", "2026-12-04T18:00:00Z", "--database", db_url, "--json")
    assert out.exit_code == 0, out.output
    first, second = rows(mail_db, assignment_t, account_id)
    assert (first.order_id, first.status) == (old.order_id, "cancelled")
    assert second.status == "assigned" and len(agency_sandbox.assignments()) == 1
    actions = [(e.data["order_id"], e.data["action"]) for e in events(mail_db, account_id, "vendor_order")]
    assert (old.order_id, "cancelled") in actions
    assert len(rows(mail_db, review_t, account_id)) == 2


# -- the same, for accounts already stuck -------------------------------------------------------


def test_a_closing_recorded_before_reviews_were_sent_back_is_sent_back_at_the_next_refresh(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """An assignment closed without the car as the agency task recorded it before reviews went back
    to a person (the row moved, nothing else): the next refresh sends the review back, once."""
    from arrears.storage.assignments import move_assignment

    account_id = "A-CL1"
    row = _assigned(mail_db, tmp_path, account_id)
    with mail_db.begin() as c:
        assert move_assignment(
            c, row_id=row.id, status="closed", at=at("2026-12-20T18:00:00Z"), reason="lost"
        )
    assert _listed(db_url, "2026-12-21T17:00:00Z") == []
    for _ in range(2):
        refresh_later(mail_db, "2026-12-21T17:00:00Z")
    _, reopened = rows(mail_db, review_t, account_id)
    assert reopened.reason == "agency closed the order without recovery: no reason given"
    assert len(_reopenings(mail_db, account_id)) == 1


def test_a_repossession_approved_under_a_hold_is_sent_back_once_it_can_be_decided_anew(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """Approved while a dispute barred it, the repossession places no order (`settle_decision`):
    the review goes back to a person at the next refresh, waiting for the hold, then, once it is
    lifted, for a reviewer."""
    from tasks.review import prepare_reviews

    account_id = "A-CW1"
    put_in_review(mail_db, tmp_path, account_id, **CALIFORNIA)
    prepare_reviews.fn(at("2026-12-01T17:00:00Z"))
    placed = _cli(
        "hold", "place", account_id, "dispute", "--reason", "borrower disputes the balance",
        "--as-of", "2026-12-01T18:00:00Z", "--database", db_url,
    )  # fmt: skip
    assert placed.exit_code == 0, placed.output
    decided = _decide(db_url, account_id, "repossess", "2026-12-02T17:00:00Z", reviewer="Ana")
    assert decided["vendor_order"] is None and rows(mail_db, assignment_t, account_id) == []
    refresh_later(mail_db, "2026-12-03T17:00:00Z")
    _, reopened = rows(mail_db, review_t, account_id)
    assert reopened.reason.startswith("repossession order withheld: ")
    [held] = _listed(db_url, "2026-12-03T18:00:00Z")
    assert (held["waits_for"], held["reopened"]) == ("hold", reopened.reason)
    lifted = _cli(
        "hold", "lift", account_id, "dispute", "--reason", "validated",
        "--as-of", "2026-12-10T18:00:00Z", "--database", db_url,
    )  # fmt: skip
    assert lifted.exit_code == 0, lifted.output
    refresh_later(mail_db, "2026-12-11T17:00:00Z")
    [waiting] = _listed(db_url, "2026-12-11T18:00:00Z")
    assert (waiting["waits_for"], waiting["id"]) == ("reviewer", reopened.id)
