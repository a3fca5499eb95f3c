"""Between the repossession and the sale, the borrower gets the car back: `arrears sale redeem`
(UCC 9-623) or `arrears sale reinstate` (Cal. Civ. Code 2983.3, once in 12 months and twice in
the contract); a California notice of sale once that right is spent says so and why (Civ. Code
2983.2(a)); and after the sale, `arrears sale explain` answers the borrower's request for the
explanation (UCC 9-616(b)(1)(B): within 14 days)."""

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from arrears.reinstatement import one_year_before, right_spent
from tests.later_stage_helpers import (
    account,
    at,
    events,
    import_rows,
    put_in_review,
    refresh_later,
    us_account,
)
from tests.test_after_repossession import _recovered
from tests.test_sales import (
    CA,
    CN,
    RECOVERED,
    _cli,
    _closed_after_notice,
    _letters,
    _mail,
    _pdf_text,
    _record,
    _refused,
    _settle,
)

CA_REVIEW = {"jurisdiction": "US-CA", "timezone": "America/Los_Angeles", "state": "CA", "city": "Fresno"}


def _back(db_url: str, how: str, account_id: str, paid_on: str, *extra: str, as_of: str | None = None) -> Any:
    """`arrears sale redeem|reinstate`: paid on `paid_on`, recorded that evening (or at `as_of`)."""
    return _cli(
        db_url,
        "sale",
        how,
        account_id,
        "--paid-on",
        paid_on,
        "--by",
        "Ray Ortiz",
        "--as-of",
        as_of or f"{paid_on}T23:00:00Z",
        *extra,
    )


def _explain(db_url: str, account_id: str, requested_on: str, *extra: str, as_of: str | None = None) -> Any:
    return _cli(
        db_url,
        "sale",
        "explain",
        account_id,
        "--requested-on",
        requested_on,
        "--by",
        "Ray Ortiz",
        "--as-of",
        as_of or f"{requested_on}T23:00:00Z",
        *extra,
    )


def _recovered_again(
    engine: Engine, tmp_path: Path, account_id: str, order_id: str, when: str, **kw: str
) -> None:
    """A later delinquency of the account: back in review (its import brings the past due again)
    and its car recovered under a new order at `when`."""
    from arrears.storage import assignments

    put_in_review(engine, tmp_path, account_id, since=when, **kw)
    with engine.begin() as c:
        assignments.add_assignment(
            c,
            key=f"k-{account_id}-{order_id}",
            order_id=order_id,
            account_id=account_id,
            review_id=None,
            at=at(when),
        )
        [row] = [r for r in assignments.assignments_to_push(c) if r.order_id == order_id]
        assignments.mark_assigned(
            c, row_id=row.id, provider="sandbox", provider_id=f"asg_{order_id}", at=at(when)
        )
        assignments.move_assignment(
            c, row_id=row.id, status="recovered", at=at(when), recovery={"location": "lot 4"}
        )


def _transitions(engine: Engine, account_id: str) -> list[tuple[str, str]]:
    return [(e.data["from"], e.data["to"]) for e in events(engine, account_id, "transition")]


