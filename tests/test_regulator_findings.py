"""What regulators find most often in auto servicing, driven end to end (compliance.md, last
section): a repossession order the borrower's word of a bankruptcy should have stopped, and
notices misdated by a holiday the count missed. Each scenario runs the product's own paths (an
import, a reviewer's decision, a text through the webhook's recorder, the agency push, the
letters sandbox's mailed event) on a real database, against the sandbox servers."""

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from arrears.letters.notices import context_from_json
from arrears.models import AgencyAssignment, Letter
from tests.later_stage_helpers import at, events, put_in_review, reply, review_t, rows

assignment_t = AgencyAssignment.__table__  # type: ignore[attr-defined]
letter_t = Letter.__table__  # type: ignore[attr-defined]


def _approved(engine: Engine, tmp_path: Path, account_id: str) -> str:
    """A US-CA account (no cure notice owed) whose repossession a reviewer approved on Wednesday
    2 December 2026: the order and its assignment are written, not yet pushed to the agency."""
    from tasks.review import decide_review, prepare_reviews

    put_in_review(engine, tmp_path, account_id, jurisdiction="US-CA", timezone="America/Los_Angeles")
    prepare_reviews.fn(at("2026-12-01T17:00:00Z"))
    decided = decide_review(
        engine,
        account_id=account_id,
        decision="repossess",
        reviewer="Ana",
        reason="no contact since October",
        at=at("2026-12-02T17:00:00Z"),
    )
    assert decided.order_id is not None
    return decided.order_id


def _live_at_agency(agency: Any) -> list[dict[str, Any]]:
    with httpx.Client(base_url=agency.base_url) as admin:
        held = admin.get("/_sandbox/assignments").json()["assignments"]
    return [a for a in held if a["our_status"] not in ("cancelled", "closed")]


# -- repossession after a bankruptcy filing --------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "I filed a Chapter 13 yesterday, please stop",
        "We filed a chapter 7 petition on Friday",
        "I'm in ch 13 now, talk to my trustee",
        "法院已受理我的破产申请",
    ],
)
def test_a_bankruptcy_texted_on_saturday_after_the_decision_keeps_the_order_from_the_agency(
    mail_db: Engine, tmp_path: Path, agency_sandbox: Any, text: str
) -> None:
    """The reviewer approves a repossession on Wednesday; on Saturday the borrower texts that they
    have filed for bankruptcy; the agency push that follows (`arrears dispatch`, the quarter-hourly
    outbox run) must not hand the car to the tow truck under the automatic stay (11 USC 362; DESIGN
    §2: disputes and bankruptcy pause collection, a hold cancels pending repossession work at once)."""
    from tasks.agency import push_assignments

    account_id = "A-RF1"
    order_id = _approved(mail_db, tmp_path, account_id)
    reply(mail_db, account_id, text, "2026-12-05T18:00:00Z")  # Saturday, 10:00 in Los Angeles

    push_assignments.fn()

    holds = [e.data.get("hold") or e.detail for e in events(mail_db, account_id, "hold")]
    orders = [(e.data["order_id"], e.data["action"]) for e in events(mail_db, account_id, "vendor_order")]
    live = _live_at_agency(agency_sandbox)
    assert live == [] and (order_id, "cancelled") in orders, (
        f"after {text!r}: holds placed {holds}; order events {orders}; live at the agency {live}"
    )


# -- misdated notices: holiday miscounts -------------------------------------------------------------


def _notice_written(mail_db: Engine, tmp_path: Path, account_id: str, written: str) -> Any:
    """An Iowa account in review: the cycle's review step at `written` writes its right-to-cure
    letter and hands it to the sandbox Lob (the letter row, as written)."""
    from tasks.letters import send_letters
    from tasks.review import prepare_reviews

    put_in_review(mail_db, tmp_path, account_id, since=written)
    prepare_reviews.fn(at(written))
    send_letters.fn(as_of=at(written))
    [letter] = rows(mail_db, letter_t, account_id)
    assert letter.status == "created", letter.reason
    return letter


