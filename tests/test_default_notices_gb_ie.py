"""The default notice in Great Britain and Ireland: the 14 days to remedy before enforcement
(Consumer Credit Act 1974 ss.87-88; Consumer Credit Act 1995 s.54, unverified) are owed by
letter. Until there was a template for them, a GB or IE review's notice was blocked as not
rendered and the review waited for ever; now the notice is rendered, read back from its PDF with
what the law asks of it, mailed through the sandbox print shop, and the review is decided only
once 14 days have run from the notice's service (its mailing plus the profile's days in the post)."""

import io
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pypdf
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from arrears.jurisdictions import is_public_holiday, profile
from arrears.letters import LetterContext, render, vet
from arrears.letters.notices import cure_letter_context, planned_notice
from arrears.models import Letter
from arrears.settings import get_settings
from tests.later_stage_helpers import at, put_in_review, review_t, rows

# A GB borrower in Leeds, as `put_in_review` takes it.
LEEDS = {
    "jurisdiction": "GB",
    "timezone": "Europe/London",
    "currency": "GBP",
    "phone": "020 7946 0123",
    "address_line1": "1 High Street",
    "city": "Leeds",
    "state": "",
    "postal_code": "LS1 1AA",
}

letter_t = Letter.__table__  # type: ignore[attr-defined]
A4 = (595.2756, 841.8898)


def _words(pdf: bytes) -> str:
    """The PDF's text with each run of whitespace one space: a sentence wrapped over two lines
    reads back whole."""
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    return " ".join(text.split())


def _faces(pdf: bytes) -> dict[str, set[str]]:
    """Each line drawn, and the fonts it is drawn in."""
    found: dict[str, set[str]] = {}
    for page in pypdf.PdfReader(io.BytesIO(pdf)).pages:

        def seen(text: str, cm: Any, tm: Any, font: Any, size: float) -> None:
            if text.strip() and font is not None:
                found.setdefault(text.strip(), set()).add(str(font["/BaseFont"]).lstrip("/"))

        page.extract_text(visitor_text=seen)
    return found


def _paper(pdf: bytes) -> tuple[float, float]:
    page = pypdf.PdfReader(io.BytesIO(pdf)).pages[0]
    return float(page.mediabox.width), float(page.mediabox.height)


def _notice(jurisdiction: str, currency: str) -> LetterContext:
    return LetterContext(
        jurisdiction=jurisdiction,
        lender="Acme Auto Finance",
        lender_contact="0345 600 0100, 1 Lender Way, Leeds LS1 4AP",
        borrower_name="Dana Borrower",
        account_reference="INST1-A-1042",
        letter_date=date(2027, 3, 4),
        currency=currency,
        amount_to_cure=Decimal("1825.40"),
        cure_deadline=date(2027, 3, 29),
        itemization=(("Past due instalments", Decimal("1825.40")),),
        borrower_address=("Dana Borrower", "1 High Street", "Leeds LS1 1AA"),
    )


