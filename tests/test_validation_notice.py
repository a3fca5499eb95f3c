"""A California borrower texted about the debt gets its validation notice, with the day the
validation period ends counted as Reg F counts it.

Reg F 12 CFR 1006.34, which the Rosenthal Act extends to a lender collecting its own loans in
California (Cal. Civ. Code 1788.17): the validation information goes in the initial communication
or within five business days after it, and states the day the validation period ends, 30 days after
the borrower is assumed to receive it, at least five days after it is provided, weekends and the
legal public holidays of 5 USC 6103(a) excluded. compliance.md lists misdated validation periods
(holiday miscounts) among what regulators find most often. Before, arrears sent none. Now the
cycle and `arrears dispatch` write it once for every US-CA account sent a message
(`tasks.lifecycle_letters.write_validation_notices`, the letter `validation_notice`), its mail-by
day five business days after the first message, so one not mailed is listed as overdue.
"""

import io
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import holidays
import pypdf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, update
from typer.testing import CliRunner

from arrears.jurisdictions import PROFILES, ProfileError, resolve
from arrears.letters import LetterContext, render
from arrears.letters.contexts import validation_notice_context, validation_period_end
from arrears.letters.notices import context_from_json, latest_mailing
from arrears.models import Account, Letter, Message
from tests.later_stage_helpers import at, day, events, import_rows, rows, us_account

letter_t = Letter.__table__  # type: ignore[attr-defined]
message_t = Message.__table__  # type: ignore[attr-defined]
account_t = Account.__table__  # type: ignore[attr-defined]

LA = "America/Los_Angeles"
FRESNO = {
    "jurisdiction": "US-CA",
    "timezone": LA,
    "city": "Fresno",
    "state": "CA",
    "postal_code": "93721",
}
_FEDERAL = holidays.country_holidays("US", years=range(2025, 2032))  # 5 USC 6103(a), observed days too


def _ca(account_id: str, phone: str = "(559) 281-0101", **kw: str) -> dict[str, str]:
    """A Fresno borrower one instalment behind."""
    return us_account(account_id, **(FRESNO | {"phone": phone} | kw))


def _notices(engine: Engine, account_id: str) -> list[Any]:
    return [r for r in rows(engine, letter_t, account_id) if r.kind == "validation_notice"]


def _text(pdf: bytes) -> str:
    return " ".join(" ".join(p.extract_text().split()) for p in pypdf.PdfReader(io.BytesIO(pdf)).pages)


def _end(written: str) -> date:
    ca = PROFILES["US-CA"]
    return validation_period_end(
        at(written),
        timezone=LA,
        calendar=ca.hours.holidays,
        holidays="US",
        receipt_days=ca.validation_receipt_days or 0,
        period_days=ca.validation_period_days or 0,
    )


def _write(when: str) -> int:
    from tasks.lifecycle_letters import write_validation_notices

    return write_validation_notices(at(when))["validation_notices_written"]


def _cli(db_url: str, *args: str) -> Any:
    from deployments.cli import app

    return CliRunner().invoke(app, [*args, "--database", db_url])


