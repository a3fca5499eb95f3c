"""After the repossession decision: the assignment's life at the agency, the recovery, and what
the law asks next (the notice of sale, UCC 9-611/9-614; Cal. Civ. Code 2983.2) before the account
closes (DESIGN §2, §6; compliance.md; providers.md, "Repossession agencies")."""

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from arrears.models import AgencyAssignment, Letter
from tests.later_stage_helpers import account, at, events, put_in_review, rows

assignment_t = AgencyAssignment.__table__  # type: ignore[attr-defined]
letter_t = Letter.__table__  # type: ignore[attr-defined]


def _recovered(engine: Engine, account_id: str, *, when: str = "2027-01-03T12:00:00Z") -> None:
    """An order of `account_id` at the agency, which reports the car recovered at `when`."""
    from arrears.storage import assignments

    with engine.begin() as c:
        assignments.add_assignment(
            c,
            key=f"k-{account_id}",
            order_id="RO-9",
            account_id=account_id,
            review_id=None,
            at=at("2027-01-01T00:00:00Z"),
        )
        [row] = assignments.assignments_to_push(c)
        assignments.mark_assigned(
            c,
            row_id=row.id,
            provider="sandbox",
            provider_id=f"asg_{account_id}",
            at=at("2027-01-01T01:00:00Z"),
        )
        assignments.move_assignment(
            c, row_id=row.id, status="recovered", at=at(when), recovery={"location": "lot 4"}
        )


@pytest.mark.parametrize("hold", ["bankruptcy", "military"])
def test_a_car_recovered_under_a_collection_hold_is_not_noticed_for_sale(
    mail_db: Engine, tmp_path: Path, hold: str
) -> None:
    """A car the agency took before the cancel reached it, of a borrower now in bankruptcy (the
    automatic stay) or in military service (SCRA 3952): no notice of sale is written and the
    account is not closed on it; the recovery waits, and its timeline says why, once."""
    from tasks.recovery import settle_recoveries

    put_in_review(mail_db, tmp_path, "A-HOLD", flags=hold)
    _recovered(mail_db, "A-HOLD")
    for day in ("2027-01-04T00:00:00Z", "2027-01-05T00:00:00Z"):
        counts = settle_recoveries(at(day))
        assert (counts["sale_notices_written"], counts["recoveries_waiting"]) == (0, 1)
    assert rows(mail_db, letter_t, "A-HOLD") == []
    assert account(mail_db, "A-HOLD").stage == "repossession_review"
    said = [e for e in events(mail_db, "A-HOLD") if f"hold:{hold}" in e.detail and "RO-9" in e.detail]
    assert len(said) == 1, [e.detail for e in events(mail_db, "A-HOLD")]


def test_a_cancel_too_late_records_the_recovery_as_the_agency_reports_it(
    mail_db: Engine, tmp_path: Path, agency_sandbox: Any
) -> None:
    """The car was recovered before the borrower's payment called the agent off: the agency answers
    the cancel 409 (not cancellable); the recovery is recorded with the agency's date, place and
    condition (the evidence the notice of sale and a deficiency claim rest on), not dated at our
    cancel with nothing said of where or how."""
    from tasks.agency import push_assignments
    from tests.test_agency_overtaken import _approved, _pay

    _approved(mail_db, tmp_path, "A-LATE")
    push_assignments.fn()
    [row] = rows(mail_db, assignment_t, "A-LATE")
    agency_sandbox.advance(row.provider_id, "recovered", at="2026-12-02T23:00:00Z")
    _pay(mail_db, tmp_path, "A-LATE")
    push_assignments.fn()
    [row] = rows(mail_db, assignment_t, "A-LATE")
    assert row.status == "recovered"
    assert row.recovered_at == at("2026-12-02T23:00:00Z")
    assert row.recovery["location"] == "ACME Recovery lot, Des Moines IA" and row.recovery["condition"]


def test_the_personal_property_the_agency_inventoried_is_kept_with_the_recovery(
    mail_db: Engine, tmp_path: Path, agency_sandbox: Any
) -> None:
    """The agency's recovery report carries the inventory of the personal property found in the
    car (providers.md: date, place, condition report, personal-property inventory), which the
    borrower may claim back: it is kept with the recovery and named on the timeline, not dropped."""
    from tasks.agency import push_assignments, track_assignments
    from tests.test_agency_overtaken import _approved

    _approved(mail_db, tmp_path, "A-PROP")
    push_assignments.fn()
    [row] = rows(mail_db, assignment_t, "A-PROP")
    agency_sandbox.set_rules(personal_property=["child car seat", "toolbox"])
    agency_sandbox.advance(row.provider_id, "recovered", at="2026-12-03T23:00:00Z")
    track_assignments.fn()
    [row] = rows(mail_db, assignment_t, "A-PROP")
    assert row.status == "recovered"
    assert row.recovery["personal_property"] == ["child car seat", "toolbox"]
    [said] = [e for e in events(mail_db, "A-PROP", "assignment") if "recovered at the agency" in e.detail]
    assert "child car seat; toolbox" in said.detail