def test_the_gb_default_notice_says_what_the_1983_regulations_prescribe() -> None:
    """Read back from the PDF: a default notice served under s.87(1), the reader told to read it
    carefully, the parties and the agreement, the breach and its amount in pounds, what to do and
    the date before which (the day after the last day to pay), what follows if it is not done, the
    protected goods statement of a hire purchase, ending the agreement, more time from the court,
    interest after judgment, free debt advice (MoneyHelper), and that the FCA's default
    information sheet is enclosed (`tests/test_default_sheet.py`: it is). The statements given
    prominence are in bold, none in block capitals (as amended in 2020)."""
    context = _notice("GB", "GBP")
    letter = render("right_to_cure", context)
    words = _words(letter.pdf)
    for needle in (
        "This is a default notice served under section 87(1) of the Consumer Credit Act 1974.",
        "Important - you should read this carefully.",
        "Acme Auto Finance, 0345 600 0100, 1 Lender Way, Leeds LS1 4AP",
        "To: Dana Borrower",
        "account number INST1-A-1042",
        "The agreement requires you to pay each instalment in full by the date it is due.",
        "the arrears now come to £1,825.40",
        "pay the arrears of £1,825.40 before 2027-03-30, so that we receive it on or before 2027-03-29",
        "at least 14 days from the date it is served on you",
        "Amount to pay: £1,825.40",
        "Pay before: 2027-03-30 (the last day to pay is 2027-03-29)",
        "If you take the action required by this notice before the date shown, no further enforcement "
        "action will be taken in respect of the breach.",
        "If you do not take the action required by this notice before the date shown, the further "
        "action set out below may be taken against you.",
        "We intend to end the agreement, and to ask the court for an order for the return of the vehicle",
        "If you have paid at least one-third of the total amount payable under the agreement, we may not "
        "take back the goods against your wishes unless we get a court order.",
        "(In Scotland, we may need to get a court order at any time.)",
        "you have the right to get back everything you have paid under the agreement",
        "You have the right to end a hire purchase or conditional sale agreement",
        "you can apply to the court, which may make an order allowing you or any guarantor more time",
        "Interest after a judgment",
        "free and independent debt advice from MoneyHelper",
        "moneyhelper.org.uk",
        "A copy of the current default information sheet published by the Financial Conduct Authority "
        "is enclosed with this notice.",
    ):
        assert needle in words, needle
    assert letter.template == "right_to_cure.GB.j2" and letter.text.startswith("Default notice\n")
    assert _paper(letter.pdf) == A4
    assert not [line for line in letter.text.splitlines() if line.isupper()]  # no block capitals
    faces = _faces(letter.pdf)
    for prominent in (
        "Important - you should read this carefully.",
        "Amount to pay: £1,825.40",
        "Pay before: 2027-03-30 (the last day to pay is 2027-03-29)",
    ):
        assert faces[prominent] == {"Helvetica-Bold"}, prominent
    assert faces["Dear Dana Borrower,"] == {"Helvetica"}
    assert vet(letter, context) is None  # no word of the lexicon ("consequences" is one)


def test_the_ie_default_notice_says_what_compliance_md_and_the_profile_state() -> None:
    """The Irish notice, read back: s.54 (unverified), the arrears in euro, the date before which
    and the last day, what follows, the one-third rule of a hire-purchase agreement (ss.63-64,
    unverified), and free advice from MABS."""
    context = _notice("IE", "EUR")
    letter = render("right_to_cure", context)
    words = _words(letter.pdf)
    for needle in (
        "Default notice",
        "Consumer Credit Act 1995, section 54",
        "Acme Auto Finance",
        "Account: INST1-A-1042",
        "the arrears now come to €1,825.40",
        "Pay the arrears of €1,825.40 before 2027-03-30, so that we receive it on or before 2027-03-29",
        "at least 14 days from the date it is served on you",
        "Amount to pay: €1,825.40",
        "Pay before: 2027-03-30 (the last day to pay is 2027-03-29)",
        "If you pay the arrears before the date shown, we will take no further action",
        "we intend to end the agreement",
        "If you have paid at least one-third of the hire-purchase price, we may not take back the vehicle "
        "against your wishes unless we get a court order.",
        "Money Advice and Budgeting Service (MABS)",
    ):
        assert needle in words, needle
    assert letter.template == "right_to_cure.IE.j2" and _paper(letter.pdf) == A4
    assert vet(letter, context) is None