# --- the dates --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "mailed_by", "ends", "why"),
    [
        # Handed over Thursday 8 October, mailed by the second business day after: Friday, then
        # Tuesday, Monday 12 October being Columbus Day, a federal holiday the `holidays` package's
        # California calendar leaves out. Received the fifth business day after: Tuesday 20
        # October. The period ends 30 days on.
        ("2026-10-07T18:00:00Z", date(2026, 10, 13), date(2026, 11, 19), "Columbus Day"),
        # Mailed Tuesday 24 November; Thanksgiving (26th) skipped: received Wednesday 2 December.
        ("2026-11-20T18:00:00Z", date(2026, 11, 24), date(2027, 1, 1), "Thanksgiving"),
        # Mailed Thursday 24 December; Christmas and New Year's Day skipped: received Monday 4 January.
        ("2026-12-21T18:00:00Z", date(2026, 12, 24), date(2027, 2, 3), "Christmas, New Year"),
        # Written on a Sunday, mailed Wednesday 1 July; Friday 3 July is Independence Day observed
        # (the 4th a Saturday): received Thursday 9 July, not Wednesday 8.
        ("2026-06-28T18:00:00Z", date(2026, 7, 1), date(2026, 8, 8), "Independence Day observed"),
        # Written at 21:00 on Monday 7 December in California, Tuesday in UTC: handed over by the
        # Tuesday and mailed by Thursday 10 in the borrower's calendar (Friday in UTC's).
        ("2026-12-08T05:00:00Z", date(2026, 12, 10), date(2027, 1, 16), "the borrower's calendar"),
    ],
)
def test_the_validation_period_ends_30_days_after_five_business_days_from_the_latest_mailing(
    written: str, mailed_by: date, ends: date, why: str
) -> None:
    """The end printed on a notice, through the weeks where holidays make the miscounts."""
    assert latest_mailing(at(written), timezone=LA, calendar="US-CA") == mailed_by, why
    assert _end(written) == ends, why


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)),
    st.sampled_from([LA, "America/Chicago", "America/New_York", "Pacific/Honolulu"]),
)
def test_the_end_is_never_early_whatever_the_day(written: datetime, zone: str) -> None:
    """Against a count of our own over the `holidays` package's federal calendar: the assumed
    receipt, the end less 30 days, has exactly five weekdays that are not legal public holidays
    after the latest mailing day, the last of them that day (no sooner, and no later than needed)."""
    mailed = latest_mailing(written, timezone=zone, calendar="US-CA")
    ca = PROFILES["US-CA"]
    end = validation_period_end(
        written, timezone=zone, calendar="US-CA", holidays="US", receipt_days=5, period_days=30
    )
    assert (ca.validation_receipt_days, ca.validation_period_days) == (5, 30)
    received = end - timedelta(days=30)
    counted = [
        mailed + timedelta(days=n)
        for n in range(1, (received - mailed).days + 1)
        if (mailed + timedelta(days=n)).weekday() < 5 and mailed + timedelta(days=n) not in _FEDERAL
    ]
    assert len(counted) == 5 and counted[-1] == received
    assert mailed >= written.astimezone(UTC).date() - timedelta(days=1)


# --- the profile --------------------------------------------------------------------------------------


def test_california_owes_it_by_the_rosenthal_act_and_a_policy_may_add_it_but_not_loosen_it() -> None:
    """US-CA owes it (five business days, five to receipt, 30 days), citing 1788.17 and 1006.34;
    no other profile does, as Reg F binds third-party collectors. A policy may owe it for the
    other states, or give a longer period; not turn it off in California, nor shorten it."""
    ca = PROFILES["US-CA"]
    assert (ca.validation_notice, ca.validation_notice_within_days) == (True, 5)
    assert (ca.validation_receipt_days, ca.validation_period_days) == (5, 30)
    sources = dict(ca.sources)
    assert "1788.17" in sources["validation_notice"]
    assert "1006.34" in dict(PROFILES["US"].sources)["validation_notice"]
    assert [code for code, p in PROFILES.items() if p.validation_notice] == ["US-CA"]

    us = resolve({"US": {"validation_notice": True}})
    assert us["US"].validation_notice and us["US-IA"].validation_notice
    assert us["US-IA"].validation_period_days == 30
    assert resolve({"US-CA": {"validation_period_days": 45}})["US-CA"].validation_period_days == 45
    for loosened, said in (
        ({"validation_notice": False}, "profiles.US-CA.validation_notice: a rule requires it"),
        ({"validation_notice_within_days": 10}, "profiles.US-CA.validation_notice_within_days: at most 5"),
        ({"validation_receipt_days": 3}, "profiles.US-CA.validation_receipt_days: at least 5"),
        ({"validation_period_days": 29}, "profiles.US-CA.validation_period_days: at least 30"),
    ):
        with pytest.raises(ProfileError) as refused:
            resolve({"US-CA": loosened})
        assert said in str(refused.value), loosened
        assert "1788.17" in str(refused.value)


# --- the letter ---------------------------------------------------------------------------------------


def _context(**kw: Any) -> LetterContext:
    base: dict[str, Any] = {
        "jurisdiction": "US-CA",
        "timezone": LA,
        "written_at": at("2026-10-07T18:00:00Z"),
        "validation_ends": date(2026, 11, 19),
        "lender": "Acme Auto Finance",
        "lender_contact": "1-800-555-0100, PO Box 1, Fresno CA 93701",
        "borrower_name": "Maria Lopez",
        "account_reference": "A-CA1",
        "currency": "USD",
        "balance": Decimal("18450.00"),
        "address": ("12 Elm Street", "Fresno CA 93721", "US"),
        "vin": "1HGCM82633A004352",
    }
    return validation_notice_context(**(base | kw))


