"""Settlements: the lender takes less than the balance, paid by a date (`arrears settlement`).

The pure rules first (what may be agreed, how an agreement stands, what the lifecycle does with
one), then the whole path in a database: agreed from the command line, paid by an imported
payments file, settled by the next cycle (from legal referral too), furnished to the bureau; and
an agreement left unpaid that lapses."""

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, update
from typer.testing import CliRunner

from arrears.lifecycle import AccountView, Facts, advance
from arrears.messages import MessageContext
from arrears.models import Message, Settlement
from arrears.policy import DEFAULT_POLICY
from arrears.settlements import SettlementError, assess, check_terms
from arrears.vocabulary import Exit, Hold, Stage
from deployments.cli import app
from deployments.cli._common import CliError
from tests.factories import payment_record, unique_id, write_csv
from tests.later_stage_helpers import (
    account,
    account_t,
    at,
    day,
    events,
    plan_t,
    referral_t,
    rows,
    us_account,
)

settlement_t = Settlement.__table__  # type: ignore[attr-defined]
message_t = Message.__table__  # type: ignore[attr-defined]
TODAY = date(2026, 12, 1)


def view(stage: str = Stage.REMINDER, dpd: int = 5, **kw: Any) -> AccountView:
    base: dict[str, Any] = {
        "account_id": "A-1",
        "stage": stage,
        "stage_since": datetime(2026, 11, 20, tzinfo=UTC),
        "episode": 1,
        "days_past_due": dpd,
        "past_due_amount": Decimal("300") if dpd else Decimal(0),
        "balance": Decimal("9000"),
        "jurisdiction": "CN",
        "timezone": "Asia/Shanghai",
    }
    return AccountView(**(base | kw))


CONTEXT = MessageContext(
    lender="Arrears Auto Finance",
    borrower_name="王芳",
    jurisdiction="CN",
    currency="CNY",
    past_due_amount=Decimal("300"),
    installment_amount=Decimal("300"),
    days_past_due=5,
)


def facts(**kw: Any) -> Facts:
    base: dict[str, Any] = {
        "business_date": TODAY,
        "stage_began": date(2026, 11, 20),
        "ability": 0.8,
        "willingness": 0.8,
        "context": CONTEXT,
    }
    return Facts(**(base | kw))


def terms(**kw: Any) -> None:
    base: dict[str, Any] = {
        "amount": Decimal("9000.00"),
        "currency": "USD",
        "balance": Decimal("18450.00"),
        "past_due": Decimal("412.50"),
        "pay_by": date(2026, 12, 15),
        "business_date": TODAY,
        "stage": Stage.NEGOTIATION,
    }
    check_terms(**(base | kw))


# -- what may be agreed --------------------------------------------------------------------------


def test_a_settlement_below_the_balance_paid_by_a_date_to_come_is_accepted() -> None:
    """An amount below the balance in the currency's minor units, due today or later, may be agreed."""
    terms()
    terms(pay_by=TODAY, amount=Decimal("18449.99"))
    terms(currency="JPY", amount=Decimal("900000"), balance=Decimal("1845000"))
    terms(stage=Exit.CURED)  # delinquent, its first cycle to come
    terms(pay_by=date(2027, 3, 1))  # 90 days ahead, the policy's default most