@pytest.mark.parametrize(
    ("jurisdiction", "zone", "written", "last_day", "holiday"),
    [
        # Wednesday 2 December 2026: handed over on the 3rd, mailed by Monday 7 December, served
        # five days on (Saturday 12), 14 days to Saturday 26: the weekend and the Boxing Day bank
        # holiday (Monday 28) pass, the last day is Tuesday 29 December.
        (
            "GB",
            "Europe/London",
            datetime(2026, 12, 2, 18, tzinfo=UTC),
            date(2026, 12, 29),
            date(2026, 12, 28),
        ),
        # Tuesday 23 February 2027: mailed by Friday 26, served Wednesday 3 March, 14 days to St
        # Patrick's Day (Wednesday 17 March), a public holiday: the last day is Thursday 18.
        ("IE", "Europe/Dublin", datetime(2027, 2, 23, 18, tzinfo=UTC), date(2027, 3, 18), date(2027, 3, 17)),
    ],
)
def test_the_printed_date_counts_14_days_from_service_by_post_past_weekends_and_public_holidays(
    jurisdiction: str, zone: str, written: datetime, last_day: date, holiday: date
) -> None:
    """The letter's dates count from the latest day it may be mailed, plus the profile's days in
    the post (a posted notice is served when it would be delivered), then the 14 days, and a last
    day on a weekend or a public holiday (`is_public_holiday`, the profile's calendar) runs on to
    the next business day. Counted from the mailing alone, GB's would have been 21 December."""
    rules = profile(jurisdiction)
    assert (rules.cure_notice_days, rules.cure_mailing_days) == (14, 5)
    assert rules.hours.holidays is not None and is_public_holiday(holiday, rules.hours.holidays)
    notice = planned_notice(
        written,
        jurisdiction=jurisdiction,
        timezone=zone,
        cure_amount=Decimal("825.00"),
        currency="GBP" if jurisdiction == "GB" else "EUR",
        rules=rules,
    )
    assert notice is not None and notice.last_day == last_day
    context = cure_letter_context(
        notice,
        lender="Acme Auto Finance",
        lender_contact="0345 600 0100",
        borrower_name="Dana Borrower",
        account_reference="A-1",
        address=("1 High Street",),
        letter_date=written.date(),
    )
    words = _words(render("right_to_cure", context).pdf)
    after = date.fromordinal(last_day.toordinal() + 1).isoformat()
    assert f"Pay before: {after} (the last day to pay is {last_day.isoformat()})" in words


def _cli(*args: str) -> Any:
    from deployments.cli import app

    return CliRunner().invoke(app, list(args))


def _decide(db_url: str, as_of: str) -> Any:
    return _cli(
        "review",
        "decide",
        "A-GB1",
        "--decision",
        "repossess",
        "--reviewer",
        "Ana Ruiz",
        "--reason",
        "no payment after the default notice",
        "--as-of",
        as_of,
        "--database",
        db_url,
    )


def _refused(result: Any) -> str:
    """Why the CLI refused (exit 2), or the empty string when it did not."""
    from deployments.cli._common import CliError

    refused = isinstance(result.exception, CliError) and result.exception.exit_code == 2
    return str(result.exception) if refused else ""


