"""The lifecycle decisions and the money of plans, promises and settlements: each test
names a behaviour that was wrong for an operator or a borrower, and holds it."""

import calendar
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, update

from arrears.lifecycle import AccountView, Facts, PlanFact, advance
from arrears.policy import DEFAULT_POLICY
from arrears.restructuring import DEFAULT_PLAN_RULES, Loan, PlanError, deferral, instalment_plan, offers
from arrears.vocabulary import Stage
from tests.later_stage_helpers import account_t, at, import_rows, plan_t, rows, us_account

TODAY = date(2026, 12, 1)
NOON_SHANGHAI = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)


def _view(stage: str, dpd: int, began: date) -> AccountView:
    return AccountView(
        account_id="A-1",
        stage=stage,
        stage_since=datetime.combine(began, datetime.min.time(), UTC),
        episode=3,
        days_past_due=dpd,
        past_due_amount=Decimal("300"),
        balance=Decimal("9000"),
        jurisdiction="CN",
        timezone="Asia/Shanghai",
    )


def _hardship_facts(began: date, plan: PlanFact | None = None) -> Facts:
    return Facts(business_date=TODAY, stage_began=began, ability=0.3, willingness=0.8, plan=plan)


# -- restructuring with no offer recorded -------------------------------------------------------


def test_restructuring_without_any_plan_goes_to_review_once_past_review_dpd() -> None:
    """A loan no plan can be computed for (a file's instalment of 0) gets no offered plan row, so the
    account sat in restructuring from 60 days past due to charge-off, never reviewed: DESIGN §2
    sends 60+ days past due without a working plan to review once the offer has had its time."""
    began = TODAY - timedelta(days=40)
    decision = advance(
        _view(Stage.RESTRUCTURING, 100, began), _hardship_facts(began), DEFAULT_POLICY, NOON_SHANGHAI
    )
    assert [s.to_stage for s in decision.steps] == [Stage.REPOSSESSION_REVIEW]
    assert "without a working plan" in decision.steps[0].reason


def test_restructuring_without_a_plan_row_yet_waits_for_the_offer() -> None:
    """The day an account enters restructuring (its offer row comes with the next refresh), and
    before 60 days past due, the account with no plan row stays in restructuring."""
    fresh = advance(
        _view(Stage.RESTRUCTURING, 90, TODAY), _hardship_facts(TODAY), DEFAULT_POLICY, NOON_SHANGHAI
    )
    assert fresh.steps == ()
    young = TODAY - timedelta(days=40)
    early = advance(
        _view(Stage.RESTRUCTURING, 40, young), _hardship_facts(young), DEFAULT_POLICY, NOON_SHANGHAI
    )
    assert early.steps == ()


def test_a_hardship_borrower_entering_restructuring_late_is_offered_first() -> None:
    """A hardship found at 70 days past due (a reviewer's return) takes the account to
    restructuring, not straight past it to review, the day it enters."""
    began = TODAY - timedelta(days=3)
    decision = advance(
        _view(Stage.NEGOTIATION, 70, began),
        Facts(
            business_date=TODAY,
            stage_began=began,
            ability=0.3,
            willingness=0.8,
            returned_from_review=began,
        ),
        DEFAULT_POLICY,
        NOON_SHANGHAI,
    )
    assert [s.to_stage for s in decision.steps] == [Stage.RESTRUCTURING]


# -- the loan's due day across month ends ---------------------------------------------------------


def _on_day(year: int, month: int, day: int) -> date:
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


def test_a_loan_due_on_the_31st_whose_next_due_date_is_28_february_keeps_its_day() -> None:
    """A loan due on the 31st has its next due date on 28 February: the plan dates after it were
    the 28th of every month (28 March, 28 April), days before the loan's own due dates; the module
    promises they never drift to the 28th."""
    loan = Loan(
        "USD", Decimal("18000"), Decimal("400.00"), Decimal("400.00"), date(2027, 1, 31), date(2027, 2, 28)
    )
    plan = instalment_plan(loan, 3, business_date=date(2027, 2, 10), rules=DEFAULT_PLAN_RULES)
    assert [i.due for i in plan.schedule] == [date(2027, 2, 28), date(2027, 3, 31), date(2027, 4, 30)]
    later = deferral(loan, 2, business_date=date(2027, 2, 10), rules=DEFAULT_PLAN_RULES)
    assert later.schedule[0].due == date(2027, 3, 31)


@settings(max_examples=300, deadline=None)
@given(
    due_day=st.integers(1, 31),
    month=st.dates(date(2025, 1, 1), date(2030, 12, 1)),
    units=st.integers(1, 10**7),
    currency=st.sampled_from(["USD", "CNY", "JPY", "KWD"]),
)
def test_plan_dates_fall_on_the_loans_day_and_amounts_add_up(
    due_day: int, month: date, units: int, currency: str
) -> None:
    """For a loan due on any day, its oldest due date one month and its next the month after (each
    clamped to its month), every plan date is the loan's day of its month, and the schedule pays the
    instalments plus exactly what it spreads, to the minor unit."""
    from arrears.currencies import minor_units

    quantum = Decimal(1).scaleb(-minor_units(currency))
    installment = units * quantum
    oldest = _on_day(month.year, month.month, due_day)
    nxt_month = month.replace(day=1) + timedelta(days=32)
    nxt = _on_day(nxt_month.year, nxt_month.month, due_day)
    loan = Loan(currency, installment * 60, installment, installment, oldest, nxt)
    business = oldest + timedelta(days=10)
    for terms in offers(loan, business_date=business, rules=DEFAULT_PLAN_RULES):
        for item in terms.schedule:
            assert item.due == _on_day(item.due.year, item.due.month, due_day), (terms, item)
        if terms.kind == "instalment":
            assert terms.total == len(terms.schedule) * installment + terms.spread