@pytest.mark.parametrize(
    ("kw", "field", "says"),
    [
        (
            {"amount": Decimal("18450.00")},
            "amount",
            "not below the balance of USD 18450.00: that is a payoff",
        ),
        ({"amount": Decimal("20000")}, "amount", "USD 20000.00 is not below the balance"),
        ({"amount": Decimal("0")}, "amount", "not a positive amount"),
        ({"amount": Decimal("-5")}, "amount", "not a positive amount"),
        ({"amount": Decimal("9000.005")}, "amount", "USD has 2 decimal places"),
        ({"amount": Decimal("9000.5"), "currency": "JPY"}, "amount", "JPY has 0 decimal places"),
        ({"pay_by": date(2026, 11, 30)}, "pay_by", "2026-11-30 is in the past"),
        ({"pay_by": date(2027, 3, 2)}, "pay_by", "2027-03-02 is more than 90 days ahead"),
        ({"pay_by": date(2026, 12, 11), "max_days": 9}, "pay_by", "more than 9 days ahead"),
        ({"stage": Exit.PAID_OFF}, "account", "account is paid_off"),
        ({"stage": Exit.CHARGED_OFF}, "account", "account is charged_off"),
        ({"stage": Exit.CURED, "past_due": Decimal(0)}, "account", "account is current"),
        ({"holds": {Hold.BANKRUPTCY}}, "account", "automatic stay"),
        ({"holds": {Hold.BREATHING_SPACE}}, "account", "Breathing Space"),
    ],
)
def test_what_is_no_settlement_is_refused_naming_the_field(kw: dict[str, Any], field: str, says: str) -> None:
    """A payoff, a non-positive or over-precise amount, a date past, an account out of collection or
    under a statutory moratorium is refused, naming the field that stops it."""
    with pytest.raises(SettlementError, match=says) as refused:
        terms(**kw)
    assert refused.value.field == field


@pytest.mark.parametrize("hold", [Hold.DISPUTE, Hold.DECEASED, Hold.MILITARY, Hold.CEASE_CONTACT])
def test_holds_other_than_a_moratorium_leave_a_settlement_possible(hold: Hold) -> None:
    """A dispute, a death (the estate settles), military service or a cease-contact request does not
    stop a borrower from settling."""
    terms(holds={hold})


# -- how an agreement stands -----------------------------------------------------------------------


def test_payments_reaching_the_amount_by_the_date_pay_it() -> None:
    """The amount reached by payments on or before the pay-by date is paid, whenever it is judged."""
    pay_by = date(2026, 12, 15)
    paid = [(date(2026, 12, 5), Decimal("4000")), (date(2026, 12, 15), Decimal("5000"))]
    found = assess(Decimal("9000"), pay_by, paid, business_date=date(2026, 12, 16), currency="USD")
    assert (found.status, found.received) == ("paid", Decimal("9000"))
    assert found.reason == "USD 9000.00 of USD 9000.00 received by 2026-12-15"


def test_an_agreement_short_of_its_amount_waits_until_its_date_then_lapses() -> None:
    """Short of the amount, an agreement runs through its pay-by date and lapses the day after; a
    payment after the date pays nothing of it."""
    pay_by = date(2026, 12, 15)
    paid = [(date(2026, 12, 5), Decimal("4000")), (date(2026, 12, 16), Decimal("5000"))]
    on_the_day = assess(Decimal("9000"), pay_by, paid, business_date=pay_by, currency="USD")
    assert on_the_day.status == "active"
    after = assess(Decimal("9000"), pay_by, paid, business_date=date(2026, 12, 16), currency="USD")
    assert (after.status, after.received) == ("lapsed", Decimal("4000"))
    assert after.reason == "USD 4000.00 of USD 9000.00 received by 2026-12-15, the pay-by date"


def test_a_payment_received_by_the_date_that_comes_in_a_later_file_still_settles() -> None:
    """The servicer's file with the payment of the pay-by date comes after the next day's cycle: the
    agreement waits `lapse_after_days` for it, then counts it; a payment after the date never."""
    pay_by = date(2026, 12, 15)
    late_file = [(date(2026, 12, 5), Decimal("4000")), (date(2026, 12, 15), Decimal("5000"))]
    waiting = assess(
        Decimal("9000"),
        pay_by,
        late_file[:1],
        business_date=date(2026, 12, 17),
        currency="USD",
        lapse_after_days=3,
    )
    assert waiting.status == "active"
    paid = assess(
        Decimal("9000"),
        pay_by,
        late_file,
        business_date=date(2026, 12, 18),
        currency="USD",
        lapse_after_days=3,
    )
    assert paid.status == "paid"
    too_late = [(date(2026, 12, 5), Decimal("4000")), (date(2026, 12, 16), Decimal("5000"))]
    lapsed = assess(
        Decimal("9000"),
        pay_by,
        too_late,
        business_date=date(2026, 12, 19),
        currency="USD",
        lapse_after_days=3,
    )
    assert (lapsed.status, lapsed.received) == ("lapsed", Decimal("4000"))