def test_a_gb_account_in_review_is_mailed_its_default_notice_and_waits_14_days_from_service(
    mail_db: Engine,
    db_url: str,
    tmp_path: Path,
    letters_sandbox: Any,
    agency_sandbox: Any,
    default_sheet: Path,
) -> None:
    """A GB account a cycle moved into repossession review: its default notice is written, rendered
    and handed to the sandbox print shop (a PDF reading back the amount in pounds and the date
    before which, the FCA's default information sheet after it), to a GB address. No decision
    before it is mailed; mailed on Monday 7 December 2026, it is served on Saturday 12, the 14
    days end on Saturday 26, and the Boxing Day bank holiday carries the period to the end of
    Tuesday 29 December: a decision is refused until then, and the repossession then asked for
    goes to court, never to the agency (protected goods)."""
    from tasks.letters import send_letters, track_letters
    from tasks.review import prepare_reviews

    put_in_review(
        mail_db,
        tmp_path,
        "A-GB1",
        **LEEDS,
    )
    assert prepare_reviews.fn(at("2026-12-01T17:00:00Z")).notices == 1
    [written] = rows(mail_db, letter_t, "A-GB1")
    assert (written.kind, written.status, written.template) == (
        "right_to_cure",
        "pending",
        "right_to_cure.GB.j2",
    )
    assert send_letters.fn(as_of=at("2026-12-01T17:05:00Z"))["letters_sent"] == 1

    [sent] = letters_sandbox.letters()
    [letter] = rows(mail_db, letter_t, "A-GB1")
    assert sent["pdf_sha256"] == letter.pdf_sha256 and sent["to"]["address_country"] == "GB"
    words = _words(letter.pdf)
    # Written on Tuesday 1 December: mailed by Friday 4, served by Wednesday 9, 14 days to the 23rd.
    assert "This is a default notice served under section 87(1) of the Consumer Credit Act 1974." in words
    assert "Amount to pay: £825.00" in words
    assert "Pay before: 2026-12-24 (the last day to pay is 2026-12-23)" in words
    assert words.endswith("Stand-in default information sheet, page 2 of 2")

    assert "has not gone out" in _refused(_decide(db_url, "2027-01-30T12:00:00Z"))

    # Mailed later than the letter allowed for: the period counts from the mailing, not the print.
    letters_sandbox.advance(sent["id"], "mailed", at="2026-12-07T15:00:00Z")
    track_letters.fn()
    [review] = rows(mail_db, review_t, "A-GB1")
    assert review.cure_deadline == datetime(2026, 12, 30, 0, tzinfo=UTC)  # London's midnight after the 29th
    served = datetime(2026, 12, 12, 15, tzinfo=UTC)
    assert (review.cure_deadline - served).days >= 14

    for early in ("2026-12-26T12:00:00Z", "2026-12-29T23:59:00Z"):
        assert "runs until 2026-12-30T00:00:00+00:00" in _refused(_decide(db_url, early)), early
    decided = _decide(db_url, "2026-12-30T09:00:00Z")
    assert decided.exit_code == 0, decided.output
    [review] = rows(mail_db, review_t, "A-GB1")
    assert review.decision == "legal"  # CCA 1974 s.90: the court, not the agency
    assert agency_sandbox.assignments() == []


def test_a_notice_owed_where_arrears_has_no_template_is_blocked_and_holds_only_its_review(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What became of every GB and IE notice before their templates, still so for a notice owed
    where arrears writes none (a lender's policy giving Californians a cure period the law does not
    require): the review's letter is blocked with the reason, as one that cannot be rendered, and
    the review can be decided only once a notice goes; the Iowa review beside it is written as ever."""
    from tasks.review import prepare_reviews, waiting

    policy = tmp_path / "policy.toml"
    policy.write_text('[profiles."US-CA"]\ncure_notice_days = 30\n', encoding="utf-8")
    monkeypatch.setenv("ARREARS_POLICY_FILE", str(policy))
    get_settings.cache_clear()
    california = {"jurisdiction": "US-CA", "timezone": "America/Los_Angeles", "phone": "(213) 373-0101"}
    put_in_review(
        mail_db, tmp_path, "A-CA1", state="CA", city="Los Angeles", postal_code="90012", **california
    )
    put_in_review(mail_db, tmp_path, "A-IA1")
    assert prepare_reviews.fn(at("2026-12-01T17:00:00Z")).notices == 2  # one to mail, one blocked
    [blocked] = rows(mail_db, letter_t, "A-CA1")
    assert (blocked.kind, blocked.status, blocked.reason) == (
        "right_to_cure",
        "blocked",
        "not rendered: LetterTemplateMissing: no right_to_cure letter for US-CA",
    )
    [written] = rows(mail_db, letter_t, "A-IA1")
    assert written.status == "pending"
    [w] = [w for w in waiting(mail_db, now=at("2027-02-01T00:00:00Z")) if w.account_id == "A-CA1"]
    assert (w.waits_for, "LetterTemplateMissing" in w.detail) == ("blocked", True)
    refused = _cli(
        "review",
        "decide",
        "A-CA1",
        "--decision",
        "legal",
        "--reviewer",
        "Ana Ruiz",
        "--reason",
        "r",
        "--as-of",
        "2027-02-01T12:00:00Z",
        "--database",
        db_url,
    )
    assert "right-to-cure" in _refused(refused)
