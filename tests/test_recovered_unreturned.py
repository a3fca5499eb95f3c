"""A recovered car whose account a payment cured, paid off or settled before the sale: no notice
of sale, no close, but the car is on the agency's lot and the borrower is owed it back. The
recoveries step says so once on the timeline (`recovered_car_unreturned`) and counts it
(`recoveries_to_return`), `arrears review list` lists it (`return-car`) until `arrears sale
reinstate|redeem` records its return, which takes an account already at its exit."""

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from tests.later_stage_helpers import account, at, events, pay, put_in_review, refresh_later, rows
from tests.test_after_repossession import _recovered, assignment_t
from tests.test_sale_after_recovery import _back
from tests.test_sales import CA, RECOVERED, _cli, _letters, _refused, _settle

UNRETURNED = "recovered_car_unreturned"


def _advance(engine: Engine, when: str) -> None:
    """The cycle's refresh (the payments imported applied) and advance at `when`."""
    from tasks.cycle import Shard, advance_shard

    refresh_later(engine, when)
    instant = at(when)
    advance_shard.fn(Shard(0, "A", None), instant, date(instant.year, instant.month, instant.day), None)


def _to_return(db_url: str, as_of: str) -> list[dict[str, Any]]:
    """`arrears review list --waits-for return-car --json`."""
    out = _cli(db_url, "review", "list", "--waits-for", "return-car", "--json", "--as-of", as_of)
    assert out.exit_code == 0, out.output
    return list(json.loads(out.stdout))


def _said_command(detail: str, paid_on: str) -> list[str]:
    """The `arrears sale ...` command the timeline names, its placeholders filled."""
    found = re.search(r"`arrears (sale [^`]+)`", detail)
    assert found, detail
    return found.group(1).replace("DAY", paid_on).replace("NAME", "Ray-Ortiz").split()


@pytest.mark.usefixtures("letters_sandbox")
@pytest.mark.parametrize(("kw", "lender_allows"), [({}, True), (CA, False)], ids=["US-IA", "US-CA"])
def test_a_car_recovered_before_the_cure_is_said_once_listed_and_reinstated_without_a_transition(
    mail_db: Engine, db_url: str, tmp_path: Path, kw: dict[str, str], lender_allows: bool
) -> None:
    """The notice of sale written, not yet mailed, when an import brings the past due: the advance
    cures the account; the next recoveries step writes no notice and closes nothing, holds the
    unsent notice back, says once that the car is to go back with the command that records it
    (`--lender-allows` where no statute gives the right: Iowa), counts it at every step and lists
    it for `return-car`. That command, as said, records the reinstatement on the cured account
    without a transition; then nothing is said again and the list is empty."""
    put_in_review(mail_db, tmp_path, "A-CUR", **kw)
    _recovered(mail_db, "A-CUR")
    assert _settle(RECOVERED)["sale_notices_written"] == 1
    pay(mail_db, tmp_path, "A-CUR", "825.00", "2027-01-05T15:00:00Z")
    _advance(mail_db, "2027-01-05T16:00:00Z")
    assert account(mail_db, "A-CUR").stage == "cured"

    first = _settle("2027-01-05T17:00:00Z")
    assert (first["recoveries_to_return"], first["sale_notices_written"], first["recoveries_closed"]) == (
        1,
        0,
        0,
    )
    [notice] = _letters(mail_db, "A-CUR", "notice_of_sale")
    assert (notice.status, notice.reason) == ("blocked", "the account is cured: the vehicle waits to go back")
    [said] = events(mail_db, "A-CUR", UNRETURNED)
    assert (said.data["order_id"], said.data["stage"], said.data["held_back"]) == (
        "RO-9",
        "cured",
        [notice.id],
    )
    assert "return the car; record it with `arrears sale reinstate A-CUR --paid-on DAY" in said.detail
    assert ("--lender-allows" in said.detail) is lender_allows
    assert _settle("2027-01-06T17:00:00Z")["recoveries_to_return"] == 1
    assert len(events(mail_db, "A-CUR", UNRETURNED)) == 1

    [listed] = _to_return(db_url, "2027-01-06T18:00:00Z")
    assert (listed["account_id"], listed["what"], listed["waits_for"], listed["detail"]) == (
        "A-CUR",
        "vehicle",
        "return car",
        said.detail.removeprefix("recovered vehicle not returned: ").split("; notice of sale")[0],
    )
    assert listed["since"] == at("2027-01-05T16:00:00Z").isoformat()  # the cure

    cured = [e for e in events(mail_db, "A-CUR", "transition") if e.data["to"] == "cured"]
    done = _cli(db_url, *_said_command(said.detail, "2027-01-05"), "--as-of", "2027-01-06T19:00:00Z")
    assert done.exit_code == 0, done.output
    assert "the account is cured" in done.output and "leaves" not in done.output
    [reinstated] = events(mail_db, "A-CUR", "vehicle_reinstated")
    assert (reinstated.data["from"], reinstated.data["to"]) == (None, "cured")
    assert [e for e in events(mail_db, "A-CUR", "transition") if e.data["to"] == "cured"] == cured
    assert account(mail_db, "A-CUR").stage == "cured"

    assert _settle("2027-01-07T17:00:00Z")["recoveries_to_return"] == 0
    assert len(events(mail_db, "A-CUR", UNRETURNED)) == 1
    assert _to_return(db_url, "2027-01-07T18:00:00Z") == []