def test_the_notice_says_what_model_form_b1_says_in_its_order_and_refuses_an_early_end() -> None:
    """Who collects and for whom, the borrower and the account, the debt itemized, how to dispute
    it by the end date, what else the borrower can do, then the response form last; on US Letter.
    A context whose end is sooner than 37 days after the notice (five business days, a week at
    least, and 30) is refused rather than rendered: that would be a misdated period."""
    letter = render("validation_notice", _context())
    text = " ".join(letter.text.split())
    order = [
        "Notice of your debt and your right to dispute it",
        "Acme Auto Finance is trying to collect a debt that you owe to Acme Auto Finance.",
        "Your information To: Maria Lopez Reference: A-CA1, your loan for the vehicle VIN 1HGCM82633A004352",
        "As of 2026-10-07, you owed: $18,450.00",
        "You were charged this amount in interest: + $0.00",
        "Total amount of the debt now: $18,450.00",
        "Call or write to us by 2026-11-19 to dispute all or part of the debt.",
        "If you write to us by 2026-11-19, we must stop collection on any amount you dispute",
        "name and address of the original creditor",
        "www.cfpb.gov/debt-collection",
        "How do you want to respond?",
        "I want to dispute the debt because I think this is not my debt.",
    ]
    positions = [text.index(line) for line in order]
    assert positions == sorted(positions)
    on_paper = _text(letter.pdf)
    assert "Maria Lopez 12 Elm Street Fresno CA 93721 US" in on_paper  # the envelope window
    assert "Call or write to us by 2026-11-19" in on_paper
    width, height = pypdf.PdfReader(io.BytesIO(letter.pdf)).pages[0].mediabox.upper_right
    assert (round(float(width)), round(float(height))) == (612, 792)

    with pytest.raises(ValueError, match="37 days after it or later"):
        render("validation_notice", _context(validation_ends=date(2026, 11, 12)))
    assert render("validation_notice", _context(validation_ends=date(2026, 11, 13))).text
    with pytest.raises(ValueError, match="the end of the validation period"):
        render("validation_notice", _context(validation_ends=None))


# --- the cycle ----------------------------------------------------------------------------------------


def test_the_first_text_is_followed_by_one_notice_mailed_with_its_dates_and_iowa_gets_none(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any, sms_sandbox: Any
) -> None:
    """The cycle of Tuesday 1 December texts the Fresno and the Des Moines borrowers. It writes no
    notice then: it writes them before it dispatches. Wednesday's cycle writes the Fresno one and
    mails it: its period ends 13 January (mailed by Monday 7 December, received the 14th), and it
    must be mailed by Tuesday 8 December, five business days after the first text. Thursday's
    writes none. Iowa owes none."""
    import_rows(mail_db, tmp_path, [_ca("A-CA1"), us_account("A-IA1")])
    first = day(mail_db, "2026-12-01T17:00:00Z")
    assert first["later"]["validation_notices_written"] == 0
    assert any(r.sent_at is not None for r in rows(mail_db, message_t, "A-CA1"))
    assert any(r.sent_at is not None for r in rows(mail_db, message_t, "A-IA1"))

    assert day(mail_db, "2026-12-02T17:00:00Z")["later"]["validation_notices_written"] == 1
    [notice] = _notices(mail_db, "A-CA1")
    assert (notice.template, notice.status) == ("validation_notice.US.j2", "created")
    assert notice.deadline == datetime(2026, 12, 9, 8, tzinfo=UTC)  # midnight in Fresno after the 8th
    context = context_from_json(notice.context)
    assert context.validation_ends == date(2027, 1, 13) == _end("2026-12-02T17:00:00Z")
    assert (context.itemized_on, context.letter_date) == (date(2026, 12, 2), date(2026, 12, 2))
    words = _text(notice.pdf)
    assert "Call or write to us by 2027-01-13 to dispute all or part of the debt" in words
    assert "Total amount of the debt now: $18,450.00" in words
    [mailed] = [s for s in letters_sandbox.letters() if s["pdf_sha256"] == notice.pdf_sha256]
    assert mailed["to"]["address_state"] == "CA"

    assert day(mail_db, "2026-12-03T17:00:00Z")["later"]["validation_notices_written"] == 0
    assert len(_notices(mail_db, "A-CA1")) == 1
    assert _notices(mail_db, "A-IA1") == []


