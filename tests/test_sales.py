"""After the repossessed car is sold (DESIGN §2: legal referral is entered "by decision, or
deficiency after a vehicle sale"): `arrears sale record|extend`, the explanation of the surplus or
deficiency (UCC 9-616), the deficiency's way back into legal referral, and the sale's arithmetic."""

import io
import json
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pypdf
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, select, update
from typer.testing import CliRunner

from arrears.models import Letter
from arrears.sales import dispose, sale_bar
from arrears.settings import get_settings
from tests.later_stage_helpers import account, account_t, at, events, pay, put_in_review, rows
from tests.test_after_repossession import _recovered

letter_t = Letter.__table__  # type: ignore[attr-defined]

RECOVERED = "2027-01-04T00:00:00Z"  # the recoveries step after the agency's report (3 January)
WRITTEN = RECOVERED
MAILED_ON = "2027-01-05T15:00:00Z"
CN = {
    "jurisdiction": "CN",
    "timezone": "Asia/Shanghai",
    "currency": "CNY",
    "phone": "13912345678",
    "borrower_name": "王芳",
    "address_line1": "世纪大道100号",
    "city": "上海市",
    "state": "上海",
    "postal_code": "200120",
}
CA = {"jurisdiction": "US-CA", "timezone": "America/Los_Angeles", "state": "CA", "city": "Fresno"}


def _cli(db_url: str, *args: str) -> Any:
    from deployments.cli import app

    return CliRunner().invoke(app, [*args, "--database", db_url])


def _refused(result: Any) -> str:
    from deployments.cli._common import CliError

    assert isinstance(result.exception, CliError) and result.exception.exit_code == 2, result.output
    return str(result.exception)


def _record(
    db_url: str, account_id: str, sold_on: date, *extra: str, as_of: str | None = None, **amounts: str
) -> Any:
    values = {"proceeds": "9000.00", "expenses": "750.00", "credits": "100.00"} | amounts
    return _cli(
        db_url,
        "sale",
        "record",
        account_id,
        "--sold-on",
        sold_on.isoformat(),
        "--proceeds",
        values["proceeds"],
        "--expenses",
        values["expenses"],
        "--credits",
        values["credits"],
        "--by",
        "Ray Ortiz",
        "--as-of",
        as_of or f"{sold_on + timedelta(days=1)}T18:00:00Z",
        *extra,
    )


def _extend(db_url: str, account_id: str, requested_on: str, *, by: str, as_of: str) -> Any:
    """`arrears sale extend`: the borrower's written request of `requested_on`, recorded at `as_of`."""
    return _cli(
        db_url, "sale", "extend", account_id, "--requested-on", requested_on, "--by", by, "--as-of", as_of
    )


def _settle(when: str) -> dict[str, int]:
    from tasks.recovery import settle_recoveries

    return settle_recoveries(at(when))


def _mail(letters_sandbox: Any, account_id: str, kind: str, when: str, *, written: str) -> None:
    """The letters run an hour after the letter was `written` hands it to the sandbox Lob, which
    mails it at `when`; the lookup records it."""
    from tasks.letters import send_letters, track_letters

    send_letters.fn(as_of=at(written) + timedelta(hours=1))
    [sent] = [
        x
        for x in letters_sandbox.letters()
        if x["description"] == kind and account_id.lower() in x["idempotency_key"]
    ]
    letters_sandbox.advance(sent["id"], "mailed", at=when)
    track_letters.fn()


def _letters(engine: Engine, account_id: str, kind: str) -> list[Any]:
    return [x for x in rows(engine, letter_t, account_id) if x.kind == kind]


def _closed_after_notice(
    engine: Engine, tmp_path: Path, letters_sandbox: Any, account_id: str, **kw: str
) -> date:
    """A recovered car whose notice of sale was mailed on 5 January: the account closed; the first
    day of the sale the close recorded."""
    put_in_review(engine, tmp_path, account_id, **kw)
    _recovered(engine, account_id)
    assert _settle(RECOVERED)["sale_notices_written"] == 1
    _mail(letters_sandbox, account_id, "notice_of_sale", MAILED_ON, written=RECOVERED)
    assert _settle("2027-01-05T18:00:00Z")["recoveries_closed"] == 1
    [closed] = [e for e in events(engine, account_id, "transition") if e.data["to"] == "closed"]
    assert account(engine, account_id).stage == "closed"
    return date.fromisoformat(closed.data["sale_after"])