@pytest.mark.usefixtures("letters_sandbox")
def test_a_car_recovered_before_the_payoff_is_said_once_listed_and_redeemed_without_a_transition(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """Paid in full the day the car was recovered, before any recoveries step: the account is paid
    off; the step says the car is to go back (`arrears sale redeem`), writes no notice of sale;
    `sale redeem` records the redemption on the paid-off account without a transition, and the
    car leaves the list, never said again."""
    put_in_review(mail_db, tmp_path, "A-PAID")
    _recovered(mail_db, "A-PAID")
    pay(mail_db, tmp_path, "A-PAID", "18450.00", "2027-01-03T15:00:00Z")
    _advance(mail_db, "2027-01-03T16:00:00Z")
    assert account(mail_db, "A-PAID").stage == "paid_off"

    counts = _settle(RECOVERED)
    assert (counts["recoveries_to_return"], counts["sale_notices_written"]) == (1, 0)
    assert _letters(mail_db, "A-PAID", "notice_of_sale") == []
    [said] = events(mail_db, "A-PAID", UNRETURNED)
    assert said.data["held_back"] == [] and "notice of sale" not in said.detail
    assert (
        "return the car; record it with `arrears sale redeem A-PAID --paid-on DAY --by NAME`" in said.detail
    )
    [listed] = _to_return(db_url, "2027-01-04T18:00:00Z")
    assert listed["account_id"] == "A-PAID"
    table = _cli(db_url, "review", "list", "--as-of", "2027-01-04T18:00:00Z")
    assert table.exit_code == 0, table.output
    assert "waiting: 1 (vehicles: return car 1)" in table.stdout and "A-PAID" in table.stdout

    done = _cli(
        db_url, *_said_command(said.detail, "2027-01-03"), "--json", "--as-of", "2027-01-04T19:00:00Z"
    )
    assert done.exit_code == 0, done.output
    assert (json.loads(done.stdout)["from"], json.loads(done.stdout)["to"]) == (None, "paid_off")
    assert not [e for e in events(mail_db, "A-PAID", "transition") if e.data["from"] == "paid_off"]
    assert _settle("2027-01-05T17:00:00Z")["recoveries_to_return"] == 0
    assert len(events(mail_db, "A-PAID", UNRETURNED)) == 1
    assert _to_return(db_url, "2027-01-05T18:00:00Z") == []


def test_a_car_taken_before_the_payment_called_the_order_off_is_to_return_once_the_account_is_cured(
    mail_db: Engine, db_url: str, tmp_path: Path, agency_sandbox: Any
) -> None:
    """The borrower paid while the order was out; the agency had the car already (the cancel came
    too late): the recovery waits for a person in review, then the advance cures the account and
    the step says the car is to go back, listed since the cure."""
    from tasks.agency import push_assignments
    from tests.test_agency_overtaken import _approved, _pay

    _approved(mail_db, tmp_path, "A-OVER")
    push_assignments.fn()
    [row] = rows(mail_db, assignment_t, "A-OVER")
    agency_sandbox.advance(row.provider_id, "recovered", at="2026-12-02T23:00:00Z")
    _pay(mail_db, tmp_path, "A-OVER")
    push_assignments.fn()
    assert _settle("2026-12-03T02:00:00Z")["recoveries_waiting"] == 1
    assert events(mail_db, "A-OVER", UNRETURNED) == []
    _advance(mail_db, "2026-12-03T16:00:00Z")
    assert account(mail_db, "A-OVER").stage == "cured"
    counts = _settle("2026-12-03T17:00:00Z")
    assert (counts["recoveries_waiting"], counts["recoveries_to_return"]) == (0, 1)
    [said] = events(mail_db, "A-OVER", UNRETURNED)
    assert "`arrears sale reinstate A-OVER --paid-on DAY --by NAME`" in said.detail  # US-CA: by right
    [listed] = _to_return(db_url, "2026-12-03T18:00:00Z")
    assert listed["since"] == at("2026-12-03T16:00:00Z").isoformat()
    # Paid before the car was taken: no reinstatement, a return (`sale return`), which spends
    # nothing of California's once-in-12-months right and leaves the account cured.
    assert "`arrears sale return A-OVER --on DAY --by NAME` (paid before)" in said.detail
    done = _cli(
        db_url,
        "sale",
        "return",
        "A-OVER",
        "--on",
        "2026-12-03",
        "--by",
        "Ray",
        "--as-of",
        "2026-12-03T19:00:00Z",
    )
    assert done.exit_code == 0, done.output
    assert account(mail_db, "A-OVER").stage == "cured" and _to_return(db_url, "2026-12-03T20:00:00Z") == []
    from arrears.storage.redemptions import reinstatements

    with mail_db.connect() as c:
        assert reinstatements(c, "A-OVER") == []


def _settled(engine: Engine, db_url: str, tmp_path: Path, account_id: str) -> None:
    """A settlement agreed after the car was recovered and paid: the advance settles the account."""
    agreed = _cli(
        db_url,
        "settlement",
        "record",
        account_id,
        "--amount",
        "9000.00",
        "--pay-by",
        "2027-01-20",
        "--agent",
        "ray",
        "--reason",
        "agreed on the phone",
        "--as-of",
        "2027-01-03T18:00:00Z",
    )
    assert agreed.exit_code == 0, agreed.output
    pay(engine, tmp_path, account_id, "9000.00", "2027-01-04T15:00:00Z")
    _advance(engine, "2027-01-04T16:00:00Z")
    assert account(engine, account_id).stage == "settled"


@pytest.mark.usefixtures("letters_sandbox")
def test_a_settled_accounts_car_waits_for_a_person_to_decide(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """Settled while its car was on the lot: the step says once that a person decides whether the
    car goes back under the settlement, and lists it for `return-car`."""
    put_in_review(mail_db, tmp_path, "A-SET")
    _recovered(mail_db, "A-SET")
    _settled(mail_db, db_url, tmp_path, "A-SET")
    assert _settle("2027-01-04T17:00:00Z")["recoveries_to_return"] == 1
    _settle("2027-01-05T17:00:00Z")
    [said] = events(mail_db, "A-SET", UNRETURNED)
    assert said.data["stage"] == "settled" and "a person decides whether it goes back" in said.detail
    [listed] = _to_return(db_url, "2027-01-05T18:00:00Z")
    assert listed["account_id"] == "A-SET"


@pytest.mark.usefixtures("letters_sandbox")
def test_the_return_of_a_settled_accounts_car_can_be_recorded(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """A person returns a settled account's car and records it as the timeline says (`sale
    return`): the account stays settled (a settlement is not a payoff: Metro 2 reports it so), the
    car leaves the list, and no redemption or reinstatement is recorded (a redemption is refused:
    the account is no payoff)."""
    put_in_review(mail_db, tmp_path, "A-SETR")
    _recovered(mail_db, "A-SETR")
    _settled(mail_db, db_url, tmp_path, "A-SETR")
    _settle("2027-01-04T17:00:00Z")
    redeemed = _back(db_url, "redeem", "A-SETR", "2027-01-04", as_of="2027-01-05T17:00:00Z")
    assert "A-SETR is settled" in _refused(redeemed)
    [said] = events(mail_db, "A-SETR", UNRETURNED)
    assert "`arrears sale return A-SETR --on DAY --by NAME`" in said.detail
    done = _cli(
        db_url,
        "sale",
        "return",
        "A-SETR",
        "--on",
        "2027-01-05",
        "--by",
        "Ray Ortiz",
        "--as-of",
        "2027-01-05T17:00:00Z",
    )
    assert done.exit_code == 0, done.output
    assert "the account stays settled" in done.output
    assert account(mail_db, "A-SETR").stage == "settled"
    assert _to_return(db_url, "2027-01-05T18:00:00Z") == []
    assert (
        events(mail_db, "A-SETR", "vehicle_redeemed") == events(mail_db, "A-SETR", "vehicle_reinstated") == []
    )
    [back] = events(mail_db, "A-SETR", "vehicle_returned")
    assert (back.data["on"], back.data["stage"], back.actor) == (
        "2027-01-05",
        "settled",
        "operations:Ray Ortiz",
    )
    again = _cli(
        db_url,
        "sale",
        "return",
        "A-SETR",
        "--on",
        "2027-01-05",
        "--by",
        "Ray Ortiz",
        "--as-of",
        "2027-01-05T19:00:00Z",
    )
    assert again.exit_code == 0 and "nothing changed" in again.output
    assert len(events(mail_db, "A-SETR", "vehicle_returned")) == 1
    refused = _cli(
        db_url,
        "sale",
        "record",
        "A-SETR",
        "--sold-on",
        "2027-01-06",
        "--proceeds",
        "1",
        "--expenses",
        "0",
        "--by",
        "R",
        "--as-of",
        "2027-01-06T19:00:00Z",
    )
    assert "vehicle_returned" in _refused(refused)


@pytest.mark.usefixtures("letters_sandbox")
def test_an_account_that_paid_without_a_recovered_car_or_whose_car_went_back_is_not_listed(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """Cured with no car recovered, or cured by `arrears sale reinstate` itself (the car went back
    as it was recorded): nothing to return, nothing said."""
    put_in_review(mail_db, tmp_path, "A-NOCAR")
    pay(mail_db, tmp_path, "A-NOCAR", "825.00", "2027-01-03T15:00:00Z")
    put_in_review(mail_db, tmp_path, "A-BACK", **CA)
    _recovered(mail_db, "A-BACK")
    assert _back(db_url, "reinstate", "A-BACK", "2027-01-03", as_of="2027-01-03T20:00:00Z").exit_code == 0
    _advance(mail_db, "2027-01-03T21:00:00Z")
    assert (account(mail_db, "A-NOCAR").stage, account(mail_db, "A-BACK").stage) == ("cured", "cured")
    assert _settle(RECOVERED)["recoveries_to_return"] == 0
    assert events(mail_db, "A-NOCAR", UNRETURNED) == events(mail_db, "A-BACK", UNRETURNED) == []
    assert _to_return(db_url, "2027-01-04T18:00:00Z") == []


@pytest.mark.usefixtures("letters_sandbox")
def test_the_cars_to_return_are_found_in_one_query_however_many_there_are(
    mail_db: Engine, tmp_path: Path
) -> None:
    """Every recoveries step reads them: one statement for one car or for three, never one per
    account (its recovery's end and what was said are read in it)."""
    from arrears.storage.recoveries import unreturned_cars

    def found() -> tuple[list[str], int]:
        statements: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if "agency_assignment" in statement or "audit_event" in statement:
                statements.append(statement)

        event.listen(mail_db, "before_cursor_execute", seen)
        try:
            with mail_db.connect() as c:
                cars = unreturned_cars(c)
        finally:
            event.remove(mail_db, "before_cursor_execute", seen)
        return [car.account_id for car in cars], len(statements)

    for n, account_id in enumerate(("A-Q1", "A-Q2", "A-Q3")):
        put_in_review(mail_db, tmp_path, account_id)
        _recovered(mail_db, account_id, when=f"2027-01-0{n + 2}T12:00:00Z")
        pay(mail_db, tmp_path, account_id, "825.00", "2027-01-05T15:00:00Z")
        if n == 0:
            _advance(mail_db, "2027-01-05T16:00:00Z")
            assert found() == (["A-Q1"], 1)
    _advance(mail_db, "2027-01-05T16:00:00Z")
    assert found() == (["A-Q1", "A-Q2", "A-Q3"], 1)


def test_the_cycle_summary_counts_a_waiting_car_once_though_the_recoveries_step_ran_twice() -> None:
    """The recoveries step runs after the reviews and again after the letters: what it did adds
    up, what waits is counted by each run, so the summary shows the later count, not the sum."""
    from deployments.cli.cycle import later_counts

    stats = {
        "reviews": {"recoveries_closed": 1, "recoveries_waiting": 2, "recoveries_to_return": 1},
        "letters": {
            "recoveries_closed": 1,
            "recoveries_waiting": 1,
            "recoveries_to_return": 1,
            "letters_sent": 3,
        },
    }
    assert later_counts(stats) == {
        "recoveries_closed": 2,
        "recoveries_waiting": 1,
        "recoveries_to_return": 1,
        "letters_sent": 3,
    }


@pytest.mark.usefixtures("letters_sandbox")
def test_a_cured_account_whose_car_never_went_back_is_not_noticed_for_sale_when_it_falls_behind(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """Cured while its car was on the lot and the return never recorded, the account falls behind
    again months later: the old recovery must not now write a notice of sale for a car taken long
    before (California wants it within 60 days of the repossession, Fin. Code 22328(b)); it waits,
    stopped, for a person, said on the timeline."""
    from tests.later_stage_helpers import import_rows, us_account

    put_in_review(mail_db, tmp_path, "A-OLD")
    _recovered(mail_db, "A-OLD")
    pay(mail_db, tmp_path, "A-OLD", "825.00", "2027-01-03T15:00:00Z")
    _advance(mail_db, "2027-01-03T16:00:00Z")
    assert account(mail_db, "A-OLD").stage == "cured"
    assert _settle("2027-01-03T17:00:00Z")["recoveries_to_return"] == 1

    import_rows(
        mail_db,
        tmp_path,
        [us_account("A-OLD", past_due_amount="412.50", oldest_due_date="2027-04-01")],
        now=at("2027-04-05T15:00:00Z"),
    )
    _advance(mail_db, "2027-04-05T16:00:00Z")
    assert account(mail_db, "A-OLD").stage == "reminder"
    later = _settle("2027-04-06T16:00:00Z")
    assert (later["sale_notices_written"], later["recoveries_waiting"]) == (0, 1)
    assert _letters(mail_db, "A-OLD", "notice_of_sale") == []
    [stopped] = [e for e in events(mail_db, "A-OLD", "recovery") if "a person must act" in e.detail]
    assert "the account was cured after the vehicle was recovered" in stopped.detail
    # The car's return is recorded at last: the account stays in the stage its new delinquency
    # put it in (the old recovery's reinstatement is not a cure of today's past due).
    done = _back(db_url, "reinstate", "A-OLD", "2027-01-03", "--lender-allows", as_of="2027-04-06T18:00:00Z")
    assert done.exit_code == 0, done.output
    assert account(mail_db, "A-OLD").stage == "reminder" and "the account is reminder" in done.output
    after = _settle("2027-04-07T16:00:00Z")
    assert (after["sale_notices_written"], after["recoveries_waiting"]) == (0, 0)
