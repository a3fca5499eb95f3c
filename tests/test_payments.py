"""Applying a payment to what is owed: oldest instalment first, exact Decimal arithmetic."""

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arrears.payments import Owed, apply_payment, due_day

OWED = Owed(
    balance=Decimal("9000.00"),
    past_due_amount=Decimal("900.00"),
    installment_amount=Decimal("300.00"),
    oldest_due_date=date(2026, 9, 30),
)


def test_payment_clearing_the_past_due_clears_the_oldest_due_date() -> None:
    """Paying the whole past due leaves nothing past due and no oldest due date."""
    after = apply_payment(OWED, Decimal("900.00"))
    assert (after.past_due_amount, after.oldest_due_date, after.balance) == (
        Decimal(0),
        None,
        Decimal("8100.00"),
    )


def test_partial_payment_moves_the_oldest_due_date_by_whole_instalments() -> None:
    """450 against three 300 instalments clears the oldest one: the oldest due date moves a month (month end
    kept)."""
    after = apply_payment(OWED, Decimal("450.00"))
    assert after.past_due_amount == Decimal("450.00")
    assert after.oldest_due_date == date(2026, 10, 30)


def test_payment_smaller_than_an_instalment_keeps_the_oldest_due_date() -> None:
    """A payment that leaves the oldest instalment partly unpaid does not move its due date."""
    assert apply_payment(OWED, Decimal("299.99")).oldest_due_date == date(2026, 9, 30)


def test_overpayment_never_goes_negative() -> None:
    """Paying more than the balance leaves zero, not a negative balance."""
    after = apply_payment(OWED, Decimal("10000.00"))
    assert (after.balance, after.past_due_amount) == (Decimal(0), Decimal(0))


@given(st.lists(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("2000"), places=2), max_size=6))
def test_payments_in_pieces_reduce_exactly(amounts: list[Decimal]) -> None:
    """Any sequence of payments reduces the balance by exactly their sum (floored at zero)."""
    owed = OWED
    for amount in amounts:
        owed = apply_payment(owed, amount)
    assert owed.balance == max(Decimal(0), OWED.balance - sum(amounts, Decimal(0)))
    assert owed.past_due_amount == max(Decimal(0), OWED.past_due_amount - sum(amounts, Decimal(0)))


def test_a_due_date_moved_past_february_comes_back_to_the_loans_day() -> None:
    """Due on the 31st, three instalments behind: one payment of 800 and two of 400 leave the same
    oldest due date, 31 March, once the loan's day is known (its next due date's): the 400s moved
    it to 28 February and then to 28 March, three more days past due until the next file."""
    owed = Owed(Decimal("12000"), Decimal("1200"), Decimal("400"), date(2027, 1, 31), due_day=31)
    once = apply_payment(owed, Decimal("800"))
    twice = apply_payment(apply_payment(owed, Decimal("400")), Decimal("400"))
    assert once.oldest_due_date == twice.oldest_due_date == date(2027, 3, 31)
    assert apply_payment(owed, Decimal("400")).oldest_due_date == date(2027, 2, 28)
    # Without the loan's day, as before: the 28th stays.
    unknown = Owed(Decimal("12000"), Decimal("1200"), Decimal("400"), date(2027, 1, 31))
    assert apply_payment(apply_payment(unknown, Decimal("400")), Decimal("400")).oldest_due_date == date(
        2027, 3, 28
    )


@pytest.mark.parametrize(
    ("next_due", "oldest", "day"),
    [
        (date(2027, 2, 28), date(2027, 1, 31), 31),  # the file's next due date clamped by February
        (date(2027, 2, 28), date(2027, 1, 28), 28),  # a loan due on the 28th
        (date(2027, 4, 30), date(2027, 3, 30), 30),
        (date(2027, 2, 15), date(2027, 1, 31), 15),  # not at a month's end: the next due date's day
        (None, date(2027, 1, 31), 31),
        (None, None, None),
    ],
)
def test_the_loans_day_is_not_taken_from_a_month_end_that_clamped_it(
    next_due: date | None, oldest: date | None, day: int | None
) -> None:
    """A loan due on the 31st whose file gives a next due date of 28 February is due on the 31st:
    the payments the refresh applies moved its oldest due date to 28 March (three more days past
    due), as plan dates did."""
    assert due_day(next_due, oldest) == day


def test_payments_the_refresh_applies_bring_a_due_date_back_to_the_31st(engine: Any, tmp_path: Path) -> None:
    """Due on the 31st, the file's next due date 28 February: two payments of an instalment each,
    applied one after the other, leave the oldest due date on 31 March, not 28 March."""
    from sqlalchemy import select

    from arrears.clock import parse_instant
    from arrears.importing import Kind
    from arrears.storage.cycle import apply_new_payments
    from arrears.storage.tables import account
    from tests.factories import account_record, payment_record
    from tests.later_stage_helpers import import_rows

    day = parse_instant("2026-02-23T00:00:00Z")
    loan = {"installment_amount": "400.00", "past_due_amount": "1200.00", "balance": "12000.00"}
    dates = {"oldest_due_date": "2026-01-31", "next_due_date": "2026-02-28"}
    import_rows(engine, tmp_path, [account_record(account_id="A-31", **loan, **dates)], now=day)
    paid = [
        payment_record(
            account_id="A-31", payment_id=f"P-{n}", amount="400.00", received_at=f"2026-02-2{n}T10:00:00Z"
        )
        for n in (1, 2)
    ]
    import_rows(engine, tmp_path, paid, Kind.PAYMENTS, now=day)
    with engine.begin() as c:
        assert apply_new_payments(c, as_of=day, cycle_id=None) == 2
        oldest = c.execute(select(account.c.oldest_due_date).where(account.c.account_id == "A-31")).scalar()
    assert oldest == date(2026, 3, 31)


def test_payment_event_states_amounts_at_the_currency_precision(engine: Any, tmp_path: Path) -> None:
    """The audit trail (`arrears show`) said `payment P-1 of 35000.0000 applied` for a JPY payment:
    storage's four places. It names the currency and its own precision, as every other amount."""
    from sqlalchemy import select

    from arrears.clock import parse_instant
    from arrears.importing import Kind
    from arrears.storage.cycle import apply_new_payments
    from tests.factories import account_record, payment_record
    from tests.later_stage_helpers import audit_t, import_rows

    import_rows(
        engine,
        tmp_path,
        [
            account_record(
                account_id="A-JPY",
                currency="JPY",
                balance="1000000",
                installment_amount="30000",
                past_due_amount="60000",
            )
        ],
    )
    import_rows(
        engine,
        tmp_path,
        [payment_record(account_id="A-JPY", payment_id="P-JPY", amount="35000")],
        Kind.PAYMENTS,
        now=parse_instant("2026-11-21T00:00:00Z"),
    )
    with engine.begin() as c:
        assert apply_new_payments(c, as_of=parse_instant("2026-11-21T00:00:00Z"), cycle_id=None) == 1
        found = c.execute(select(audit_t).where(audit_t.c.kind == "payment")).one()
    assert found.detail == "payment P-JPY of JPY 35000 applied"
    assert (found.data["amount"], found.data["past_due_after"]) == ("35000", "25000")