def _pdf_text(engine: Engine, letter_id: int) -> str:
    """The words of the letter's PDF as mailed, on one line."""
    with engine.connect() as c:
        pdf = c.execute(select(letter_t.c.pdf).where(letter_t.c.id == letter_id)).scalar_one()
    return " ".join(
        "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(bytes(pdf))).pages).split()
    )


def _claim(engine: Engine, account_id: str, when: str) -> Decimal | None:
    from arrears.storage.referrals import open_referral

    with engine.begin() as c:
        state = open_referral(c, account_id=account_id, at=at(when), lender="Acme Auto Finance")
    return None if state is None else state.claim_amount


def _deficiency_referred(
    engine: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any, account_id: str
) -> date:
    """A US-IA sale with a deficiency of 10,100.00 (18,450 + 750 - 100 - 9,000), its explanation
    mailed and the account back in legal referral; the sale's date."""
    sale_after = _closed_after_notice(engine, tmp_path, letters_sandbox, account_id)
    sold = sale_after + timedelta(days=2)
    assert _record(db_url, account_id, sold).exit_code == 0
    _settle(f"{sold + timedelta(days=2)}T15:00:00Z")
    mailed, written = f"{sold + timedelta(days=4)}T15:00:00Z", f"{sold + timedelta(days=2)}T15:00:00Z"
    _mail(letters_sandbox, account_id, "deficiency_explanation", mailed, written=written)
    assert _settle(f"{sold + timedelta(days=4)}T18:00:00Z")["sales_referred"] == 1
    return sold


# -- the US path: record, explain, refer ------------------------------------------------------------