def _mailed(mail_db: Engine, letters_sandbox: Any, account_id: str, when: str) -> tuple[date | None, Any]:
    """Lob mails the letter at `when`; the lookup records it. The last day the letter printed, and
    the review's cure deadline (the legal clock, from the mailed event)."""
    from tasks.letters import track_letters

    [sent] = letters_sandbox.letters()
    letters_sandbox.advance(sent["id"], "mailed", at=when)
    track_letters.fn()
    [letter] = rows(mail_db, letter_t, account_id)
    [review] = rows(mail_db, review_t, account_id)
    return context_from_json(letter.context).cure_deadline, review.cure_deadline


@pytest.mark.usefixtures("letters_sandbox")
def test_a_notice_mailed_after_columbus_day_prints_no_last_day_before_the_statutes(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any
) -> None:
    """Written on Thursday 8 October 2026 in the afternoon, handed to Lob on Friday, mailed within
    two business days of the post: Monday 12 October is Columbus Day, so Wednesday 14. Iowa gives
    20 days from the mailing (Iowa Code 537.5111): to Tuesday 3 November. The letter the borrower
    reads must not say Monday 2 November (README: every date a letter prints is counted from the
    latest day it may be mailed, so it never states less time than the law gives)."""
    account_id = "A-RF2"
    _notice_written(mail_db, tmp_path, account_id, "2026-10-08T21:00:00Z")
    printed, owed = _mailed(mail_db, letters_sandbox, account_id, "2026-10-14T15:00:00Z")
    assert owed == datetime(2026, 11, 4, 6, tzinfo=UTC)  # the end of 3 November in Chicago
    assert printed is not None and printed >= date(2026, 11, 3), (
        f"the letter tells the borrower to cure by {printed}"
    )


@pytest.mark.usefixtures("letters_sandbox")
def test_a_cure_period_ending_on_columbus_day_runs_to_the_next_business_day(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any
) -> None:
    """Written on Friday 18 September 2026, handed to Lob on Saturday and mailed on Tuesday 22
    (the latest the letter allows for), an Iowa notice's 20 days end on Monday 12 October,
    Columbus Day, a legal public holiday (5 USC 6103) when banks and the post are closed: the
    period runs on to Tuesday 13 October (`cure_deadline`: a period that ends on a public holiday
    runs on to the next business day), and no decision may come before its end."""
    account_id = "A-RF3"
    _notice_written(mail_db, tmp_path, account_id, "2026-09-18T15:00:00Z")
    printed, owed = _mailed(mail_db, letters_sandbox, account_id, "2026-09-22T15:00:00Z")
    assert owed == datetime(2026, 10, 14, 5, tzinfo=UTC), f"the cure period ends at {owed}"
    assert printed is not None and printed >= date(2026, 10, 13)


@pytest.mark.parametrize(
    ("jurisdiction", "zone", "written", "mailed", "owed"),
    [
        # Handed over Thursday 2 July; Friday 3 July is Independence Day observed: mailed Tuesday 7.
        (
            "US-MA",
            "America/New_York",
            datetime(2026, 7, 1, 22, tzinfo=UTC),
            datetime(2026, 7, 7, 15, tzinfo=UTC),
            date(2026, 7, 31),
        ),
        (
            "US-WI",
            "America/Chicago",
            datetime(2026, 10, 8, 21, tzinfo=UTC),
            datetime(2026, 10, 14, 15, tzinfo=UTC),
            date(2026, 10, 29),
        ),
    ],
)
def test_every_state_profile_prints_no_last_day_before_the_statutes_around_a_federal_holiday(
    jurisdiction: str, zone: str, written: datetime, mailed: datetime, owed: date
) -> None:
    """The same miscount in the other right-to-cure states: the letter's printed last day is never
    before the one the statute gives from the latest mailing the post allows."""
    from arrears.jurisdictions import profile
    from arrears.letters.notices import mailed_deadline, planned_notice

    common: dict[str, Any] = dict(
        jurisdiction=jurisdiction,
        timezone=zone,
        cure_amount=Decimal("825.00"),
        currency="USD",
        rules=profile(jurisdiction),
    )
    printed = planned_notice(written, **common)
    given = mailed_deadline(mailed, printed_last_day=None, **common)
    assert printed is not None and given is not None and given.last_day == owed
    assert printed.last_day >= given.last_day, f"printed {printed.last_day}, the statute's {owed}"
