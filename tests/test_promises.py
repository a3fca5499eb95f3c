"""Promises to pay: read from replies and agents, judged against payments with a grace period,
counted for the lifecycle, and moving willingness."""

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from arrears.policy import DEFAULT_POLICY
from arrears.promises import (
    PaymentView,
    PromiseRules,
    PromiseView,
    Unreadable,
    parse_promise,
    promise_rules,
    read_promise,
    refusal,
    resolve_promises,
)
from tests.later_stage_helpers import (
    account,
    day,
    events,
    import_rows,
    pay,
    promise_t,
    refresh_later,
    reply,
    rows,
    us_account,
)

RULES = PromiseRules(grace_days=3, max_days_ahead=30)


# -- reading a reply -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "amount", "when"),
    [
        ("PAY 500 2026-12-05", "500", date(2026, 12, 5)),
        ("pay 412.50 2026-12-05", "412.50", date(2026, 12, 5)),
        ("Pay $1,250.00 on 2026/12/05.", "1250.00", date(2026, 12, 5)),
        ("还款 500 2026-12-05", "500", date(2026, 12, 5)),
        ("还款５００元 2026年12月5日", "500", date(2026, 12, 5)),
        ("  PAY  3000  2027.01.02 ", "3000", date(2027, 1, 2)),
        ("P\u200bAY 500 2026-12-05", "500", date(2026, 12, 5)),  # a zero-width space, unseen
        ("PAY 500 2026-12-05 👍", "500", date(2026, 12, 5)),  # read as every reply is (inbound.normalise)
    ],
)
def test_reply_promise_forms_are_read(text: str, amount: str, when: date) -> None:
    """The English and zh-CN promise forms, with full-width digits, signs and separators, give amount and
    date."""
    assert parse_promise(text) == (Decimal(amount), when)


@pytest.mark.parametrize(
    "text",
    [
        "PAY 500",
        "PAY 500 12/05",
        "PAY 2026-12-05",
        "PAY 500 2026-02-30",
        "I will pay 500 on 2026-12-05",
        "还款",
        "STOP",
    ],
)
def test_other_replies_are_not_promises(text: str) -> None:
    """A reply without both an amount and a full date (or with an impossible date) is not a promise."""
    assert parse_promise(text) is None


def test_refusals_name_their_reason() -> None:
    """A past date, a date beyond the horizon and sub-cent amounts are refused with a reason."""
    today = date(2026, 12, 1)
    assert (
        refusal(Decimal("10"), date(2026, 11, 30), today=today, currency="USD", rules=RULES)
        == "the date 2026-11-30 has passed"
    )
    assert "30 days" in (
        refusal(Decimal("10"), date(2027, 1, 5), today=today, currency="USD", rules=RULES) or ""
    )
    assert "decimals" in (
        refusal(Decimal("10.005"), date(2026, 12, 5), today=today, currency="USD", rules=RULES) or ""
    )
    assert refusal(Decimal("10"), date(2026, 12, 31), today=today, currency="USD", rules=RULES) is None


# -- kept or broken --------------------------------------------------------------------------------


def _p(id_: int, amount: str, due: date, made: date = date(2026, 12, 1)) -> PromiseView:
    return PromiseView(id_, Decimal(amount), due, made)


def _pay(pid: str, amount: str, on: date) -> PaymentView:
    return PaymentView(pid, Decimal(amount), on)


def test_partial_payments_add_up_to_a_kept_promise() -> None:
    """Two partial payments inside the window keep a promise as soon as they reach its amount."""
    out = resolve_promises(
        [_p(1, "500", date(2026, 12, 5))],
        [_pay("P1", "200", date(2026, 12, 2)), _pay("P2", "300", date(2026, 12, 4))],
        business_date=date(2026, 12, 4),
        rules=RULES,
    )
    assert [(o.status, o.paid, o.payments) for o in out] == [("kept", Decimal("500"), ("P1", "P2"))]