@pytest.mark.usefixtures("letters_sandbox")
def test_a_us_deficiency_is_explained_and_referred_only_once_the_explanation_is_mailed(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """The sale is recorded with its accounting; the next recoveries step writes the UCC 9-616
    explanation, whose PDF states the six amounts; the account stays closed until that letter is
    mailed (the demand may not come first), then re-enters legal referral as a new stay with its
    reason, once; the referral claims the recorded deficiency."""
    sale_after = _closed_after_notice(mail_db, tmp_path, letters_sandbox, "A-DEF")
    sold = sale_after + timedelta(days=2)
    recorded = _record(db_url, "A-DEF", sold)
    assert recorded.exit_code == 0, recorded.output
    assert "deficiency of USD 10100.00" in recorded.output
    [sale] = events(mail_db, "A-DEF", "vehicle_sale")
    assert sale.actor == "operations:Ray Ortiz"
    assert {
        k: sale.data[k]
        for k in ("proceeds", "fees", "credits", "secured", "secured_on", "deficiency", "surplus")
    } == {
        "proceeds": "9000.00",
        "fees": "750.00",
        "credits": "100.00",
        "secured": "18450.00",
        "secured_on": "2027-01-03",
        "deficiency": "10100.00",
        "surplus": "0.00",
    }
    assert (sale.data["sold_on"], sale.data["sale_after"], sale.data["barred"]) == (
        sold.isoformat(),
        sale_after.isoformat(),
        None,
    )

    written = _settle(f"{sold + timedelta(days=2)}T15:00:00Z")
    assert written["sale_explanations_written"] == 1
    assert account(mail_db, "A-DEF").stage == "closed"
    _mail(
        letters_sandbox,
        "A-DEF",
        "deficiency_explanation",
        f"{sold + timedelta(days=4)}T15:00:00Z",
        written=f"{sold + timedelta(days=2)}T15:00:00Z",
    )
    [explained] = _letters(mail_db, "A-DEF", "deficiency_explanation")
    text = _pdf_text(mail_db, explained.id)
    for said in (
        "as of 2027-01-03: $18,450.00",  # the day the car was taken (UCC 9-616(c)(1)(A))
        "proceeds of the sale: $9,000.00",
        "after deducting the proceeds: $9,450.00",
        "attorney's fees: $750.00",
        "payments received after 2027-01-03: $100.00",
        "deficiency, which you still owe us: $10,100.00",
    ):
        assert said in text, (said, text)
    assert (
        text.index("$18,450.00")
        < text.index("$9,000.00")
        < text.index("$9,450.00")
        < text.index("$10,100.00")
    )
    assert f"contact {get_settings().lender_name}: {get_settings().lender_contact}" in text
    # 9-616(a)(1)(C): that future debits, credits and charges may affect the deficiency.
    assert (
        "including additional interest, rebates and expenses, may change the amount of the deficiency" in text
    )

    moved = _settle(f"{sold + timedelta(days=4)}T18:00:00Z")
    assert moved["sales_referred"] == 1
    a = account(mail_db, "A-DEF")
    assert (a.stage, a.stage_since) == ("legal_referral", at(f"{sold + timedelta(days=4)}T15:00:00Z"))
    [back] = [e for e in events(mail_db, "A-DEF", "transition") if e.data["to"] == "legal_referral"]
    assert back.data["from"] == "closed" and "explanation (UCC 9-616) mailed" in back.detail
    # The recovery does not close it again, nor is it referred twice.
    again = _settle(f"{sold + timedelta(days=5)}T18:00:00Z")
    assert (again["recoveries_closed"], again["sales_referred"]) == (0, 0)
    assert account(mail_db, "A-DEF").stage == "legal_referral"
    assert _claim(mail_db, "A-DEF", f"{sold + timedelta(days=5)}T18:00:00Z") == Decimal("10100.00")
    # Referred, the sale is settled: closed again (a judgment), it is not read again.
    assert len(events(mail_db, "A-DEF", "sale_settled")) == 1
    with mail_db.begin() as c:
        c.execute(update(account_t).where(account_t.c.account_id == "A-DEF").values(stage="closed"))
    assert _to_settle(mail_db) == []


@pytest.mark.usefixtures("letters_sandbox")
def test_a_us_deficiency_waits_in_closed_while_its_explanation_is_not_mailed(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """Written and handed to the provider, but not mailed: no referral yet."""
    from tasks.letters import send_letters

    sale_after = _closed_after_notice(mail_db, tmp_path, letters_sandbox, "A-WAIT")
    sold = sale_after + timedelta(days=1)
    assert _record(db_url, "A-WAIT", sold).exit_code == 0
    assert _settle(f"{sold + timedelta(days=1)}T15:00:00Z")["sale_explanations_written"] == 1
    send_letters.fn(as_of=at(f"{sold + timedelta(days=1)}T16:00:00Z"))
    waiting = _settle(f"{sold + timedelta(days=2)}T15:00:00Z")
    assert (waiting["sales_waiting"], waiting["sales_referred"]) == (1, 0)
    assert account(mail_db, "A-WAIT").stage == "closed"


@pytest.mark.usefixtures("letters_sandbox")
def test_the_claim_is_the_deficiency_less_payments_since_never_the_balance_less_the_proceeds_again(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """The servicing system takes the proceeds off the balance it sends (18,450 - 9,000 = 9,450),
    and the borrower pays 600 after the sale: the claim is 10,100 - 600, not 9,450 + 750 - 9,000."""
    sold = _deficiency_referred(mail_db, db_url, tmp_path, letters_sandbox, "A-PAID")
    with mail_db.begin() as c:
        c.execute(
            update(account_t).where(account_t.c.account_id == "A-PAID").values(balance=Decimal("9450.00"))
        )
    pay(mail_db, tmp_path, "A-PAID", "600.00", f"{sold + timedelta(days=6)}T15:00:00+00:00")
    assert _claim(mail_db, "A-PAID", f"{sold + timedelta(days=7)}T15:00:00Z") == Decimal("9500.00")


@pytest.mark.usefixtures("letters_sandbox")
def test_line_one_is_what_was_owed_when_the_car_was_taken_and_later_payments_are_credits(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """UCC 9-616(c)(1)(A): the obligations are calculated as of a day no more than 35 days before
    possession: the balance the servicing system had sent when the agency took the car (18,450),
    not the one it sends when the sale is recorded (here lowered by the proceeds to 9,450). A
    payment of 300 received after the car was taken is a credit of line (5), beside the 100
    typed; one of 200 after the sale was recorded comes off the claim."""
    sale_after = _closed_after_notice(mail_db, tmp_path, letters_sandbox, "A-LINE1")
    sold = sale_after + timedelta(days=2)
    pay(mail_db, tmp_path, "A-LINE1", "300.00", f"{sold}T15:00:00+00:00")
    with mail_db.begin() as c:
        c.execute(
            update(account_t).where(account_t.c.account_id == "A-LINE1").values(balance=Decimal("9450.00"))
        )
    recorded = _record(db_url, "A-LINE1", sold, as_of=f"{sold}T20:00:00Z")
    assert recorded.exit_code == 0, recorded.output
    [sale] = events(mail_db, "A-LINE1", "vehicle_sale")
    assert (sale.data["secured"], sale.data["secured_on"]) == ("18450.00", "2027-01-03")
    assert (sale.data["credits"], sale.data["credited_payments"]) == ("400.00", "300.00")
    assert sale.data["deficiency"] == "9800.00"  # 18,450 + 750 - 400 - 9,000
    # The same sale typed again (credits 100) is the same sale.
    again = _record(db_url, "A-LINE1", sold, as_of=f"{sold}T21:00:00Z")
    assert again.exit_code == 0, again.output
    assert len(events(mail_db, "A-LINE1", "vehicle_sale")) == 1
    _settle(f"{sold + timedelta(days=2)}T15:00:00Z")
    _mail(
        letters_sandbox,
        "A-LINE1",
        "deficiency_explanation",
        f"{sold + timedelta(days=4)}T15:00:00Z",
        written=f"{sold + timedelta(days=2)}T15:00:00Z",
    )
    [explained] = _letters(mail_db, "A-LINE1", "deficiency_explanation")
    text = _pdf_text(mail_db, explained.id)
    assert "as of 2027-01-03: $18,450.00" in text
    assert "payments received after 2027-01-03: $400.00" in text
    assert "deficiency, which you still owe us: $9,800.00" in text
    pay(mail_db, tmp_path, "A-LINE1", "200.00", f"{sold + timedelta(days=3)}T15:00:00+00:00")
    assert _settle(f"{sold + timedelta(days=4)}T18:00:00Z")["sales_referred"] == 1
    assert _claim(mail_db, "A-LINE1", f"{sold + timedelta(days=5)}T18:00:00Z") == Decimal("9600.00")


@pytest.mark.usefixtures("letters_sandbox")
def test_a_surplus_is_explained_and_the_account_stays_closed(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """Proceeds of 20,000 against an obligation of 19,100: a surplus of 900 owed to the borrower
    (UCC 9-615(d)(1)); its explanation is mailed (9-616 covers both), and no referral follows."""
    sale_after = _closed_after_notice(mail_db, tmp_path, letters_sandbox, "A-SUR")
    sold = sale_after
    recorded = _record(db_url, "A-SUR", sold, proceeds="20000.00")
    assert recorded.exit_code == 0 and "surplus of USD 900.00 owed to the borrower" in recorded.output
    assert _settle(f"{sold + timedelta(days=1)}T15:00:00Z")["sale_explanations_written"] == 1
    _mail(
        letters_sandbox,
        "A-SUR",
        "deficiency_explanation",
        f"{sold + timedelta(days=2)}T15:00:00Z",
        written=f"{sold + timedelta(days=1)}T15:00:00Z",
    )
    [explained] = _letters(mail_db, "A-SUR", "deficiency_explanation")
    text = _pdf_text(mail_db, explained.id)
    assert "EXPLANATION OF YOUR SURPLUS" in text and "surplus, which we owe you: $900.00" in text
    assert "may change the amount" not in text
    after = _settle(f"{sold + timedelta(days=3)}T15:00:00Z")
    assert (after["sales_referred"], after["sale_explanations_written"]) == (0, 0)
    assert account(mail_db, "A-SUR").stage == "closed"
    assert [e for e in events(mail_db, "A-SUR", "transition") if e.data["to"] == "legal_referral"] == []
    # Explained and mailed, the sale is settled: every later recoveries step leaves it unread.
    [settled] = events(mail_db, "A-SUR", "sale_settled")
    assert "surplus" in settled.detail
    assert _to_settle(mail_db) == []


def _to_settle(engine: Engine) -> list[str]:
    """The accounts whose sale the recoveries step still reads."""
    from arrears.storage.sales import sales_to_settle

    with engine.connect() as c:
        return [s.sale.account_id for s in sales_to_settle(c)]


@pytest.mark.usefixtures("letters_sandbox")
def test_a_sale_before_the_notices_first_day_is_recorded_but_its_deficiency_is_barred(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """Sold the day before the notice allowed: recorded, because it happened, with the bar and its
    reason; no explanation, no referral (UCC 9-626)."""
    sale_after = _closed_after_notice(mail_db, tmp_path, letters_sandbox, "A-BAR")
    recorded = _record(db_url, "A-BAR", sale_after - timedelta(days=1))
    assert recorded.exit_code == 0, recorded.output
    assert "no deficiency may be claimed" in recorded.output and "no legal referral" in recorded.output
    [sale] = events(mail_db, "A-BAR", "vehicle_sale")
    assert sale.data["barred"] and sale_after.isoformat() in sale.data["barred"]
    after = _settle(f"{sale_after + timedelta(days=3)}T15:00:00Z")
    assert (after["sales_referred"], after["sale_explanations_written"]) == (0, 0)
    assert (
        account(mail_db, "A-BAR").stage == "closed"
        and _letters(mail_db, "A-BAR", "deficiency_explanation") == []
    )


@pytest.mark.usefixtures("letters_sandbox")
def test_a_surplus_after_an_early_sale_is_explained_all_the_same(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """An early sale bars a deficiency, not the borrower's surplus: it is owed and explained (UCC
    9-615(d)(1), 9-616(b)(1)(A)), and nothing is referred."""
    sale_after = _closed_after_notice(mail_db, tmp_path, letters_sandbox, "A-BARS")
    sold = sale_after - timedelta(days=1)
    recorded = _record(db_url, "A-BARS", sold, proceeds="20000.00")
    assert recorded.exit_code == 0, recorded.output
    assert "surplus of USD 900.00 owed to the borrower" in recorded.output and "came early" in recorded.output
    assert _settle(f"{sale_after + timedelta(days=1)}T15:00:00Z")["sale_explanations_written"] == 1
    _mail(
        letters_sandbox,
        "A-BARS",
        "deficiency_explanation",
        f"{sale_after + timedelta(days=2)}T15:00:00Z",
        written=f"{sale_after + timedelta(days=1)}T15:00:00Z",
    )
    [explained] = _letters(mail_db, "A-BARS", "deficiency_explanation")
    assert "surplus, which we owe you: $900.00" in _pdf_text(mail_db, explained.id)
    after = _settle(f"{sale_after + timedelta(days=3)}T15:00:00Z")
    assert (after["sales_referred"], after["sale_explanations_written"]) == (0, 0)
    assert account(mail_db, "A-BARS").stage == "closed" and _to_settle(mail_db) == []


@pytest.mark.usefixtures("letters_sandbox")
def test_a_sale_while_the_notice_is_not_mailed_closes_the_account_barred_and_holds_the_notice_back(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """The car sold while its notice of sale was still unsent: the sale is recorded barred, the
    account closes (nothing is left for the recovery to do), and the notice announcing a sale that
    has taken place never goes."""
    put_in_review(mail_db, tmp_path, "A-EARLY")
    _recovered(mail_db, "A-EARLY")
    assert _settle(RECOVERED)["sale_notices_written"] == 1
    recorded = _record(db_url, "A-EARLY", date(2027, 1, 4), as_of="2027-01-04T20:00:00Z")
    assert recorded.exit_code == 0, recorded.output
    assert "before the notice of the planned sale was mailed" in recorded.output
    assert account(mail_db, "A-EARLY").stage == "closed"
    [notice] = _letters(mail_db, "A-EARLY", "notice_of_sale")
    assert (notice.status, notice.reason) == ("blocked", "the vehicle was sold")
    assert _settle("2027-01-06T15:00:00Z")["sale_notices_written"] == 0


@pytest.mark.usefixtures("letters_sandbox")
@pytest.mark.parametrize(("days_after", "barred"), [(9, True), (10, False)])
def test_a_california_request_for_ten_more_days_moves_the_first_sale_day(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any, days_after: int, barred: bool
) -> None:
    """Cal. Civ. Code 2983.2(a): the borrower asked in writing for 10 more days; a sale 9 days after
    the notice's date is now too early (barred), one 10 days after is not."""
    sale_after = _closed_after_notice(mail_db, tmp_path, letters_sandbox, "A-CA1", **CA)
    asked = sale_after - timedelta(days=2)
    extended = _extend(db_url, "A-CA1", asked.isoformat(), by="Ray Ortiz", as_of=f"{asked}T20:00:00Z")
    assert extended.exit_code == 0, extended.output
    assert f"no sale before {(sale_after + timedelta(days=10)).isoformat()}" in extended.output
    [said] = events(mail_db, "A-CA1", "sale_extended")
    assert said.data["first_sale_day"] == (sale_after + timedelta(days=10)).isoformat()
    again = _extend(db_url, "A-CA1", asked.isoformat(), by="Ray Ortiz", as_of=f"{asked}T21:00:00Z")
    assert again.exit_code == 0 and "nothing changed" in again.output
    assert len(events(mail_db, "A-CA1", "sale_extended")) == 1
    _record(db_url, "A-CA1", sale_after + timedelta(days=days_after))
    [sale] = events(mail_db, "A-CA1", "vehicle_sale")
    assert bool(sale.data["barred"]) is barred


@pytest.mark.usefixtures("letters_sandbox")
def test_without_the_request_a_california_sale_after_the_notices_day_is_not_barred(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """The same sale 9 days after the notice's date, with no request for more time, stands."""
    sale_after = _closed_after_notice(mail_db, tmp_path, letters_sandbox, "A-CA2", **CA)
    assert _record(db_url, "A-CA2", sale_after + timedelta(days=9)).exit_code == 0
    [sale] = events(mail_db, "A-CA2", "vehicle_sale")
    assert sale.data["barred"] is None


# -- refusals and idempotency ---------------------------------------------------------------------


@pytest.mark.usefixtures("letters_sandbox")
def test_sale_record_refuses_what_does_not_fit_naming_the_option(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """Exit 2, nothing recorded: a negative amount, more decimals than USD has, a sale date ahead
    of today; an account with no recovered car."""
    sale_after = _closed_after_notice(mail_db, tmp_path, letters_sandbox, "A-REF")
    sold = sale_after + timedelta(days=1)
    assert "--proceeds" in _refused(_record(db_url, "A-REF", sold, proceeds="-5"))
    assert "more decimals than USD" in _refused(_record(db_url, "A-REF", sold, expenses="10.005"))
    assert _refused(_record(db_url, "A-REF", sold, expenses="10.005")).startswith("--expenses")
    assert "--credits" in _refused(_record(db_url, "A-REF", sold, credits="abc"))
    ahead = _record(db_url, "A-REF", sold, as_of=f"{sold - timedelta(days=1)}T18:00:00Z")
    assert _refused(ahead).startswith("--sold-on") and "after today" in _refused(ahead)
    assert events(mail_db, "A-REF", "vehicle_sale") == []
    put_in_review(mail_db, tmp_path, "A-NOCAR")
    assert "has no recovered vehicle" in _refused(_record(db_url, "A-NOCAR", sold))
    outside = _extend(db_url, "A-REF", sold.isoformat(), by="Ray Ortiz", as_of=f"{sold}T20:00:00Z")
    assert "California's" in _refused(outside)


@pytest.mark.usefixtures("letters_sandbox")
def test_the_same_sale_again_changes_nothing_and_another_is_refused(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """Recorded once: the same sale again exits 0 saying nothing changed; a different sale of the
    same recovery exits 2 naming the sale that stands."""
    sale_after = _closed_after_notice(mail_db, tmp_path, letters_sandbox, "A-IDEM")
    sold = sale_after + timedelta(days=1)
    assert _record(db_url, "A-IDEM", sold).exit_code == 0
    again = _record(db_url, "A-IDEM", sold, "--json", as_of=f"{sold + timedelta(days=3)}T18:00:00Z")
    assert again.exit_code == 0 and json.loads(again.stdout)["changed"] is False
    other = _refused(_record(db_url, "A-IDEM", sold, proceeds="9500.00"))
    assert "recorded already" in other and "USD 9000.00" in other
    assert len(events(mail_db, "A-IDEM", "vehicle_sale")) == 1
    extend = _extend(db_url, "A-IDEM", sold.isoformat(), by="R", as_of=f"{sold}T20:00:00Z")
    assert "California's" in _refused(extend)


@pytest.mark.usefixtures("letters_sandbox")
def test_an_explanation_without_an_address_is_blocked_and_written_once_one_is_on_file(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """No mailing address on file when the explanation is due: the letter is blocked with the
    reason, as every letter is, and the deficiency waits (no demand before the explanation); once
    an address is on file, the next recoveries step writes it again in its place."""
    from tasks.letters import NO_ADDRESS

    sale_after = _closed_after_notice(mail_db, tmp_path, letters_sandbox, "A-ADDR")
    sold = sale_after + timedelta(days=1)
    with mail_db.begin() as c:
        c.execute(update(account_t).where(account_t.c.account_id == "A-ADDR").values(address_line1=None))
    assert _record(db_url, "A-ADDR", sold).exit_code == 0
    assert _settle(f"{sold + timedelta(days=1)}T15:00:00Z")["sale_explanations_written"] == 1
    [blocked] = _letters(mail_db, "A-ADDR", "deficiency_explanation")
    assert (blocked.status, blocked.reason) == ("blocked", NO_ADDRESS)
    waiting = _settle(f"{sold + timedelta(days=2)}T15:00:00Z")
    assert (waiting["sales_waiting"], waiting["sales_referred"]) == (1, 0)
    assert account(mail_db, "A-ADDR").stage == "closed"
    with mail_db.begin() as c:
        c.execute(
            update(account_t).where(account_t.c.account_id == "A-ADDR").values(address_line1="12 Elm Street")
        )
    assert _settle(f"{sold + timedelta(days=3)}T15:00:00Z")["sale_explanations_written"] == 1
    [rewritten] = _letters(mail_db, "A-ADDR", "deficiency_explanation")
    assert (rewritten.id, rewritten.status) == (blocked.id, "pending")


@pytest.mark.usefixtures("letters_sandbox")
def test_an_explanation_that_could_not_be_rendered_is_written_again_when_an_operator_asks(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A template bug blocks the explanation (and with it the deficiency's referral); once fixed,
    `arrears letters rewrite` has the recoveries step write it again in its place, and it goes."""
    import tasks.letters
    from tasks.letters import send_letters

    sale_after = _closed_after_notice(mail_db, tmp_path, letters_sandbox, "A-RW")
    sold = sale_after + timedelta(days=1)
    assert _record(db_url, "A-RW", sold).exit_code == 0
    written = f"{sold + timedelta(days=1)}T15:00:00Z"
    assert _settle(written)["sale_explanations_written"] == 1
    render = tasks.letters.render

    def broken(kind: str, *args: Any, **kwargs: Any) -> Any:
        if kind == "deficiency_explanation":
            raise ValueError("template bug")
        return render(kind, *args, **kwargs)

    monkeypatch.setattr(tasks.letters, "render", broken)
    send_letters.fn(as_of=at(written) + timedelta(hours=1))
    [blocked] = _letters(mail_db, "A-RW", "deficiency_explanation")
    assert (blocked.status, blocked.reason) == ("blocked", "not rendered: ValueError: template bug")
    monkeypatch.setattr(tasks.letters, "render", render)
    asked = f"{sold + timedelta(days=2)}T09:00:00Z"
    done = _cli(
        db_url, "letters", "rewrite", str(blocked.id), "--reason", "fixed", "--as-of", asked, "--json"
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["status"] == "pending"
    send_letters.fn(as_of=at(asked) + timedelta(hours=1))
    [sent] = _letters(mail_db, "A-RW", "deficiency_explanation")
    assert (sent.id, sent.status) == (blocked.id, "created")


def test_a_policy_may_not_take_the_us_explanation_away() -> None:
    """The explanation is a rule (UCC 9-616(b)): a policy file that turns it off for a US state is
    refused, naming the key and its source."""
    from arrears.jurisdictions import ProfileError, resolve

    assert resolve()["US-CA"].deficiency_explanation and not resolve()["CN"].deficiency_explanation
    with pytest.raises(ProfileError, match=r"deficiency_explanation: a rule requires it \(UCC 9-616"):
        resolve({"US-IA": {"deficiency_explanation": False}})


# -- elsewhere, and under a hold -------------------------------------------------------------------


@pytest.mark.usefixtures("letters_sandbox")
def test_a_cn_deficiency_enters_legal_referral_at_the_next_step_without_an_explanation(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """CN owes no notice of sale and no 9-616 explanation: the recovery closes the account, the
    recorded deficiency takes it back into legal referral at the next recoveries step, and the
    claim is the deficiency."""
    put_in_review(mail_db, tmp_path, "A-CN", **CN)
    _recovered(mail_db, "A-CN")
    assert _settle(RECOVERED)["recoveries_closed"] == 1
    recorded = _record(db_url, "A-CN", date(2027, 1, 10), proceeds="8000.00", expenses="500.00", credits="0")
    assert recorded.exit_code == 0, recorded.output
    moved = _settle("2027-01-12T02:00:00Z")
    assert (moved["sales_referred"], moved["sale_explanations_written"]) == (1, 0)
    assert account(mail_db, "A-CN").stage == "legal_referral"
    assert _letters(mail_db, "A-CN", "deficiency_explanation") == []
    assert _claim(mail_db, "A-CN", "2027-01-12T03:00:00Z") == Decimal("10950.00")  # 18,450 + 500 - 8,000


@pytest.mark.usefixtures("letters_sandbox")
def test_a_bankruptcy_hold_keeps_the_deficiency_out_of_legal_referral(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """A bankruptcy filed after the sale (the automatic stay): no explanation, no referral, said
    once on the timeline; the account stays closed."""
    sale_after = _closed_after_notice(mail_db, tmp_path, letters_sandbox, "A-BK")
    sold = sale_after + timedelta(days=1)
    assert _record(db_url, "A-BK", sold).exit_code == 0
    placed = _cli(
        db_url,
        "hold",
        "place",
        "A-BK",
        "bankruptcy",
        "--reason",
        "chapter 7 filed",
        "--as-of",
        f"{sold + timedelta(days=1)}T12:00:00Z",
    )
    assert placed.exit_code == 0, placed.output
    for day in (2, 3):
        counts = _settle(f"{sold + timedelta(days=day)}T15:00:00Z")
        assert (counts["sales_waiting"], counts["sales_referred"], counts["sale_explanations_written"]) == (
            1,
            0,
            0,
        )
    assert account(mail_db, "A-BK").stage == "closed"
    assert len(events(mail_db, "A-BK", "sale_held")) == 1
    assert _letters(mail_db, "A-BK", "deficiency_explanation") == []


# -- the arithmetic -------------------------------------------------------------------------------

_money = st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False, allow_infinity=False)


@given(balance=_money, proceeds=_money, expenses=_money, credits=_money)
def test_deficiency_and_surplus_are_never_both_owed_and_add_up(
    balance: Decimal, proceeds: Decimal, expenses: Decimal, credits: Decimal
) -> None:
    """Whatever the amounts: at most one of deficiency and surplus is above zero, neither below,
    and obligation - proceeds = deficiency - surplus (UCC 9-615(d)); (3) is (1) less (2)."""
    d = dispose(currency="USD", balance=balance, proceeds=proceeds, expenses=expenses, credits=credits)
    assert d.deficiency >= 0 and d.surplus >= 0 and not (d.deficiency and d.surplus)
    assert d.obligation - d.proceeds == d.deficiency - d.surplus
    assert d.after_proceeds + d.expenses - d.credits == d.deficiency - d.surplus


def test_the_sale_is_computed_at_the_currencys_precision() -> None:
    """The balance the servicing system keeps at four places is taken at the currency's: JPY none."""
    d = dispose(
        currency="JPY", balance=Decimal("100000.4000"), proceeds=Decimal("60000"), expenses=Decimal("0")
    )
    assert (d.balance, d.deficiency) == (Decimal("100000"), Decimal("40000"))


@given(day=st.integers(min_value=-20, max_value=20), extended=st.booleans())
def test_a_sale_is_barred_exactly_when_it_comes_before_the_first_day(day: int, extended: bool) -> None:
    """Before the notice's day (10 later when extended): barred; on it or after: not."""
    first = date(2027, 1, 20)
    sold = first + timedelta(days=day)
    said = sale_bar(sold_on=sold, notice_owed=True, notice_mailed=True, sale_after=first, extended=extended)
    assert (said is not None) is (day < (10 if extended else 0))
    assert sale_bar(sold_on=sold, notice_owed=False, notice_mailed=False, sale_after=None) is None
    assert sale_bar(sold_on=sold, notice_owed=True, notice_mailed=False, sale_after=None) is not None