# -- a borrower's reply takes an offer, not any plan --------------------------------------------


def _restructuring_account(engine: Engine, tmp_path: Path, account_id: str) -> None:
    """A hardship borrower two instalments (825.00) behind, in restructuring on 2 December."""
    import_rows(
        engine,
        tmp_path,
        [us_account(account_id, past_due_amount="825.00", oldest_due_date="2026-11-11")],
        now=at("2026-12-02T15:00:00Z"),
    )
    with engine.begin() as c:
        c.execute(update(account_t).where(account_t.c.account_id == account_id).values(stage="restructuring"))


def _accept(engine: Engine, account_id: str, source: str, kind: str | None, months: int | None) -> Any:
    from arrears.restructuring import plan_rules
    from arrears.storage.plans import accept_plan

    with engine.begin() as c:
        return accept_plan(
            c,
            account_id=account_id,
            kind=kind,
            months=months,
            at=at("2026-12-02T15:00:00Z"),
            business_date=date(2026, 12, 2),
            actor="borrower" if source == "reply" else "agent:lee",
            source=source,
            rules=plan_rules(DEFAULT_POLICY),
        )


@pytest.mark.parametrize(("kind", "months"), [(None, 12), ("instalment", 9), ("deferral", 3)])
def test_a_reply_cannot_take_a_plan_the_lender_does_not_offer(
    engine: Engine, tmp_path: Path, kind: str | None, months: int
) -> None:
    """The policy offers a deferral of 2 and instalment plans over 3 or 6 months; `ACCEPT 12` by
    text made an active twelve-month plan the lender never offered (`max_instalment_months` is the
    longest an agent may agree). A reply takes one of the offers; an agent may agree the rest."""
    _restructuring_account(engine, tmp_path, "A-AU1")
    with pytest.raises(PlanError, match="not one of the offers"):
        _accept(engine, "A-AU1", "reply", kind, months)
    assert rows(engine, plan_t, "A-AU1") == []
    _, terms = _accept(engine, "A-AU1", "agent", kind, months)
    assert (terms.kind, terms.months) == (kind or "instalment", months)


@pytest.mark.parametrize(("kind", "months"), [(None, None), (None, 3), ("instalment", 6), ("deferral", None)])
def test_a_reply_takes_each_offer_it_was_told_of(
    engine: Engine, tmp_path: Path, kind: str | None, months: int | None
) -> None:
    """The words the options text gives (`ACCEPT DEFERRAL`, `ACCEPT INSTALMENT 6`, `ACCEPT 3`) and a
    bare `ACCEPT` (the recommended offer) still take their plan."""
    _restructuring_account(engine, tmp_path, "A-AU2")
    _, terms = _accept(engine, "A-AU2", "reply", kind, months)
    assert terms.kind == (kind or ("deferral" if months is None else "instalment"))


# -- one agreement at a time: promises beside a settlement ----------------------------------------


def _negotiating(engine: Engine, tmp_path: Path, account_id: str) -> None:
    import_rows(engine, tmp_path, [us_account(account_id)], now=at("2026-12-01T15:00:00Z"))
    with engine.begin() as c:
        c.execute(update(account_t).where(account_t.c.account_id == account_id).values(stage="negotiation"))


def _promise(engine: Engine, account_id: str, due: date) -> int:
    from arrears.promises import DEFAULT_PROMISE_RULES
    from arrears.storage.promises import add_promise

    with engine.begin() as c:
        return add_promise(
            c,
            account_id=account_id,
            amount=Decimal("412.50"),
            due_date=due,
            source="reply",
            at=at("2026-12-01T15:00:00Z"),
            made_on=date(2026, 12, 1),
            actor="borrower",
            rules=DEFAULT_PROMISE_RULES,
        )


def _settle(engine: Engine, account_id: str) -> Any:
    from arrears.storage.settlements import record_settlement

    with engine.begin() as c:
        return record_settlement(
            c,
            account_id=account_id,
            amount=Decimal("9000.00"),
            pay_by=date(2027, 1, 15),
            at=at("2026-12-01T16:00:00Z"),
            business_date=date(2026, 12, 1),
            agent="lee",
            why="lump sum from family",
            max_days=90,
        )


def test_a_settlement_replaces_the_promise_pending_and_takes_no_new_one(
    engine: Engine, tmp_path: Path
) -> None:
    """A settlement to be paid by 15 January left the borrower's promise for 5 December pending: paying
    the settlement as agreed broke it (willingness down, a broken promise counted, a strategic
    defaulter sent to review when anything interrupts the settlement), and a PAY reply meanwhile
    recorded a second agreement beside it. As a plan does, the settlement replaces a promise not yet
    due, and no promise is taken while it runs."""
    from arrears.storage.promises import promises_of

    _negotiating(engine, tmp_path, "A-AU3")
    first = _promise(engine, "A-AU3", date(2026, 12, 5))
    settled = _settle(engine, "A-AU3")
    with engine.connect() as c:
        assert [(p.id, p.status) for p in promises_of(c, "A-AU3")] == [(first, "replaced")]
    with pytest.raises(ValueError, match=f"settlement {settled.id} is agreed"):
        _promise(engine, "A-AU3", date(2026, 12, 10))