def test_grace_period_keeps_a_late_payment_and_then_breaks() -> None:
    """A payment within the grace days keeps the promise; none by then breaks it with what was paid."""
    promise = [_p(1, "500", date(2026, 12, 5))]
    late = [_pay("P1", "500", date(2026, 12, 8))]
    assert resolve_promises(promise, late, business_date=date(2026, 12, 8), rules=RULES)[0].status == "kept"
    partial = [_pay("P1", "100", date(2026, 12, 6))]
    assert resolve_promises(promise, partial, business_date=date(2026, 12, 8), rules=RULES) == []
    broken = resolve_promises(promise, partial, business_date=date(2026, 12, 9), rules=RULES)
    assert [(o.status, o.paid) for o in broken] == [("broken", Decimal("100"))]
    assert broken[0].reason == "paid 100 of 500 by 2026-12-08"


def test_the_default_policy_keeps_a_promise_three_days_late_and_looks_30_days_ahead() -> None:
    """The cycle judges promises by `promise_rules(policy)`: with the default policy a payment
    three days after the promised date keeps it, four days after does not; a promise 30 days out
    is taken and 31 is refused."""
    rules = promise_rules(DEFAULT_POLICY)
    promise = [_p(1, "500", date(2026, 12, 5))]
    on_day_3 = [_pay("P1", "500", date(2026, 12, 8))]
    assert (
        resolve_promises(promise, on_day_3, business_date=date(2026, 12, 8), rules=rules)[0].status == "kept"
    )
    on_day_4 = [_pay("P1", "500", date(2026, 12, 9))]
    out = resolve_promises(promise, on_day_4, business_date=date(2026, 12, 9), rules=rules)
    assert [o.status for o in out] == ["broken"]
    today = date(2026, 12, 1)
    assert refusal(Decimal(500), date(2026, 12, 31), today=today, currency="CNY", rules=rules) is None
    assert refusal(Decimal(500), date(2027, 1, 1), today=today, currency="CNY", rules=rules) == (
        "the date is more than 30 days ahead"
    )


def test_payment_before_the_promise_or_after_grace_does_not_count() -> None:
    """Money paid before the promise was made, or after its grace, does not keep it."""
    promise = [_p(1, "500", date(2026, 12, 5), made=date(2026, 12, 3))]
    payments = [_pay("P0", "500", date(2026, 12, 2)), _pay("P9", "500", date(2026, 12, 9))]
    assert [
        o.status for o in resolve_promises(promise, payments, business_date=date(2026, 12, 9), rules=RULES)
    ] == ["broken"]


def test_one_payment_is_not_counted_for_two_promises() -> None:
    """Payments are shared out in due-date order: 600 keeps the first 500 and leaves 100 for the next."""
    promises = [_p(1, "500", date(2026, 12, 5)), _p(2, "500", date(2026, 12, 20))]
    out = resolve_promises(
        promises, [_pay("P1", "600", date(2026, 12, 4))], business_date=date(2026, 12, 24), rules=RULES
    )
    assert [(o.promise_id, o.status, o.paid) for o in out] == [
        (1, "kept", Decimal("500")),
        (2, "broken", Decimal("100")),
    ]


# -- in the database, under the cycle ---------------------------------------------------------------


@pytest.fixture
def later_db(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, sms_sandbox: Any) -> Engine:
    from arrears.settings import get_settings

    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    return engine


def test_reply_records_a_promise_once_and_nudges_willingness(later_db: Engine, tmp_path: Path) -> None:
    """A PAY reply becomes one pending promise and one willingness nudge, however often the refresh runs."""
    import_rows(later_db, tmp_path, [us_account("A-P1")])
    reply(later_db, "A-P1", "PAY 412.50 2026-12-05", "2026-12-02T17:00:00Z")
    assert refresh_later(later_db, "2026-12-03T16:00:00Z")["promises_from_replies"] == 1
    assert refresh_later(later_db, "2026-12-03T16:00:00Z")["replies_read"] == 0
    promises = rows(later_db, promise_t, "A-P1")
    assert [(p.status, p.source, p.amount, p.due_date) for p in promises] == [
        ("pending", "reply", Decimal("412.50"), date(2026, 12, 5))
    ]
    assert [e.data["behaviour"] for e in events(later_db, "A-P1", "willingness")] == ["promise_made"]
    assert account(later_db, "A-P1").willingness == pytest.approx(0.55)