def test_only_an_open_account_sent_a_message_is_owed_one_and_a_late_one_is_listed_as_overdue(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """Of five Fresno accounts, the one never written to, the one paid off and the one sent only a
    courtesy reminder before its due date (no debt in default) are owed none; the one never texted
    but mailed a notice of sale is owed one, five business days from that mailing. The one
    texted on Monday 2 November, before arrears owed notices, is written one on 1 December with
    its mail-by day long past (9 November, five business days on), so `letters list --overdue`
    lists it at once, blocked for want of an address. An import that brings the address writes it
    again in its place, its dates from the rewrite and its mail-by day kept."""
    from tasks.letters import NO_ADDRESS
    from tasks.lifecycle_letters import readdress_letters

    address = ("address_line1", "city", "state", "postal_code")
    unaddressed = {k: v for k, v in _ca("A-CA1").items() if k not in address}
    import_rows(
        mail_db,
        tmp_path,
        [
            _ca("A-CA2", phone="(559) 281-0102"),
            _ca("A-CA3", phone="(559) 281-0103"),
            _ca("A-CA4", phone="(559) 281-0104"),
            _ca("A-CA5", phone="(559) 281-0105"),
            unaddressed,
        ],
    )
    with mail_db.begin() as c:
        for account_id, stage in (("A-CA1", "reminder"), ("A-CA3", "reminder"), ("A-CA4", "cured")):
            c.execute(
                message_t.insert().values(
                    idempotency_key=f"old-{account_id}",
                    account_id=account_id,
                    address="+15592810101",
                    template="reminder" if stage == "reminder" else "courtesy",
                    body="Acme Auto Finance: a payment is due. Reply STOP to opt out.",
                    stage=stage,
                    not_before=at("2026-11-02T17:00:00Z"),
                    status="delivered",
                    created_at=at("2026-11-02T17:00:00Z"),
                    sent_at=at("2026-11-02T17:00:00Z"),
                )
            )
        c.execute(update(account_t).where(account_t.c.account_id == "A-CA3").values(stage="paid_off"))
        # Never texted, but mailed its notice of sale on Monday 16 November.
        mailed = at("2026-11-16T20:00:00Z")
        c.execute(
            letter_t.insert().values(
                idempotency_key="old-sale-notice",
                account_id="A-CA5",
                kind="notice_of_sale",
                template="notice_of_sale.US.j2",
                status="mailed",
                created_at=mailed,
                mailed_at=mailed,
                updated_at=mailed,
            )
        )

    assert _write("2026-12-01T17:00:00Z") == 2
    assert [_notices(mail_db, a) for a in ("A-CA2", "A-CA3", "A-CA4")] == [[], [], []]
    [after_letter] = _notices(mail_db, "A-CA5")  # five business days after the 16th: the 23rd
    assert (after_letter.status, after_letter.deadline) == ("pending", datetime(2026, 11, 24, 8, tzinfo=UTC))
    [blocked] = _notices(mail_db, "A-CA1")
    assert (blocked.status, blocked.reason) == ("blocked", NO_ADDRESS)
    # Monday 2 November: Tuesday 3rd, Wednesday 4th, Thursday 5th, Friday 6th, Monday 9th.
    assert blocked.deadline == datetime(2026, 11, 10, 8, tzinfo=UTC)

    listed = _cli(db_url, "letters", "list", "--overdue", "--as-of", "2026-12-01T18:00:00Z", "--json")
    assert listed.exit_code == 0, listed.output
    late = [(x["id"], x["kind"], x["status"], x["reason"]) for x in json.loads(listed.stdout)]
    assert late == [  # the oldest deadline first
        (blocked.id, "validation_notice", "blocked", NO_ADDRESS),
        (after_letter.id, "validation_notice", "pending", None),
    ]

    import_rows(mail_db, tmp_path, [_ca("A-CA1")])
    # A-CA5's, never handed to the provider in two days, is written again too (stale).
    assert readdress_letters(at("2026-12-03T17:00:00Z")) == {"letters_readdressed": 2, "letters_stale": 1}
    [again] = _notices(mail_db, "A-CA1")
    assert (again.id, again.status, again.deadline) == (blocked.id, "pending", blocked.deadline)
    assert context_from_json(again.context).validation_ends == _end("2026-12-03T17:00:00Z")
    assert _write("2026-12-04T17:00:00Z") == 0


def test_arrears_dispatch_that_sends_the_first_text_writes_and_mails_the_notice_at_once(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any, sms_sandbox: Any
) -> None:
    """The cycle at 06:00 in Fresno defers the first text to the borrower's morning, and writes no
    notice: nothing has been sent. `arrears dispatch` at 09:00 sends the text, then writes the
    notice and mails it in the same command."""
    import_rows(mail_db, tmp_path, [_ca("A-CA1")])
    early = day(mail_db, "2026-12-01T14:00:00Z")
    assert early["later"]["validation_notices_written"] == 0
    assert [r.sent_at for r in rows(mail_db, message_t, "A-CA1")] == [None]

    out = _cli(db_url, "dispatch", "--as-of", "2026-12-01T17:00:00Z", "--json")
    assert out.exit_code == 0, out.output
    counts = json.loads(out.stdout)
    assert counts["validation_notices_written"] == 1
    [notice] = _notices(mail_db, "A-CA1")
    assert notice.status == "created"
    assert notice.pdf_sha256 in {mailed["pdf_sha256"] for mailed in letters_sandbox.letters()}
    assert notice.deadline == datetime(2026, 12, 9, 8, tzinfo=UTC)


def test_a_returned_notice_is_given_again_at_the_next_address_with_a_period_of_its_own(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """Two Fresno borrowers texted on Tuesday 1 December are mailed their notices, and both come
    back to sender. A notice returned was not provided (Reg F 1006.42(a)(1)): the same address on
    file changes nothing, but once an import brings another, a new notice goes there in a row of
    its own (the returned one kept as it was mailed), its validation period counted from it and its
    mail-by day five business days after the address was found. Not for an account paid off
    meanwhile, and once only."""
    from tasks.letters import send_letters, track_letters
    from tasks.lifecycle_letters import readdress_letters

    import_rows(mail_db, tmp_path, [_ca("A-CA1"), _ca("A-CA2", phone="(559) 281-0102")])
    with mail_db.begin() as c:
        for account_id in ("A-CA1", "A-CA2"):
            c.execute(
                message_t.insert().values(
                    idempotency_key=f"first-{account_id}",
                    account_id=account_id,
                    address="+15592810101",
                    template="reminder",
                    body="Acme Auto Finance: a payment is due. Reply STOP to opt out.",
                    stage="reminder",
                    not_before=at("2026-12-01T17:00:00Z"),
                    status="delivered",
                    created_at=at("2026-12-01T17:00:00Z"),
                    sent_at=at("2026-12-01T17:00:00Z"),
                )
            )
    assert _write("2026-12-01T18:00:00Z") == 2
    assert send_letters.fn(as_of=at("2026-12-01T18:00:00Z"))["letters_sent"] == 2
    for mailed in letters_sandbox.letters():
        letters_sandbox.advance(mailed["id"], "mailed", at="2026-12-02T15:00:00Z")
        letters_sandbox.advance(mailed["id"], "returned_to_sender", at="2026-12-07T15:00:00Z")
    track_letters.fn()
    [returned] = _notices(mail_db, "A-CA1")
    assert returned.status == "returned_to_sender"

    assert readdress_letters(at("2026-12-08T17:00:00Z")) == {"letters_readdressed": 0}  # the same address
    moved = {"address_line1": "7 Oak Avenue"}
    import_rows(mail_db, tmp_path, [_ca("A-CA1", **moved), _ca("A-CA2", phone="(559) 281-0102", **moved)])
    with mail_db.begin() as c:
        c.execute(update(account_t).where(account_t.c.account_id == "A-CA2").values(stage="paid_off"))

    assert readdress_letters(at("2026-12-09T17:00:00Z")) == {"letters_readdressed": 1}  # Wednesday
    kept, again = _notices(mail_db, "A-CA1")
    assert kept == returned  # not a column changed
    assert (again.status, again.idempotency_key) == (
        "pending",
        f"{returned.idempotency_key}-resent-{returned.id}",
    )
    assert again.context["_recipient"]["line1"] == "7 Oak Avenue"
    assert context_from_json(again.context).validation_ends == _end("2026-12-09T17:00:00Z")
    assert (
        context_from_json(again.context).validation_ends > context_from_json(returned.context).validation_ends
    )
    # Thursday 10, Friday 11, Monday 14, Tuesday 15, Wednesday 16: midnight in Fresno after it.
    assert again.deadline == datetime(2026, 12, 17, 8, tzinfo=UTC)
    said = [e.data for e in events(mail_db, "A-CA1", "letter") if "returned_letter_id" in e.data]
    assert said == [{"returned_letter_id": returned.id, "idempotency_key": again.idempotency_key}]
    assert [n.status for n in _notices(mail_db, "A-CA2")] == ["returned_to_sender"]  # paid off

    assert readdress_letters(at("2026-12-10T17:00:00Z")) == {"letters_readdressed": 0}  # given once
    assert _write("2026-12-10T17:00:00Z") == 0
    listed = _cli(db_url, "letters", "list", "--overdue", "--as-of", "2026-12-17T09:00:00Z", "--json")
    assert listed.exit_code == 0, listed.output
    assert [x["id"] for x in json.loads(listed.stdout)] == [again.id]