# -- what the lifecycle does with one --------------------------------------------------------------


@pytest.mark.parametrize("stage", [*Stage, Exit.CURED])
def test_a_paid_settlement_exits_settled_from_any_stage_even_under_a_hold(stage: str) -> None:
    """A paid agreement exits the account `settled` from every stage and from cured, before the zero
    balance its write-off left could read as paid in full, and under a hold too (a fact of payment)."""
    v = view(stage=stage, balance=Decimal(0), past_due_amount=Decimal(0), dpd=0)
    decision = advance(
        v,
        facts(settlement="paid", holds=frozenset({Hold.DISPUTE})),
        DEFAULT_POLICY,
        at("2026-12-01T04:00:00Z"),
    )
    assert [(s.from_stage, s.to_stage) for s in decision.steps] == [(stage, Exit.SETTLED)]
    assert decision.steps[0].reason == "settlement paid: the balance left written off"
    assert not decision.messages


def test_a_running_settlement_pauses_asks_escalation_and_charge_off() -> None:
    """While an agreement runs the account gets no message, does not go to review at 70 days and is
    not charged off; without it the same account is asked, escalated, charged off."""
    now = at("2026-12-01T04:00:00Z")
    asked = view(stage=Stage.NEGOTIATION, dpd=20)
    assert advance(asked, facts(), DEFAULT_POLICY, now).messages
    assert not advance(asked, facts(settlement="active"), DEFAULT_POLICY, now).messages
    late = view(stage=Stage.NEGOTIATION, dpd=70)
    assert advance(late, facts(), DEFAULT_POLICY, now).stage == Stage.REPOSSESSION_REVIEW
    waiting = advance(late, facts(settlement="active"), DEFAULT_POLICY, now)
    assert (waiting.stage, waiting.steps, waiting.messages) == (Stage.NEGOTIATION, (), ())
    charge_off = DEFAULT_POLICY.exits.charge_off_dpd
    assert charge_off is not None
    old = view(stage=Stage.NEGOTIATION, dpd=charge_off + 1)
    assert advance(old, facts(), DEFAULT_POLICY, now).stage == Exit.CHARGED_OFF
    assert advance(old, facts(settlement="active"), DEFAULT_POLICY, now).stage == Stage.NEGOTIATION


def test_a_cure_still_exits_an_account_with_a_running_settlement() -> None:
    """Payments towards an agreement that clear the past due cure the account: a fact of payment."""
    v = view(stage=Stage.REMINDER, dpd=0, past_due_amount=Decimal(0))
    decision = advance(v, facts(settlement="active"), DEFAULT_POLICY, at("2026-12-01T04:00:00Z"))
    assert decision.stage == Exit.CURED


# -- in the database, from the command line ------------------------------------------------------


@pytest.fixture
def later_db(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, sms_sandbox: Any) -> Engine:
    from arrears.settings import get_settings

    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    return engine


def _cli(db_url: str, *args: str) -> Any:
    return CliRunner().invoke(app, [*args, "--database", db_url])


def _refused(result: Any) -> str:
    """The one-line error of a refused command, which `main()` ends with exit code 2."""
    assert isinstance(result.exception, CliError), result.output
    assert result.exception.exit_code == 2
    return str(result.exception)


def _import(db_url: str, tmp_path: Path, kind: str, records: list[dict[str, str]]) -> None:
    path = write_csv(tmp_path / f"{unique_id(kind)}.csv", records)
    result = _cli(db_url, "import", kind, str(path))
    assert result.exit_code == 0, result.output


def _record(db_url: str, account_id: str, amount: str, pay_by: str, as_of: str) -> Any:
    return _cli(
        db_url,
        "settlement",
        "record",
        account_id,
        "--amount",
        amount,
        "--pay-by",
        pay_by,
        "--agent",
        "lee",
        "--reason",
        "borrower offered half on the phone; approved by collections manager",
        "--as-of",
        as_of,
    )


def _messages(engine: Engine, account_id: str) -> list[str]:
    return [m.idempotency_key for m in rows(engine, message_t, account_id)]