def test_refused_reply_is_noted_with_its_reason(later_db: Engine, tmp_path: Path) -> None:
    """A promise for a date already past is not recorded; the timeline says why."""
    import_rows(later_db, tmp_path, [us_account("A-P2")])
    reply(later_db, "A-P2", "PAY 412.50 2026-11-01", "2026-12-02T17:00:00Z")
    refresh_later(later_db, "2026-12-03T16:00:00Z")
    assert rows(later_db, promise_t, "A-P2") == []
    notes = [e.detail for e in events(later_db, "A-P2", "promise")]
    assert notes == ["reply read as a promise, not recorded: the date 2026-11-01 has passed"]


def test_a_borrower_promising_their_own_today_is_not_refused_as_past(
    later_db: Engine, tmp_path: Path
) -> None:
    """At 21:00 on 2 December in Chicago it is already the 3rd in Shanghai, the lender's zone: "PAY
    412.50 2026-12-02" is the borrower's today, recorded, not refused as a date that has passed."""
    import_rows(later_db, tmp_path, [us_account("A-P9")])
    reply(later_db, "A-P9", "PAY 412.50 2026-12-02", "2026-12-03T03:00:00Z")
    assert refresh_later(later_db, "2026-12-03T04:00:00Z")["promises_from_replies"] == 1
    assert [(p.status, p.due_date) for p in rows(later_db, promise_t, "A-P9")] == [
        ("pending", date(2026, 12, 2))
    ]


def test_new_promise_replaces_a_pending_one_not_yet_due(later_db: Engine, tmp_path: Path) -> None:
    """A borrower who moves the date has one promise: the earlier one is marked replaced."""
    import_rows(later_db, tmp_path, [us_account("A-P3")])
    reply(later_db, "A-P3", "PAY 412.50 2026-12-05", "2026-12-02T17:00:00Z")
    reply(later_db, "A-P3", "PAY 412.50 2026-12-12", "2026-12-03T17:00:00Z")
    refresh_later(later_db, "2026-12-04T16:00:00Z")
    assert [(p.status, p.due_date) for p in rows(later_db, promise_t, "A-P3")] == [
        ("replaced", date(2026, 12, 5)),
        ("pending", date(2026, 12, 12)),
    ]


def test_money_that_kept_one_promise_does_not_keep_the_next(later_db: Engine, tmp_path: Path) -> None:
    """400 paid late on the 3rd keeps the promise of 400 by the 5th; a second promise of 400, made
    that evening, is judged later on its own and broken when nothing more comes: the same 400 kept
    the first one (it had kept both: no broken promise for a strategic defaulter's count)."""
    import_rows(
        later_db, tmp_path, [us_account("A-P8", past_due_amount="825.00", oldest_due_date="2026-10-31")]
    )
    reply(later_db, "A-P8", "PAY 400 2026-12-05", "2026-12-01T17:00:00Z")
    refresh_later(later_db, "2026-12-02T16:00:00Z")
    pay(later_db, tmp_path, "A-P8", "400.00", "2026-12-03T13:00:00Z")
    assert refresh_later(later_db, "2026-12-03T13:30:00Z")["promises_kept"] == 1
    reply(later_db, "A-P8", "PAY 400 2026-12-10", "2026-12-03T14:30:00Z")  # 22:30 in Shanghai, the 3rd
    assert refresh_later(later_db, "2026-12-03T15:00:00Z")["promises_kept"] == 0
    assert refresh_later(later_db, "2026-12-14T16:00:00Z")["promises_broken"] == 1
    promises = rows(later_db, promise_t, "A-P8")
    assert [(p.status, p.due_date) for p in promises] == [
        ("kept", date(2026, 12, 5)),
        ("broken", date(2026, 12, 10)),
    ]
    judged = [
        e.data for e in events(later_db, "A-P8", "promise") if e.data.get("status") in ("kept", "broken")
    ]
    assert [(d["status"], d["paid"], d["taken"]) for d in judged] == [
        ("kept", "400.00", {judged[0]["payments"][0]: "400.00"}),
        ("broken", "0", {}),
    ]
    assert [e.data["behaviour"] for e in events(later_db, "A-P8", "willingness")][-1] == "promise_broken"