def test_a_car_taken_before_the_call_off_reached_the_agency_is_an_alarm_and_no_sale(
    mail_db: Engine, tmp_path: Path, agency_sandbox: Any
) -> None:
    """The borrower paid and the order was called off, but the agency recovered the car before
    the cancel reached it: the recovery is kept (the car is on the lot), the timeline raises the
    alarm a person must act on (return the car), and no notice of sale goes to a borrower whose
    payment withdrew the decision."""
    from tasks.agency import push_assignments
    from tasks.recovery import settle_recoveries
    from tests.test_agency_overtaken import _approved, _pay

    _approved(mail_db, tmp_path, "A-OVER")
    push_assignments.fn()
    [row] = rows(mail_db, assignment_t, "A-OVER")
    agency_sandbox.advance(row.provider_id, "recovered", at="2026-12-02T23:00:00Z")
    _pay(mail_db, tmp_path, "A-OVER")
    push_assignments.fn()
    assert rows(mail_db, assignment_t, "A-OVER")[0].status == "recovered"
    alarms = [e for e in events(mail_db, "A-OVER", "assignment") if "a person must act" in e.detail]
    assert len(alarms) == 1 and alarms[0].data["status"] == "recovered_after_cancel"
    counts = settle_recoveries(at("2026-12-04T00:00:00Z"))
    assert (counts["sale_notices_written"], counts["recoveries_waiting"]) == (0, 1)
    assert [x for x in rows(mail_db, letter_t, "A-OVER") if x.kind == "notice_of_sale"] == []


def _ca_notice_text(mail_db: Engine, tmp_path: Path) -> tuple[Any, str]:
    """The notice of sale a US-CA recovery writes: its stored context and its words as printed."""
    from arrears.letters import render
    from arrears.letters.notices import context_from_json
    from tasks.recovery import settle_recoveries

    put_in_review(mail_db, tmp_path, "A-CA", jurisdiction="US-CA", timezone="America/Los_Angeles")
    _recovered(mail_db, "A-CA")
    assert settle_recoveries(at("2027-01-04T00:00:00Z"))["sale_notices_written"] == 1
    [notice] = rows(mail_db, letter_t, "A-CA")
    context = context_from_json(notice.context)
    return context, render("notice_of_sale", context).text


def test_a_california_notice_of_sale_keeps_what_to_pay_to_reinstate_and_to_redeem(
    mail_db: Engine, tmp_path: Path
) -> None:
    """The US-CA notice of intent to sell is written with the amounts it must state (Cal. Civ.
    Code 2983.2(a)): the past due, which reinstates the contract, and the balance, which redeems
    the car, itemized; the letter's stored context keeps them as evidence."""
    from decimal import Decimal

    context, _ = _ca_notice_text(mail_db, tmp_path)
    assert context.amount_to_cure == Decimal("825.00")
    assert dict(context.itemization) == {
        "Past due instalments (to reinstate)": Decimal("825.00"),
        "Unpaid balance of the contract (to redeem)": Decimal("18450.00"),
    }


def test_a_california_notice_of_sale_prints_the_reinstatement_right_and_the_amounts(
    mail_db: Engine, tmp_path: Path
) -> None:
    """The printed US-CA notice tells the borrower of the right to reinstate (Civ. Code 2983.3,
    once in 12 months) and what to pay to reinstate and to redeem, not only 'contact us'."""
    _, text = _ca_notice_text(mail_db, tmp_path)
    assert "RIGHT TO REINSTATE" in text and "825.00" in text and "18,450.00" in text


def test_a_california_notice_of_sale_offers_ten_more_days_and_an_accounting(
    mail_db: Engine, tmp_path: Path
) -> None:
    """Cal. Civ. Code 2983.2(a) (and Fin. Code 22328(b)(3), its twin for lenders): the notice must
    say that on written request the redemption and reinstatement periods are extended by 10 days,
    and that a written accounting of the sale is given on request. Without them no deficiency
    may be claimed after the sale."""
    _, text = _ca_notice_text(mail_db, tmp_path)
    flat = " ".join(text.split())
    assert "YOUR RIGHT TO MORE TIME" in flat
    assert "we will give you 10 more days to get the vehicle back" in flat
    assert "10 more days to reinstate the contract" in flat
    assert "written accounting of the sale of the vehicle" in flat


def test_a_notice_of_sale_outside_california_makes_no_california_promises(
    mail_db: Engine, tmp_path: Path
) -> None:
    """The extension and the accounting are California's: an Iowa notice (UCC 9-614's form) does not
    promise them."""
    from arrears.letters import render
    from arrears.letters.notices import context_from_json
    from tasks.recovery import settle_recoveries

    put_in_review(mail_db, tmp_path, "A-IA", jurisdiction="US-IA", timezone="America/Chicago")
    _recovered(mail_db, "A-IA")
    assert settle_recoveries(at("2027-01-04T00:00:00Z"))["sale_notices_written"] == 1
    [notice] = rows(mail_db, letter_t, "A-IA")
    text = render("notice_of_sale", context_from_json(notice.context)).text
    assert "NOTICE OF OUR PLAN TO SELL PROPERTY" in text
    assert "MORE TIME" not in text and "accounting" not in text and "REINSTATE" not in text