@pytest.mark.usefixtures("prefect_harness")
def test_a_settlement_agreed_and_paid_settles_the_account_and_is_furnished_so(
    later_db: Engine, tmp_path: Path, db_url: str
) -> None:
    """Agreed with `arrears settlement record`, paid by an imported payments file: reminders stop
    meanwhile, and the next cycle exits the account `settled` with the balance left written off,
    audited; the month's Metro 2 line reports it 13 with AU and a zero balance."""
    from arrears.metro2 import validate
    from tasks.bureau import build_furnish_file

    _import(db_url, tmp_path, "accounts", [us_account("A-S1")])
    day(later_db, "2026-12-01T16:00:00Z")
    assert account(later_db, "A-S1").stage == "reminder"
    agreed = _record(db_url, "A-S1", "9000.00", "2026-12-15", "2026-12-02T15:00:00Z")
    assert agreed.exit_code == 0, agreed.output
    assert "settlement 1 agreed: USD 9000.00 for the balance of USD 18450.00, to be paid by 2026-12-15" in (
        " ".join(agreed.output.split())
    )
    before = _messages(later_db, "A-S1")
    day(later_db, "2026-12-05T16:00:00Z")  # the day-5 reminder is due, and not sent
    assert _messages(later_db, "A-S1") == before
    _import(
        db_url,
        tmp_path,
        "payments",
        [payment_record(account_id="A-S1", amount="9000.00", received_at="2026-12-10T15:00:00Z")],
    )
    settled = day(later_db, "2026-12-10T16:00:00Z")
    assert settled["later"]["settlements_paid"] == 1
    a = account(later_db, "A-S1")
    assert (a.stage, a.balance, a.past_due_amount, a.oldest_due_date) == ("settled", 0, 0, None)
    [s] = rows(later_db, settlement_t, "A-S1")
    assert (s.status, s.received, s.written_off) == ("paid", Decimal("9000"), Decimal("9450"))
    trail = [
        (e.kind, e.detail, e.actor)
        for e in events(later_db, "A-S1")
        if e.kind in ("settlement", "transition")
    ]
    assert trail[-3:] == [
        (
            "settlement",
            "settlement 1 agreed: USD 9000.00 for the balance of USD 18450.00, to be paid by 2026-12-15 "
            "(borrower offered half on the phone; approved by collections manager)",
            "agent:lee",
        ),
        (
            "settlement",
            "settlement 1 paid: USD 9000.00 of USD 9000.00 received by 2026-12-15; "
            "USD 9450.00 of the balance written off",
            "arrears",
        ),
        ("transition", "reminder → settled: settlement paid: the balance left written off", "arrears"),
    ]
    shown = json.loads(_cli(db_url, "show", "A-S1", "--json").output)
    assert (shown["stage"], shown["settlement"]["status"], shown["settlement"]["written_off"]) == (
        "settled",
        "paid",
        "9450.00",
    )
    text = " ".join(_cli(db_url, "settlement", "show", "A-S1").output.split())
    assert "settlement 1: paid: USD 9000.00" in text and "written off: USD 9450.00" in text

    built = build_furnish_file.fn("2026-12", created=date(2027, 1, 3))
    assert validate(built.content) == []
    [line] = [r for r in built.reported if r.account_id == "A-S1"]
    assert (line.account_status, line.special_comment, line.current_balance, line.amount_past_due) == (
        "13",
        "AU",
        0,
        0,
    )
    record = line.record
    assert (record[123:125], record[150:152], record[154:163], record[163:172]) == (
        "13",
        "AU",
        "000000000",
        "000000000",
    )