@pytest.mark.usefixtures("prefect_harness")
def test_broken_promise_counts_and_moves_the_account_to_negotiation(later_db: Engine, tmp_path: Path) -> None:
    """A promise unpaid after its grace is broken: counted on the account, willingness lowered,
    and the lifecycle moves a reminder-stage account to negotiation early."""
    import_rows(later_db, tmp_path, [us_account("A-P4")])
    day(later_db, "2026-12-01T16:00:00Z")
    reply(later_db, "A-P4", "PAY 412.50 2026-12-05", "2026-12-02T17:00:00Z")
    day(later_db, "2026-12-03T16:00:00Z")
    assert account(later_db, "A-P4").stage == "reminder"
    result = day(later_db, "2026-12-09T16:00:00Z")
    assert result["later"]["promises_broken"] == 1
    a = account(later_db, "A-P4")
    assert (a.stage, a.broken_promises) == ("negotiation", 1)
    assert a.willingness == pytest.approx(0.30)
    assert [p.status for p in rows(later_db, promise_t, "A-P4")] == ["broken"]
    transitions = [e.detail for e in events(later_db, "A-P4", "transition")]
    assert transitions[-1] == "reminder → negotiation: promise to pay broken"


@pytest.mark.usefixtures("prefect_harness")
def test_kept_promise_cures_and_the_broken_count_resets(later_db: Engine, tmp_path: Path) -> None:
    """Paying what was promised keeps the promise and cures; the broken count of the delinquency goes back to
    zero."""
    import_rows(later_db, tmp_path, [us_account("A-P5")])
    day(later_db, "2026-12-01T16:00:00Z")
    reply(later_db, "A-P5", "PAY 412.50 2026-12-03", "2026-12-01T18:00:00Z")
    day(later_db, "2026-12-02T16:00:00Z")
    day(later_db, "2026-12-08T16:00:00Z")  # broken
    assert account(later_db, "A-P5").broken_promises == 1
    reply(later_db, "A-P5", "PAY 412.50 2026-12-10", "2026-12-08T18:00:00Z")
    pay(later_db, tmp_path, "A-P5", "412.50", "2026-12-09T15:00:00Z")
    result = day(later_db, "2026-12-09T16:00:00Z")
    assert result["later"]["promises_kept"] == 1
    assert account(later_db, "A-P5").stage == "cured"
    day(later_db, "2026-12-10T16:00:00Z")
    assert account(later_db, "A-P5").broken_promises == 0
    statuses = [p.status for p in rows(later_db, promise_t, "A-P5")]
    assert statuses == ["broken", "kept"]
    assert [e.data["behaviour"] for e in events(later_db, "A-P5", "willingness")] == [
        "promise_made",
        "promise_broken",
        "promise_made",
        "promise_kept",
        "payment_after_contact",
    ]


@pytest.mark.usefixtures("prefect_harness")
def test_payment_after_contact_nudges_once(later_db: Engine, tmp_path: Path) -> None:
    """A payment after a message reached the borrower raises willingness once, not on every re-run."""
    import_rows(
        later_db, tmp_path, [us_account("A-P6", past_due_amount="825.00", oldest_due_date="2026-10-31")]
    )
    day(later_db, "2026-12-01T16:00:00Z")
    pay(later_db, tmp_path, "A-P6", "100.00", "2026-12-02T15:00:00Z")
    day(later_db, "2026-12-02T16:00:00Z")
    day(later_db, "2026-12-02T16:00:00Z")
    nudges = events(later_db, "A-P6", "willingness")
    assert [(e.data["behaviour"], e.data["payment_id"] is not None) for e in nudges] == [
        ("payment_after_contact", True)
    ]