# -- redemption ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("letters_sandbox")
def test_a_redemption_pays_the_account_off_the_car_goes_back_and_its_sale_is_refused(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """Redeemed after the notice of sale was mailed (the account closed on it): the account leaves
    closed for paid_off with the reason, the timeline says a person arranges the car's release, the
    same again changes nothing, and a later sale of the recovery is refused naming the redemption."""
    sale_after = _closed_after_notice(mail_db, tmp_path, letters_sandbox, "A-RED")
    paid = (sale_after - timedelta(days=3)).isoformat()
    done = _back(db_url, "redeem", "A-RED", paid, "--why", "paid at the branch")
    assert done.exit_code == 0, done.output
    assert "leaves closed for paid_off" in done.output and "release with the agency" in done.output
    assert account(mail_db, "A-RED").stage == "paid_off"
    [redeemed] = events(mail_db, "A-RED", "vehicle_redeemed")
    assert redeemed.actor == "operations:Ray Ortiz"
    assert (redeemed.data["order_id"], redeemed.data["paid_on"], redeemed.data["why"]) == (
        "RO-9",
        paid,
        "paid at the branch",
    )
    assert "release with the agency" in redeemed.detail
    [moved] = [e for e in events(mail_db, "A-RED", "transition") if e.data["to"] == "paid_off"]
    assert (
        moved.data["from"] == "closed" and "redeemed" in moved.data["reason"] and "UCC 9-623" in moved.detail
    )

    again = _back(db_url, "redeem", "A-RED", paid, "--json", as_of=f"{paid}T23:30:00Z")
    assert again.exit_code == 0 and json.loads(again.stdout)["changed"] is False
    assert len(events(mail_db, "A-RED", "vehicle_redeemed")) == 1
    other = _refused(_back(db_url, "redeem", "A-RED", (sale_after - timedelta(days=2)).isoformat()))
    assert other.startswith("--paid-on") and "went back to the borrower already" in other

    sold = _refused(_record(db_url, "A-RED", sale_after + timedelta(days=1)))
    assert "vehicle_redeemed" in sold and "goes back to the borrower, unsold" in sold
    assert events(mail_db, "A-RED", "vehicle_sale") == []
    assert "went back to the borrower already" in _refused(_back(db_url, "reinstate", "A-RED", paid))


@pytest.mark.usefixtures("letters_sandbox")
def test_a_redemption_while_the_notice_is_unsent_holds_the_notice_back(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """Redeemed while the notice of sale waits to be handed to the provider: the account leaves
    review for paid_off, the notice is blocked with the reason, and no recoveries step writes
    another."""
    put_in_review(mail_db, tmp_path, "A-RED2")
    _recovered(mail_db, "A-RED2")
    assert _settle(RECOVERED)["sale_notices_written"] == 1
    done = _back(db_url, "redeem", "A-RED2", "2027-01-04", "--json")
    assert done.exit_code == 0, done.output
    said = json.loads(done.stdout)
    assert (said["from"], said["to"], len(said["notices_held_back"])) == (
        "repossession_review",
        "paid_off",
        1,
    )
    [notice] = _letters(mail_db, "A-RED2", "notice_of_sale")
    assert (notice.status, notice.reason) == ("blocked", "the vehicle went back: redemption")
    later = _settle("2027-01-06T15:00:00Z")
    assert (later["sale_notices_written"], later["recoveries_closed"]) == (0, 0)
    assert account(mail_db, "A-RED2").stage == "paid_off"


@pytest.mark.usefixtures("letters_sandbox")
def test_redeem_refuses_what_does_not_fit_and_changes_nothing(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """Exit 2 naming why: no recovered car; a date ahead of today or before the recovery (naming
    --paid-on); a car whose sale is recorded."""
    put_in_review(mail_db, tmp_path, "A-NOCAR")
    assert "has no recovered vehicle" in _refused(_back(db_url, "redeem", "A-NOCAR", "2027-01-04"))
    sale_after = _closed_after_notice(mail_db, tmp_path, letters_sandbox, "A-RREF")
    ahead = _refused(_back(db_url, "redeem", "A-RREF", "2027-01-09", as_of="2027-01-08T20:00:00Z"))
    assert ahead.startswith("--paid-on") and "after today" in ahead
    early = _refused(_back(db_url, "redeem", "A-RREF", "2027-01-02"))
    assert early.startswith("--paid-on") and "before the vehicle was recovered (2027-01-03)" in early
    assert _record(db_url, "A-RREF", sale_after + timedelta(days=1)).exit_code == 0
    sold = _refused(_back(db_url, "redeem", "A-RREF", (sale_after + timedelta(days=2)).isoformat()))
    assert "was sold on" in sold and "only before the sale" in sold
    assert (
        events(mail_db, "A-RREF", "vehicle_redeemed") == [] and account(mail_db, "A-RREF").stage == "closed"
    )


# -- reinstatement ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("letters_sandbox")
def test_a_california_reinstatement_cures_the_account_and_a_new_delinquency_starts_it_again(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """Cal. Civ. Code 2983.3: reinstated within the notice's period, the account leaves closed for
    cured (its past due cleared), the car goes back and its sale is refused; the same again
    changes nothing. A later import with days past due takes it into reminder as any cured
    account, and its old recovery is not noticed for sale again."""
    from tasks.cycle import Shard, advance_shard

    sale_after = _closed_after_notice(mail_db, tmp_path, letters_sandbox, "A-RE1", **CA)
    paid = (sale_after - timedelta(days=2)).isoformat()
    done = _back(db_url, "reinstate", "A-RE1", paid)
    assert done.exit_code == 0, done.output
    assert "leaves closed for cured" in done.output and "lender's choice" not in done.output
    a = account(mail_db, "A-RE1")
    assert (a.stage, a.past_due_amount, a.oldest_due_date) == ("cured", 0, None)
    [reinstated] = events(mail_db, "A-RE1", "vehicle_reinstated")
    assert (reinstated.data["basis"], reinstated.data["right_spent"], reinstated.data["lender_allows"]) == (
        "statute",
        None,
        False,
    )
    [moved] = [e for e in events(mail_db, "A-RE1", "transition") if e.data["to"] == "cured"]
    assert "contract reinstated" in moved.detail and "Cal. Civ. Code 2983.3" in moved.detail
    again = _back(db_url, "reinstate", "A-RE1", paid, as_of=f"{paid}T23:30:00Z")
    assert again.exit_code == 0 and "nothing changed" in again.output
    assert "vehicle_reinstated" in _refused(_record(db_url, "A-RE1", sale_after + timedelta(days=1)))

    # Behind again in April: the import brings the new past due, the cycle takes it into reminder.
    import_rows(
        mail_db,
        tmp_path,
        [us_account("A-RE1", past_due_amount="412.50", oldest_due_date="2027-04-01", **CA)],
        now=at("2027-04-05T15:00:00Z"),
    )
    refresh_later(mail_db, "2027-04-05T16:00:00Z")
    advance_shard.fn(Shard(0, "A", None), at("2027-04-05T16:00:00Z"), date(2027, 4, 5), None)
    assert account(mail_db, "A-RE1").stage == "reminder"
    assert _transitions(mail_db, "A-RE1")[-1] == ("cured", "reminder")
    later = _settle("2027-04-06T16:00:00Z")
    assert (later["sale_notices_written"], later["recoveries_closed"]) == (0, 0)
    assert (
        len(_letters(mail_db, "A-RE1", "notice_of_sale")) == 1
        and account(mail_db, "A-RE1").stage == "reminder"
    )


@pytest.mark.usefixtures("letters_sandbox")
def test_outside_california_a_reinstatement_is_only_the_lenders_choice(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """No statute gives an Iowa borrower reinstatement after repossession (UCC: redemption only):
    refused naming --lender-allows and why; with it, recorded as the lender's choice."""
    sale_after = _closed_after_notice(mail_db, tmp_path, letters_sandbox, "A-REIA")
    paid = (sale_after - timedelta(days=1)).isoformat()
    refused = _refused(_back(db_url, "reinstate", "A-REIA", paid))
    assert refused.startswith("--lender-allows") and "US-IA gives no right to reinstate" in refused
    assert (
        account(mail_db, "A-REIA").stage == "closed" and events(mail_db, "A-REIA", "vehicle_reinstated") == []
    )
    done = _back(db_url, "reinstate", "A-REIA", paid, "--lender-allows", "--json")
    assert done.exit_code == 0, done.output
    said = json.loads(done.stdout)
    assert (said["basis"], said["to"]) == ("lender", "cured") and "UCC 9-623" in said["right_spent"]
    [moved] = [e for e in events(mail_db, "A-REIA", "transition") if e.data["to"] == "cured"]
    assert "the lender's choice" in moved.data["reason"]


@pytest.mark.usefixtures("letters_sandbox")
def test_a_california_reinstatement_after_the_notices_period_is_the_lenders_choice(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """Paid on the notice's first sale day, the right the notice gave (to reinstate before it) has
    ended: refused without --lender-allows."""
    sale_after = _closed_after_notice(mail_db, tmp_path, letters_sandbox, "A-REP", **CA)
    refused = _refused(_back(db_url, "reinstate", "A-REP", sale_after.isoformat()))
    assert refused.startswith("--lender-allows") and "period to reinstate" in refused
    assert account(mail_db, "A-REP").stage == "closed"


@pytest.mark.usefixtures("letters_sandbox")
@pytest.mark.parametrize(("days_after", "allowed"), [(364, False), (366, True)])
def test_california_allows_one_reinstatement_in_any_twelve_months(
    mail_db: Engine, db_url: str, tmp_path: Path, days_after: int, allowed: bool
) -> None:
    """Cal. Civ. Code 2983.3(c): reinstated on 5 January 2027, the contract may be reinstated by
    right again 366 days later, not 364 (without --lender-allows: refused, naming the rule)."""
    put_in_review(mail_db, tmp_path, "A-R12", **CA_REVIEW)
    _recovered(mail_db, "A-R12")
    assert _back(db_url, "reinstate", "A-R12", "2027-01-05").exit_code == 0
    second = date(2027, 1, 5) + timedelta(days=days_after)
    _recovered_again(mail_db, tmp_path, "A-R12", "RO-10", f"{second}T18:00:00Z", **CA_REVIEW)
    done = _back(db_url, "reinstate", "A-R12", second.isoformat())
    if allowed:
        assert done.exit_code == 0, done.output
        assert events(mail_db, "A-R12", "vehicle_reinstated")[-1].data["basis"] == "statute"
    else:
        refused = _refused(done)
        assert refused.startswith("--lender-allows")
        assert "reinstated this contract on 2027-01-05" in refused and "once in any 12 months" in refused
        assert account(mail_db, "A-R12").stage == "repossession_review"


@pytest.mark.usefixtures("letters_sandbox")
def test_a_third_california_reinstatement_is_refused_unless_the_lender_allows_it(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """Twice during the term of the contract spends the right for good, however long ago: the
    third is refused without --lender-allows, and with it recorded as the lender's choice, the
    spent right in its event."""
    put_in_review(mail_db, tmp_path, "A-R3", **CA_REVIEW)
    _recovered(mail_db, "A-R3")
    assert _back(db_url, "reinstate", "A-R3", "2027-01-05").exit_code == 0
    _recovered_again(mail_db, tmp_path, "A-R3", "RO-10", "2028-03-01T18:00:00Z", **CA_REVIEW)
    assert _back(db_url, "reinstate", "A-R3", "2028-03-01").exit_code == 0
    _recovered_again(mail_db, tmp_path, "A-R3", "RO-11", "2030-06-01T18:00:00Z", **CA_REVIEW)
    refused = _refused(_back(db_url, "reinstate", "A-R3", "2030-06-01"))
    assert "on 2027-01-05 and on 2028-03-01" in refused and "twice during the term" in refused
    done = _back(db_url, "reinstate", "A-R3", "2030-06-01", "--lender-allows", "--why", "good history")
    assert done.exit_code == 0 and "(the lender's choice)" in done.output
    third = events(mail_db, "A-R3", "vehicle_reinstated")[-1]
    assert (third.data["basis"], third.data["lender_allows"]) == ("lender", True)
    assert "twice during the term" in third.data["right_spent"]
    assert account(mail_db, "A-R3").stage == "cured"


# -- the California notice once the right is spent ------------------------------------------------------


def _notice_text(engine: Engine, account_id: str) -> str:
    """The words of the account's latest notice of sale, rendered from its stored context."""
    from arrears.letters import render
    from arrears.letters.notices import context_from_json

    notice = _letters(engine, account_id, "notice_of_sale")[-1]
    return " ".join(render("notice_of_sale", context_from_json(notice.context)).text.split())


@pytest.mark.usefixtures("letters_sandbox")
def test_a_california_notice_of_sale_after_a_reinstatement_says_there_is_no_right_and_why(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """Cal. Civ. Code 2983.2(a): reinstated in March, the car recovered again in June: the notice
    states there is no right to reinstate and the reason, prints no reinstatement amount or
    paragraph, and its 10 more days are to redeem only."""
    put_in_review(mail_db, tmp_path, "A-NS", **CA_REVIEW)
    _recovered(mail_db, "A-NS")
    assert _back(db_url, "reinstate", "A-NS", "2027-03-02", as_of="2027-03-02T23:00:00Z").exit_code == 0
    _recovered_again(mail_db, tmp_path, "A-NS", "RO-10", "2027-06-01T18:00:00Z", **CA_REVIEW)
    assert _settle("2027-06-02T16:00:00Z")["sale_notices_written"] == 1
    text = _notice_text(mail_db, "A-NS")
    assert "NO RIGHT TO REINSTATE THE CONTRACT" in text
    assert (
        "you reinstated this contract on 2027-03-02, and the right may be used once in any 12 months "
        "(California Civil Code section 2983.3)"
    ) in text
    assert "YOUR RIGHT TO REINSTATE" not in text and "(to reinstate)" not in text and "$825.00" not in text
    assert "10 more days to get the vehicle back" in text and "10 more days to reinstate" not in text
    assert "$18,450.00" in text  # what redeems it


@pytest.mark.usefixtures("letters_sandbox")
def test_a_california_notice_offers_the_right_once_twelve_months_have_passed_within_its_period(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """Reinstated on 5 January 2027, recovered again on 4 January 2028: within the notice's period
    the 12 months run out, so the notice offers the right (and its amount), never denies it."""
    put_in_review(mail_db, tmp_path, "A-NS2", **CA_REVIEW)
    _recovered(mail_db, "A-NS2")
    assert _back(db_url, "reinstate", "A-NS2", "2027-01-05").exit_code == 0
    _recovered_again(mail_db, tmp_path, "A-NS2", "RO-10", "2028-01-04T18:00:00Z", **CA_REVIEW)
    assert _settle("2028-01-05T16:00:00Z")["sale_notices_written"] == 1
    text = _notice_text(mail_db, "A-NS2")
    assert "YOUR RIGHT TO REINSTATE" in text and "$825.00" in text and "NO RIGHT" not in text


# -- the explanation on request ------------------------------------------------------------------------


def _mail_requested(letters_sandbox: Any, account_id: str, when: str, *, written: str) -> None:
    """Send the letters written at `written`, and have the sandbox mail the request's explanation."""
    from tasks.letters import send_letters, track_letters

    send_letters.fn(as_of=at(written) + timedelta(hours=1))
    [sent] = [
        x
        for x in letters_sandbox.letters()
        if account_id.lower() in x["idempotency_key"] and "explanation-requested" in x["idempotency_key"]
    ]
    letters_sandbox.advance(sent["id"], "mailed", at=when)
    track_letters.fn()


@pytest.mark.usefixtures("letters_sandbox")
def test_an_explanation_requested_is_written_again_with_its_due_date_and_mailed(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """UCC 9-616(b)(1)(B): the borrower asks for the explanation after it was mailed once; the
    request is recorded with its due date (14 days on), the same request again changes nothing,
    the next recoveries step writes the explanation again under a key of its own with that day as
    its deadline (`letters list`), it is mailed, and the request is answered on the timeline once."""
    sale_after = _closed_after_notice(mail_db, tmp_path, letters_sandbox, "A-EXP")
    sold = sale_after + timedelta(days=2)
    assert _record(db_url, "A-EXP", sold).exit_code == 0
    written = f"{sold + timedelta(days=2)}T15:00:00Z"
    _settle(written)
    _mail(
        letters_sandbox,
        "A-EXP",
        "deficiency_explanation",
        f"{sold + timedelta(days=4)}T15:00:00Z",
        written=written,
    )
    asked = sold + timedelta(days=10)
    due = asked + timedelta(days=14)
    done = _explain(db_url, "A-EXP", asked.isoformat())
    assert done.exit_code == 0, done.output
    assert f"due by {due.isoformat()}" in done.output
    [request] = events(mail_db, "A-EXP", "explanation_requested")
    assert (request.actor, request.data["due_on"], request.data["requested_on"]) == (
        "operations:Ray Ortiz",
        due.isoformat(),
        asked.isoformat(),
    )
    again = _explain(db_url, "A-EXP", asked.isoformat(), "--json", as_of=f"{asked}T23:30:00Z")
    assert again.exit_code == 0 and json.loads(again.stdout)["changed"] is False
    assert len(events(mail_db, "A-EXP", "explanation_requested")) == 1

    step = f"{asked + timedelta(days=1)}T15:00:00Z"
    assert _settle(step)["requested_explanations_written"] == 1
    first, second = _letters(mail_db, "A-EXP", "deficiency_explanation")
    assert (
        "explanation-requested" in second.idempotency_key and second.idempotency_key != first.idempotency_key
    )
    listed = _cli(db_url, "letters", "list", "--account", "A-EXP", "--json")
    [row] = [x for x in json.loads(listed.stdout) if x["id"] == second.id]
    assert row["deadline"] == at(f"{due + timedelta(days=1)}T06:00:00Z").isoformat()  # Iowa's midnight, CST
    _mail_requested(letters_sandbox, "A-EXP", f"{asked + timedelta(days=3)}T15:00:00Z", written=step)
    assert "deficiency, which you still owe us: $10,100.00" in _pdf_text(mail_db, second.id)
    after = _settle(f"{asked + timedelta(days=4)}T15:00:00Z")
    assert (after["requested_explanations_written"], after["requested_explanations_waiting"]) == (0, 0)
    [answered] = events(mail_db, "A-EXP", "explanation_answered")
    assert f"mailed {asked + timedelta(days=3)}" in answered.detail and answered.data["late"] is False
    _settle(f"{asked + timedelta(days=5)}T15:00:00Z")
    assert len(events(mail_db, "A-EXP", "explanation_answered")) == 1
    assert len(_letters(mail_db, "A-EXP", "deficiency_explanation")) == 2


@pytest.mark.usefixtures("letters_sandbox")
def test_explain_refuses_what_does_not_fit(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """Exit 2 naming why, nothing recorded: no sale recorded; a CN account (no UCC 9-616); a
    request dated ahead of today or before the sale (naming --requested-on); a barred deficiency."""
    sale_after = _closed_after_notice(mail_db, tmp_path, letters_sandbox, "A-EXR")
    assert "has no sale recorded" in _refused(_explain(db_url, "A-EXR", sale_after.isoformat()))
    sold = sale_after + timedelta(days=1)
    assert _record(db_url, "A-EXR", sold).exit_code == 0
    ahead = _refused(
        _explain(db_url, "A-EXR", (sold + timedelta(days=3)).isoformat(), as_of=f"{sold}T23:00:00Z")
    )
    assert ahead.startswith("--requested-on") and "after today" in ahead
    before = _refused(_explain(db_url, "A-EXR", (sold - timedelta(days=1)).isoformat()))
    assert before.startswith("--requested-on") and "before the sale" in before
    assert events(mail_db, "A-EXR", "explanation_requested") == []

    put_in_review(mail_db, tmp_path, "A-EXCN", **CN)
    _recovered(mail_db, "A-EXCN")
    _settle(RECOVERED)
    assert _record(db_url, "A-EXCN", date(2027, 1, 10), credits="0").exit_code == 0
    assert "the US's (UCC 9-616(b))" in _refused(_explain(db_url, "A-EXCN", "2027-01-11"))

    barred_after = _closed_after_notice(mail_db, tmp_path, letters_sandbox, "A-EXB")
    assert _record(db_url, "A-EXB", barred_after - timedelta(days=1)).exit_code == 0
    barred = _refused(_explain(db_url, "A-EXB", barred_after.isoformat()))
    assert "deficiency is barred" in barred and "waiving" in barred


# -- the rule -------------------------------------------------------------------------------------------


def test_the_twelve_months_end_on_the_anniversary_and_twice_spends_the_right_for_good() -> None:
    """Once in any 12 months: spent the day before the same calendar day a year on, not on it
    (29 February counts from the 28th); twice before, spent whatever the dates; later
    reinstatements than the day asked about are not counted."""
    last = date(2027, 3, 2)
    assert right_spent([last], date(2028, 3, 1)) is not None  # 365 days on, across 29 February
    assert right_spent([last], date(2028, 3, 2)) is None  # 366 days on
    assert one_year_before(date(2028, 2, 29)) == date(2027, 2, 28)
    twice = right_spent([date(2020, 1, 1), date(2022, 1, 1)], date(2030, 1, 1))
    assert twice is not None and twice.rule == "twice"
    assert twice.said() == (
        "you reinstated this contract on 2020-01-01 and on 2022-01-01, and the right may be used twice "
        "during the term of the contract (California Civil Code section 2983.3)"
    )
    assert right_spent([date(2031, 1, 1)], date(2030, 1, 1)) is None