@pytest.mark.usefixtures("prefect_harness")
def test_an_agreement_unpaid_by_its_date_lapses_and_collection_resumes(
    later_db: Engine, tmp_path: Path, db_url: str
) -> None:
    """Paid short by the pay-by date (less than the past due: no cure either), the agreement lapses
    once the days a late file may take are over (audited), the account stays in its stage, and the
    asks it had been spared resume."""
    _import(db_url, tmp_path, "accounts", [us_account("A-S2", oldest_due_date="2026-11-10")])
    day(later_db, "2026-12-01T16:00:00Z")
    assert account(later_db, "A-S2").stage == "negotiation"
    assert _record(db_url, "A-S2", "9000.00", "2026-12-09", "2026-12-02T15:00:00Z").exit_code == 0
    _import(
        db_url,
        tmp_path,
        "payments",
        [payment_record(account_id="A-S2", amount="300.00", received_at="2026-12-04T15:00:00Z")],
    )
    before = _messages(later_db, "A-S2")
    # 9 December in Shanghai, the lender's zone: the pay-by date, and a week on (the next ask due,
    # and not sent)
    day(later_db, "2026-12-08T16:00:00Z")
    assert _messages(later_db, "A-S2") == before
    assert rows(later_db, settlement_t, "A-S2")[0].status == "active"
    # Three days on (`settlements.lapse_after_days`), a payment of the 9th may still be on its way.
    day(later_db, "2026-12-11T16:00:00Z")
    assert rows(later_db, settlement_t, "A-S2")[0].status == "active"
    lapsed = day(later_db, "2026-12-12T16:00:00Z")
    assert lapsed["later"]["settlements_lapsed"] == 1
    [s] = rows(later_db, settlement_t, "A-S2")
    assert (s.status, s.received, s.written_off) == ("lapsed", Decimal("300"), None)
    assert events(later_db, "A-S2", "settlement")[-1].detail == (
        "settlement 1 lapsed: USD 300.00 of USD 9000.00 received by 2026-12-09, the pay-by date; "
        "collection resumes"
    )
    a = account(later_db, "A-S2")
    assert a.stage == "negotiation" and a.balance == Decimal("18150")
    assert any(k.startswith("A-S2:negotiation:") for k in set(_messages(later_db, "A-S2")) - set(before))