def test_agent_promise_by_cli(later_db: Engine, db_url: str, tmp_path: Path) -> None:
    """`arrears promise add` records a pending promise for the agent; a past date exits 2 with the reason."""
    from typer.testing import CliRunner

    from deployments.cli import app
    from deployments.cli._common import CliError

    import_rows(later_db, tmp_path, [us_account("A-P7")])
    runner = CliRunner()
    ok = runner.invoke(
        app,
        [
            "promise",
            "add",
            "A-P7",
            "--amount",
            "300",
            "--date",
            "2026-12-10",
            "--agent",
            "kim",
            "--as-of",
            "2026-12-02T16:00:00Z",
            "--database",
            db_url,
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert [(p.source, p.amount) for p in rows(later_db, promise_t, "A-P7")] == [("agent", Decimal("300"))]
    assert events(later_db, "A-P7", "promise")[0].actor == "agent:kim"
    bad = runner.invoke(
        app,
        [
            "promise",
            "add",
            "A-P7",
            "--amount",
            "300",
            "--date",
            "2026-11-10",
            "--agent",
            "kim",
            "--as-of",
            "2026-12-02T16:00:00Z",
            "--database",
            db_url,
        ],
    )
    assert isinstance(bad.exception, CliError) and bad.exception.exit_code == 2
    assert "has passed" in str(bad.exception)


def test_agent_promise_by_cli_for_today_in_the_lenders_evening(
    later_db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 20:00 on 6 December in New York (7 December in UTC) a promise for the lender's today, the
    6th, is taken: "today" is the lender's business date, not the UTC date."""
    from typer.testing import CliRunner

    from arrears.settings import get_settings
    from deployments.cli import app

    monkeypatch.setenv("ARREARS_LENDER_TIMEZONE", "America/New_York")
    get_settings.cache_clear()
    import_rows(later_db, tmp_path, [us_account("A-P8")])
    result = CliRunner().invoke(
        app,
        [
            "promise",
            "add",
            "A-P8",
            "--amount",
            "300",
            "--date",
            "2026-12-06",
            "--as-of",
            "2026-12-06T20:00:00-05:00",
            "--database",
            db_url,
        ],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert [p.due_date for p in rows(later_db, promise_t, "A-P8")] == [date(2026, 12, 6)]


# -- numbers a borrower chooses are bounded --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("PAY 99999999999999999999 2026-12-10", "more than 14 digits"),
        ("PAY -500 2026-12-10", "not above zero"),
        ("PAY NaN 2026-12-10", "'NAN' is not an amount"),
        ("pay 1e30 2026-12-10", "'1E30' is not an amount"),
        ("PAY 500.123456 2026-12-10", "4 decimal places"),
    ],
)
def test_promise_shaped_reply_with_an_impossible_amount_is_unreadable(text: str, reason: str) -> None:
    """A reply shaped like a promise whose amount is huge, negative, NaN or exponential is refused with
    its reason instead of becoming a number."""
    read = read_promise(text)
    assert isinstance(read, Unreadable) and reason in read.reason
    assert parse_promise(text) is None


def test_refusal_bounds_amount_by_balance_and_date_by_a_year_whatever_the_policy() -> None:
    """A promise above the balance is refused, and a date 50 years out is refused even under a policy
    that allows any horizon."""
    today = date(2026, 12, 1)
    generous = PromiseRules(grace_days=3, max_days_ahead=100_000)
    over = refusal(
        Decimal("50000"),
        date(2026, 12, 5),
        today=today,
        currency="USD",
        rules=RULES,
        balance=Decimal("18450.00"),
    )
    assert over == "the amount 50000 is more than the balance of USD 18450.00"
    far = refusal(Decimal("10"), date(2076, 12, 1), today=today, currency="USD", rules=generous)
    assert far == "the date is more than 366 days ahead"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("PAY 99999999999999999999 2026-12-10", "the amount has more than 14 digits"),
        ("PAY 50000 2026-12-10", "the amount 50000 is more than the balance of USD 18450.00"),
        ("PAY -500 2026-12-10", "the amount -500 is not above zero"),
        ("PAY NaN 2026-12-10", "'NAN' is not an amount"),
        # Recorded as USD 500 before, and kept by USD 500 whatever yuan or yen were promised.
        ("PAY ¥500 2026-12-10", "the amount is in CNY/JPY, the account's currency is USD"),
        # A promise begun without a date an agent can hold the borrower to: said, not dropped.
        ("PAY 200 12/15", "'12/15' is not a date with its year"),
        ("pay $200 on Friday", "'ON FRIDAY' is not a date with its year"),
        ("还款 500 12月15日", "'12月15日' is not a date with its year"),
        ("PAY 200", "no date"),
    ],
)
def test_overflowing_reply_is_refused_on_the_timeline_not_raised(
    later_db: Engine, tmp_path: Path, text: str, reason: str
) -> None:
    """A reply promising an impossible amount is read once, records no promise and notes the refusal on
    the timeline; the refresh does not raise and nothing is quarantined."""
    import_rows(later_db, tmp_path, [us_account("A-P8")])
    reply(later_db, "A-P8", text, "2026-12-02T17:00:00Z")
    counts = refresh_later(later_db, "2026-12-03T16:00:00Z")
    assert (counts["replies_read"], counts["replies_quarantined"]) == (1, 0)
    assert rows(later_db, promise_t, "A-P8") == []
    (note,) = [e.detail for e in events(later_db, "A-P8", "promise")]
    assert note.startswith("reply read as a promise, not recorded: ") and reason in note
    assert "18450.0000" not in note  # the balance as USD writes it, not storage's four places
    assert refresh_later(later_db, "2026-12-04T16:00:00Z")["replies_read"] == 0


def test_promise_add_above_the_balance_states_it_as_the_currency_writes_it(
    later_db: Engine, tmp_path: Path, db_url: str
) -> None:
    """`arrears promise add` above the balance said `exceeds the balance of U-1 (18350.0000)`:
    storage's four places. It names the balance as USD writes it."""
    from typer.testing import CliRunner

    from deployments.cli import app

    import_rows(later_db, tmp_path, [us_account("A-P9")])
    result = CliRunner().invoke(
        app,
        [
            *("promise", "add", "A-P9", "--amount", "99999", "--date", "2026-12-10"),
            *("--as-of", "2026-12-02T17:00:00Z", "--database", db_url),
        ],
    )
    assert str(result.exception) == "--amount: 99999 exceeds the balance of A-P9 (USD 18450.00)"


@pytest.mark.parametrize(
    ("text", "currency", "reason"),
    [
        ("PAY $500 2026-12-10", "CNY", "the amount is in USD, the account's currency is CNY"),
        ("还款 500 USD 2026-12-10", "CNY", "the amount is in USD, the account's currency is CNY"),
        ("PAY 500 EUR 2026-12-10", "KWD", "the amount is in EUR, the account's currency is KWD"),
        ("还款 500元 2026-12-10", "CNY", None),
        ("PAY ￥500 2026-12-10", "JPY", None),
        ("PAY $500 2026-12-10", "CAD", None),  # a dollar sign may be the account's own dollars
        ("PAY 500 2026-12-10", "USD", None),
    ],
)
def test_a_promise_in_another_currency_than_the_accounts_is_refused(
    text: str, currency: str, reason: str | None
) -> None:
    """A reply promising in a currency its sign or unit names, other than the account's, would be
    recorded in the account's currency: `PAY $500` to a CNY loan became ¥500."""
    from arrears.promises import currency_refusal

    assert currency_refusal(text, currency) == reason