@pytest.mark.usefixtures("prefect_harness")
def test_a_settlement_paid_in_legal_referral_ends_the_referral_settled(
    later_db: Engine, tmp_path: Path, db_url: str
) -> None:
    """Accounts in legal referral settle: a referral with nothing before the court ends `settled`
    (no suit goes on); a filed one is left for its referral run, which finds the account paid and
    withdraws the filing (as for a cure), instead of being marked ended while the suit stands."""
    from arrears.storage.referrals import referral_state

    _import(
        db_url,
        tmp_path,
        "accounts",
        [
            us_account(account_id, past_due_amount="1650.00", oldest_due_date="2026-08-01")
            for account_id in ("A-S3", "A-S6")
        ],
    )
    opened = at("2026-11-20T16:00:00Z")
    with later_db.begin() as c:
        c.execute(
            update(account_t)
            .where(account_t.c.account_id.in_(("A-S3", "A-S6")))
            .values(stage="legal_referral", stage_since=opened, episode=4)
        )
        c.execute(
            referral_t.insert(),
            [
                {
                    "account_id": "A-S3",
                    "status": "draft",
                    "filing_id": None,
                    "opened_at": opened,
                    "updated_at": opened,
                },
                {
                    "account_id": "A-S6",
                    "status": "submitted",
                    "filing_id": "CV-2026-0042",
                    "opened_at": opened,
                    "updated_at": opened,
                },
            ],
        )
    for account_id in ("A-S3", "A-S6"):
        assert _record(db_url, account_id, "12000.00", "2026-12-20", "2026-12-01T15:00:00Z").exit_code == 0
    _import(
        db_url,
        tmp_path,
        "payments",
        [
            payment_record(account_id=account_id, amount="12000.00", received_at="2026-12-03T15:00:00Z")
            for account_id in ("A-S3", "A-S6")
        ],
    )
    day(later_db, "2026-12-03T16:00:00Z")
    assert account(later_db, "A-S3").stage == "settled"
    [r] = rows(later_db, referral_t, "A-S3")
    assert r.status == "settled"
    assert events(later_db, "A-S3", "filing")[-1].detail == (
        f"referral {r.id}: draft → settled (settlement paid before anything was filed)"
    )
    assert account(later_db, "A-S6").stage == "settled"
    [filed] = rows(later_db, referral_t, "A-S6")
    assert filed.status == "submitted"
    with later_db.connect() as c:
        state = referral_state(c, filed.id)
    assert state is not None and state.paid  # its run withdraws the filing


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ("--amount", "18450.00", "--pay-by", "2026-12-15"),
            "--amount: USD 18450.00 is not below the balance",
        ),
        (("--amount", "9000.001", "--pay-by", "2026-12-15"), "--amount: 9000.001: USD has 2 decimal places"),
        (("--amount", "nine", "--pay-by", "2026-12-15"), "--amount: 'nine' is not an amount"),
        (("--amount", "9000", "--pay-by", "2026-11-30"), "--pay-by: 2026-11-30 is in the past"),
        (("--amount", "9000", "--pay-by", "15/12/2026"), "--pay-by: '15/12/2026' is not a date"),
        (("--amount", "9000", "--pay-by", "2027-06-01"), "--pay-by: 2027-06-01 is more than 90 days ahead"),
    ],
)
def test_the_command_refuses_bad_terms_naming_the_option_and_stores_nothing(
    sqlite_engine: Engine, sqlite_url: str, tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    """A bad amount or date exits 2 with one line naming the option; no agreement, no audit event."""
    _import(sqlite_url, tmp_path, "accounts", [us_account("A-S4")])
    result = _cli(
        sqlite_url,
        "settlement",
        "record",
        "A-S4",
        *args,
        "--reason",
        "offer",
        "--as-of",
        "2026-12-01T15:00:00Z",
    )
    assert says in _refused(result)
    assert rows(sqlite_engine, settlement_t, "A-S4") == []
    assert events(sqlite_engine, "A-S4", "settlement") == []


def test_a_bankrupt_borrower_cannot_settle_and_an_agreement_is_cancelled_audited(
    sqlite_engine: Engine, sqlite_url: str, tmp_path: Path
) -> None:
    """Under a bankruptcy hold the record is refused (the automatic stay); once lifted, an agreement
    is recorded, a second one and a plan refused while it runs, and `cancel` ends it with who and
    why in the trail."""
    _import(sqlite_url, tmp_path, "accounts", [us_account("A-S5", flags="bankruptcy")])
    refused = _record(sqlite_url, "A-S5", "9000", "2026-12-15", "2026-12-01T15:00:00Z")
    assert "automatic stay" in _refused(refused)
    lifted = _cli(sqlite_url, "hold", "lift", "A-S5", "bankruptcy", "--reason", "case dismissed")
    assert lifted.exit_code == 0, lifted.output
    assert _record(sqlite_url, "A-S5", "9000", "2026-12-15", "2026-12-01T15:00:00Z").exit_code == 0
    again = _record(sqlite_url, "A-S5", "8000", "2026-12-15", "2026-12-01T15:30:00Z")
    assert "settlement 1 is already agreed" in _refused(again)
    with sqlite_engine.begin() as c:  # where a cycle would have put it
        c.execute(update(account_t).where(account_t.c.account_id == "A-S5").values(stage="negotiation"))
    plan = _cli(sqlite_url, "plan", "accept", "A-S5", "--as-of", "2026-12-01T16:00:00Z")
    assert "A-S5: settlement 1 is agreed: the borrower is paying under it" in _refused(plan)
    assert rows(sqlite_engine, plan_t, "A-S5") == []
    cancelled = _cli(
        sqlite_url,
        "settlement",
        "cancel",
        "A-S5",
        "--agent",
        "kim",
        "--reason",
        "borrower withdrew the offer",
    )
    assert cancelled.exit_code == 0, cancelled.output
    [s] = rows(sqlite_engine, settlement_t, "A-S5")
    assert (s.status, s.ended_by, s.end_reason) == ("cancelled", "kim", "borrower withdrew the offer")
    last = events(sqlite_engine, "A-S5", "settlement")[-1]
    assert (last.detail, last.actor) == (
        "settlement 1 cancelled: borrower withdrew the offer; collection resumes",
        "agent:kim",
    )
    nothing = _cli(sqlite_url, "settlement", "cancel", "A-S5", "--reason", "again")
    assert "no settlement is running" in _refused(nothing)