# -- a hardship told by reply ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("I lost my job last week, sorry", "LOST MY JOB"),
        ("got laid off in November", "LAID OFF"),
        ("Can't afford it right now", "CAN'T AFFORD"),
        ("my hours got cut", "HOURS GOT CUT"),
        ("我失业了，下个月再说", "失业"),
        ("住院了", "住院"),
        ("I can't pay until Friday", None),
        ("PAY 412.50 2026-12-05", None),
        ("I'll pay when I get my job done", None),
    ],
)
def test_a_reply_telling_of_a_hardship_is_read_as_one(text: str, words: str | None) -> None:
    """Word that the borrower cannot pay (work lost, illness) is a hardship; a date ("can't pay
    until Friday") or a promise is not."""
    from arrears.inbound import hardship_statement

    assert hardship_statement(text) == words


@pytest.mark.usefixtures("prefect_harness")
def test_a_strategic_defaulter_who_tells_of_a_hardship_is_not_sent_to_review_early(
    later_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two broken promises send an able, unwilling borrower to repossession review at once; one who
    replies that they lost their job is unable from then on (audited with their words): distressed,
    they stay in negotiation until its own 60 days, and a willing borrower who says so is offered
    a plan (hardship: restructuring) the same cycle."""
    from sqlalchemy import update

    from arrears.settings import get_settings
    from tests.later_stage_helpers import account_t, at

    monkeypatch.setenv("ARREARS_BUREAU_PULLS_PER_CYCLE", "0")
    get_settings.cache_clear()
    ids = ("A-H1", "A-H2", "A-H3")
    import_rows(later_db, tmp_path, [us_account(a, oldest_due_date="2026-11-10") for a in ids])
    scores = {"A-H1": (0.9, 0.3, 2), "A-H2": (0.9, 0.3, 2), "A-H3": (0.9, 0.6, 0)}
    with later_db.begin() as c:
        for account_id, (ability, willingness, broken) in scores.items():
            c.execute(
                update(account_t)
                .where(account_t.c.account_id == account_id)
                .values(
                    stage="negotiation",
                    stage_since=at("2026-11-27T16:00:00Z"),
                    episode=2,
                    ability=ability,
                    willingness=willingness,
                    broken_promises=broken,
                )
            )
    reply(later_db, "A-H1", "I lost my job last week, I want to pay but can't", "2026-12-01T15:00:00Z")
    reply(later_db, "A-H3", "我失业了", "2026-12-01T15:00:00Z")
    result = day(later_db, "2026-12-01T16:00:00Z")
    assert result["later"].get("hardships_from_replies") == 2
    assert [(account(later_db, a).stage, account(later_db, a).segment) for a in ids] == [
        ("negotiation", "distressed"),
        ("repossession_review", "strategic"),
        ("restructuring", "hardship"),
    ]
    [stated] = events(later_db, "A-H1", "hardship")
    assert stated.actor == "borrower" and stated.detail == (
        "hardship stated by the borrower ('LOST MY JOB'): ability 0.90 → 0.40"
    )
    assert account(later_db, "A-H1").ability == pytest.approx(0.4)


def test_a_hardship_told_with_a_promise_is_recorded_beside_it(later_db: Engine, tmp_path: Path) -> None:
    """A reply read as a promise does not hide a hardship told with it: "PAY 100 2026-12-05 - I
    lost my job" is noted for an agent as a promise it could not record (words after the date),
    and the borrower is unable from then on all the same."""
    from sqlalchemy import update

    from tests.later_stage_helpers import account_t, set_scores

    import_rows(later_db, tmp_path, [us_account("A-H4")])
    set_scores(later_db, "A-H4", ability=0.9)
    with later_db.begin() as c:  # in collection, as a first cycle leaves it
        c.execute(
            update(account_t).where(account_t.c.account_id == "A-H4").values(stage="reminder", episode=1)
        )
    reply(later_db, "A-H4", "PAY 100.00 2026-12-05 - I lost my job", "2026-12-02T17:00:00Z")
    counts = refresh_later(later_db, "2026-12-03T16:00:00Z")
    assert counts["hardships_from_replies"] == 1
    assert account(later_db, "A-H4").ability == pytest.approx(0.4)
    [noted] = events(later_db, "A-H4", "promise")
    assert noted.detail.startswith("reply read as a promise, not recorded: '2026-12-05 - I LOST MY J'")
