"""Restructuring: offers computed from the loan with exact amounts and month-end-safe dates, plans
accepted by reply or agent, monitored against payments to completion, default or re-ageing."""

import json
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pendulum
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, update

from arrears.policy import DEFAULT_POLICY
from arrears.restructuring import (
    DEFAULT_PLAN_RULES,
    Instalment,
    Loan,
    PlanError,
    PlanReply,
    PlanRules,
    PlanTerms,
    choose,
    deferral,
    due_dates,
    instalment_plan,
    monitor,
    offers,
    parse_plan_reply,
    plan_rules,
    reage_due,
    split_exact,
)
from tests.later_stage_helpers import (
    account,
    account_t,
    at,
    day,
    events,
    import_rows,
    pay,
    plan_t,
    refresh_later,
    reply,
    rows,
    set_scores,
    us_account,
)

RULES = DEFAULT_PLAN_RULES
TODAY = date(2026, 12, 2)


def loan(
    past_due: str = "825.00",
    installment: str = "412.50",
    oldest: date | None = date(2026, 11, 11),
    currency: str = "USD",
) -> Loan:
    return Loan(currency, Decimal("18450.00"), Decimal(installment), Decimal(past_due), oldest)


# -- exact amounts and dates ---------------------------------------------------------------------


@given(
    units=st.integers(min_value=1, max_value=10**9),
    parts=st.integers(min_value=1, max_value=24),
    currency=st.sampled_from(["USD", "JPY", "KWD", "CNY"]),
)
def test_split_is_exact_to_the_minor_unit(units: int, parts: int, currency: str) -> None:
    """Shares add up to the total exactly, at the currency's precision, differing by at most one minor
    unit."""
    from arrears.currencies import minor_units

    quantum = Decimal(1).scaleb(-minor_units(currency))
    total = units * quantum
    shares = split_exact(total, parts, currency)
    assert sum(shares) == total and len(shares) == parts
    assert all(s == s.quantize(quantum) for s in shares)
    assert max(shares) - min(shares) <= quantum
    assert shares == sorted(shares, reverse=True)  # the odd units go first


def test_split_refuses_an_amount_finer_than_the_currency() -> None:
    """An amount with more decimals than its currency has is refused rather than rounded."""
    with pytest.raises(PlanError):
        split_exact(Decimal("100.005"), 3, "USD")


def test_due_dates_keep_the_loan_day_across_month_ends() -> None:
    """A loan due on the 31st falls due on the last day of short months and the 31st again after."""
    assert due_dates(31, on_or_after=date(2026, 1, 15), count=4) == [
        date(2026, 1, 31),
        date(2026, 2, 28),
        date(2026, 3, 31),
        date(2026, 4, 30),
    ]
    assert due_dates(30, on_or_after=date(2028, 2, 1), count=2) == [date(2028, 2, 29), date(2028, 3, 30)]
    assert due_dates(15, on_or_after=date(2026, 12, 16), count=2) == [date(2027, 1, 15), date(2027, 2, 15)]


@given(
    st.integers(min_value=1, max_value=31),
    st.dates(min_value=date(1990, 1, 1), max_value=date(2090, 12, 31)),
    st.integers(min_value=1, max_value=40),
)
def test_due_dates_are_the_due_day_of_each_calendar_month(
    due_day: int, on_or_after: date, count: int
) -> None:
    """Against pendulum's month arithmetic, which the dates were once computed with: the due day
    of each month from the first whose due day is on or after the date, clamped to short months."""
    month = pendulum.date(on_or_after.year, on_or_after.month, 1)

    def on_day(m: pendulum.Date) -> date:
        return date(m.year, m.month, min(due_day, m.days_in_month))

    if on_day(month) < on_or_after:
        month = month.add(months=1)
    expected = [on_day(month.add(months=i)) for i in range(count)]
    assert due_dates(due_day, on_or_after=on_or_after, count=count) == expected


def test_deferral_covers_the_past_due_in_one_to_three_instalments() -> None:
    """Two instalments behind: deferring 1 is refused, 2 defers the past due, 3 also skips the next one, 4 is
    beyond the policy."""
    behind = loan()
    with pytest.raises(PlanError, match="defer 2"):
        deferral(behind, 1, business_date=TODAY, rules=RULES)
    two = deferral(behind, 2, business_date=TODAY, rules=RULES)
    assert (two.deferred, two.term_extension_months, two.schedule) == (
        Decimal("825.00"),
        2,
        (Instalment(date(2026, 12, 11), Decimal("412.50")),),
    )
    three = deferral(behind, 3, business_date=TODAY, rules=RULES)
    assert (three.deferred, three.schedule[0].due) == (Decimal("1237.50"), date(2027, 1, 11))
    with pytest.raises(PlanError, match="1 to 3"):
        deferral(behind, 4, business_date=TODAY, rules=RULES)


def test_an_instalment_due_before_the_plan_can_start_is_taken_into_it() -> None:
    """On 8 December the instalment of 11 December falls inside the five days' lead. The deferral
    of the two instalments behind named 11 January as the next instalment and the instalment
    plans started then: 11 December was neither deferred nor asked for, and never paid. Now the
    smallest deferral moves it too (three instalments, term +3), and an instalment plan spreads it
    with the past due, every cent of it in the schedule."""
    on = date(2026, 12, 8)
    behind = loan()  # 825.00 past due since 11 November, 412.50 a month
    with pytest.raises(PlanError, match="instalment due 2026-12-11 falls before the deferral can start"):
        deferral(behind, 2, business_date=on, rules=RULES)
    found = offers(behind, business_date=on, rules=RULES)
    first = found[0]
    assert (first.kind, first.months, first.deferred, first.term_extension_months, first.schedule) == (
        "deferral",
        3,
        Decimal("1237.50"),
        3,
        (Instalment(date(2027, 1, 11), Decimal("412.50")),),
    )
    assert choose(behind, kind="deferral", months=None, business_date=on, rules=RULES) == first
    plan = found[1]
    assert (plan.kind, plan.taken_in, plan.spread) == (
        "instalment",
        (date(2026, 12, 11),),
        Decimal("1237.50"),
    )
    assert [i.amount for i in plan.schedule] == [Decimal("825.00")] * 3
    assert plan.schedule[0].due == date(2027, 1, 11)
    assert plan.total == 3 * behind.installment + behind.past_due + behind.installment
    assert PlanTerms.from_json(plan.to_json()) == plan
    assert "USD 1237.50 spread: USD 825.00 past due and the instalment due 2026-12-11" in plan.describe()
    from arrears.letters.contexts import plan_letter_context

    letter = plan_letter_context(
        plan,
        jurisdiction="US-IA",
        locale="en",
        accepted_on=on,
        letter_date=on,
        lender="L",
        lender_contact="c",
        borrower_name="D",
        account_reference="A",
        address=(),
    )
    assert letter.plan_description is not None and "instalment due 2026-12-11" in letter.plan_description
    # A loan due on the 31st, on 28 December: the 31 December instalment is taken in likewise.
    month_end = Loan("USD", Decimal("18450.00"), Decimal("412.50"), Decimal("825.00"), date(2026, 10, 31))
    assert deferral(month_end, 3, business_date=date(2026, 12, 28), rules=RULES).schedule[0].due == date(
        2027, 1, 31
    )
    assert instalment_plan(month_end, 3, business_date=date(2026, 12, 28), rules=RULES).taken_in == (
        date(2026, 12, 31),
    )


def test_a_one_month_deferral_says_month_in_the_letter_and_the_trail() -> None:
    """One instalment deferred extends the term by "1 month": the borrower's plan letter read
    "term extended by 1 months"."""
    from arrears.letters.contexts import plan_letter_context

    one = deferral(loan(past_due="412.50"), 1, business_date=TODAY, rules=RULES)
    assert one.term_extension_months == 1
    assert "(+1 month);" in one.describe()
    letter = plan_letter_context(
        one,
        jurisdiction="US-IA",
        locale="en",
        accepted_on=TODAY,
        letter_date=TODAY,
        lender="L",
        lender_contact="c",
        borrower_name="D",
        account_reference="A",
        address=(),
    )
    assert letter.plan_description is not None and "(term extended by 1 month)" in letter.plan_description
    two = deferral(loan(), 2, business_date=TODAY, rules=RULES)
    assert "(+2 months);" in two.describe()


def test_instalment_plan_spreads_the_past_due_over_the_regular_instalments() -> None:
    """Each payment is the instalment plus an exact share of the past due, on the loan's due day."""
    terms = instalment_plan(loan(past_due="1000.00"), 3, business_date=TODAY, rules=RULES)
    assert [(i.due, i.amount) for i in terms.schedule] == [
        (date(2026, 12, 11), Decimal("745.84")),
        (date(2027, 1, 11), Decimal("745.83")),
        (date(2027, 2, 11), Decimal("745.83")),
    ]
    assert terms.total == Decimal("412.50") * 3 + Decimal("1000.00")
    assert PlanTerms.from_json(terms.to_json()) == terms
    with pytest.raises(PlanError, match="2 to 12"):
        instalment_plan(loan(), 13, business_date=TODAY, rules=RULES)


def test_first_plan_date_leaves_the_lead_days() -> None:
    """A due day too close to the agreement moves the first payment to the next month."""
    terms = instalment_plan(loan(oldest=date(2026, 11, 5)), 2, business_date=date(2026, 12, 2), rules=RULES)
    assert terms.schedule[0].due == date(2027, 1, 5)


def test_offers_recommend_a_deferral_only_when_it_fits() -> None:
    """Up to three instalments behind, a deferral leads the offers; four behind, only instalment plans."""
    assert [o.kind for o in offers(loan(), business_date=TODAY, rules=RULES)] == [
        "deferral",
        "instalment",
        "instalment",
    ]
    four = loan(past_due="1650.00")
    assert [(o.kind, o.months) for o in offers(four, business_date=TODAY, rules=RULES)] == [
        ("instalment", 3),
        ("instalment", 6),
    ]
    assert offers(loan(past_due="0"), business_date=TODAY, rules=RULES) == []


def test_policy_without_plan_numbers_gives_the_defaults() -> None:
    """The default policy's plan numbers are the plan rules' defaults."""
    assert plan_rules(DEFAULT_POLICY) == DEFAULT_PLAN_RULES


def test_a_policy_file_sets_the_plan_numbers(tmp_path: Path) -> None:
    """A policy file naming `[restructuring] plan_grace_days` was refused as an unknown key, so no
    lender could change a plan's grace, lead, terms or re-ageing: the file's numbers are the plan
    rules'."""
    from arrears.policy import load_policy

    path = tmp_path / "policy.toml"
    path.write_text(
        "[restructuring]\nplan_grace_days = 10\nplan_lead_days = 7\nmax_deferral_instalments = 2\n"
        "instalment_months = [4, 8]\nmax_instalment_months = 9\nreage_after_payments = 6\n"
    )
    assert plan_rules(load_policy(path)) == PlanRules(
        max_deferral=2,
        instalment_months=(4, 8),
        min_instalment_months=2,
        max_instalment_months=9,
        grace_days=10,
        min_lead_days=7,
        reage_after=6,
    )


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("plan_grace_days = -1", "restructuring.plan_grace_days: Input should be greater than or equal to 0"),
        ("instalment_months = [3, 24]", "restructuring: .*instalment_months 24 lies outside"),
        ("plan_grace = 3", "restructuring.plan_grace: Extra inputs are not permitted"),
    ],
)
def test_a_policy_file_with_bad_plan_numbers_is_refused_naming_the_key(
    tmp_path: Path, toml: str, key: str
) -> None:
    """A negative grace, an offered plan longer than the longest allowed, or a misspelt key is
    refused at start with the key named, not run with."""
    from arrears.policy import PolicyError, load_policy

    path = tmp_path / "policy.toml"
    path.write_text(f"[restructuring]\n{toml}\n")
    with pytest.raises(PolicyError, match=key):
        load_policy(path)


# -- monitoring -------------------------------------------------------------------------------------


def _plan() -> PlanTerms:
    return instalment_plan(loan(), 3, business_date=TODAY, rules=RULES)  # 687.50 on 11 Dec, 11 Jan, 11 Feb


def test_plan_paid_on_schedule_completes() -> None:
    """Three payments on their dates complete the plan with three on time."""
    paid = [
        (date(2026, 12, 10), Decimal("687.50")),
        (date(2027, 1, 11), Decimal("687.50")),
        (date(2027, 2, 13), Decimal("687.50")),
    ]
    progress = monitor(_plan(), paid, business_date=date(2027, 2, 13), grace_days=5)
    assert (progress.status, progress.on_time, progress.paid) == ("completed", 3, Decimal("2062.50"))


def test_plan_short_after_grace_defaults_and_inside_grace_waits() -> None:
    """A payment short on its date is still active within the grace days and defaulted after them."""
    paid = [(date(2026, 12, 10), Decimal("600.00"))]
    assert monitor(_plan(), paid, business_date=date(2026, 12, 16), grace_days=5).status == "active"
    progress = monitor(_plan(), paid, business_date=date(2026, 12, 17), grace_days=5)
    assert progress.status == "defaulted"
    assert (
        progress.reason == "payment 1 of 3 (USD 687.50 due 2026-12-11) short by USD 87.50 after 5 days' grace"
    )


def test_reageing_needs_enough_on_time_payments_and_happens_once() -> None:
    """Re-ageing is due after the policy's number of on-time payments, for instalment plans, once."""
    terms = instalment_plan(loan(), 6, business_date=TODAY, rules=RULES)
    paid = [(i.due, i.amount) for i in terms.schedule[:3]]
    progress = monitor(terms, paid, business_date=terms.schedule[2].due, grace_days=5)
    assert progress.on_time == 3
    assert reage_due(terms, progress, rules=RULES, already=False)
    assert not reage_due(terms, progress, rules=RULES, already=True)
    never = type(RULES)(reage_after=None)
    assert not reage_due(terms, progress, rules=never, already=False)
    early = monitor(terms, paid[:2], business_date=terms.schedule[1].due, grace_days=5)
    assert not reage_due(terms, early, rules=RULES, already=False)
    # Three on time and then the fourth missed past its grace: the plan defaulted, nothing re-ages.
    missed = monitor(terms, paid, business_date=terms.schedule[3].due + timedelta(days=6), grace_days=5)
    assert (missed.status, missed.on_time) == ("defaulted", 3)
    assert not reage_due(terms, missed, rules=RULES, already=False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ACCEPT", PlanReply("accept")),
        ("accept 6", PlanReply("accept", None, 6)),
        ("Accept deferral", PlanReply("accept", "deferral")),
        ("接受 分期 6 期", PlanReply("accept", "instalment", 6)),
        ("同意延期", PlanReply("accept", "deferral")),
        ("DECLINE", PlanReply("decline")),
        ("拒绝", PlanReply("decline")),
        ("PLAN", PlanReply("options")),
        ("方案", PlanReply("options")),
        ("\ufeffAccept 3 🙏", PlanReply("accept", None, 3)),  # read as every reply is (inbound.normalise)
        ("maybe later", None),
    ],
)
def test_plan_replies(text: str, expected: PlanReply | None) -> None:
    """Replies to an offer read as accept (with kind and months), decline or a request for the options."""
    assert parse_plan_reply(text) == expected


@pytest.mark.parametrize("kind", [None, "deferral", "instalment"])
def test_accepting_zero_months_is_refused_not_read_as_the_recommended_plan(kind: str | None) -> None:
    """A borrower's `ACCEPT 0` (or an agent's zero months) is refused with a reason instead of silently
    becoming the recommended offer."""
    answer = parse_plan_reply("ACCEPT 0")
    assert answer is not None and answer.months == 0
    with pytest.raises(PlanError, match="at least one month, not 0"):
        choose(loan(), kind=kind, months=answer.months, business_date=TODAY, rules=RULES)


# -- in the database, under the cycle ---------------------------------------------------------------


@pytest.fixture
def later_db(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, sms_sandbox: Any) -> Engine:
    from arrears.settings import get_settings

    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    return engine


def _hardship(engine: Engine, tmp_path: Path, account_id: str, **kw: str) -> None:
    """A willing but unable borrower two instalments (20 days) behind on 1 December."""
    import_rows(
        engine,
        tmp_path,
        [us_account(account_id, past_due_amount="825.00", oldest_due_date="2026-11-11", **kw)],
    )
    set_scores(engine, account_id, ability=0.3, willingness=0.7)


def _set_stage(engine: Engine, account_id: str, stage: str) -> None:
    """Put the account where the test starts, as an earlier cycle would have."""
    with engine.begin() as c:
        c.execute(update(account_t).where(account_t.c.account_id == account_id).values(stage=stage))


@pytest.mark.usefixtures("prefect_harness")
def test_offer_is_recorded_once_and_accepted_by_reply(later_db: Engine, tmp_path: Path) -> None:
    """The offer sent on entering restructuring is recorded once as an offered plan; ACCEPT 3 makes
    that plan an active three-month instalment plan."""
    _hardship(later_db, tmp_path, "A-R1")
    day(later_db, "2026-12-01T16:00:00Z")
    assert account(later_db, "A-R1").stage == "restructuring"
    day(later_db, "2026-12-02T16:00:00Z")
    day(later_db, "2026-12-03T16:00:00Z")
    offered = rows(later_db, plan_t, "A-R1")
    assert [(p.status, len(p.terms["offers"])) for p in offered] == [("offered", 3)]
    reply(later_db, "A-R1", "ACCEPT 3", "2026-12-03T18:00:00Z")
    day(later_db, "2026-12-04T16:00:00Z")
    plans = rows(later_db, plan_t, "A-R1")
    assert [(p.id, p.status, p.kind, p.terms["months"]) for p in plans] == [
        (offered[0].id, "active", "instalment", 3)
    ]
    assert [s["amount"] for s in plans[0].terms["schedule"]] == ["687.50", "687.50", "687.50"]
    assert plans[0].terms["accepted_by"] == "borrower"
    assert account(later_db, "A-R1").stage == "restructuring"


def test_the_daily_offer_decodes_no_offer_already_made(later_db: Engine, tmp_path: Path, db_url: str) -> None:
    """Each day the refresh looks for the accounts in restructuring without an offer for their stay.
    It decoded every offered plan's whole terms to find them (each offer with its schedule, ~1 KB of
    JSON): ~5 s of a 200,000-account refresh every day, once restructuring held 28,000 offers. It
    now reads each latest plan's status and stay in SQL, and decodes none; a new stay still gets
    its offer, and a stay with one gets no second."""
    from arrears.storage.plans import offer_plans

    ids = ["A-R20", "A-R21", "A-R22"]
    records = [us_account(i, past_due_amount="825.00", oldest_due_date="2026-11-11") for i in ids]
    import_rows(later_db, tmp_path, records)
    for account_id in ids:
        set_scores(later_db, account_id, ability=0.3, willingness=0.7)
        _set_stage(later_db, account_id, "restructuring")
    assert refresh_later(later_db, "2026-12-01T16:00:00Z")["plans_offered"] == 3

    decoded: list[Any] = []

    def counting(text: str) -> Any:
        decoded.append(json.loads(text))
        return decoded[-1]

    counted = create_engine(db_url, json_deserializer=counting)

    def offer(as_of: str) -> int:
        with counted.begin() as c:
            return offer_plans(c, as_of=at(as_of), business_date=at(as_of).date(), rules=RULES)

    try:
        assert offer("2026-12-02T16:00:00Z") == 0
        with later_db.begin() as c:  # A-R20 left restructuring and came back: a new stay
            c.execute(
                update(account_t)
                .where(account_t.c.account_id == "A-R20")
                .values(episode=account_t.c.episode + 1)
            )
        assert offer("2026-12-03T16:00:00Z") == 1
    finally:
        counted.dispose()
    assert [d for d in decoded if isinstance(d, dict) and "offers" in d] == []
    assert [p.status for p in rows(later_db, plan_t, "A-R20")] == ["offered", "offered"]
    assert [len(rows(later_db, plan_t, i)) for i in ids[1:]] == [1, 1]


@pytest.mark.usefixtures("prefect_harness")
def test_deferral_by_agent_cures_and_the_resumed_instalment_completes_it(
    later_db: Engine, tmp_path: Path, db_url: str
) -> None:
    """`arrears plan accept --kind deferral` moves the past due to the end of the term: the account
    cures that day, and paying the next instalment completes the plan."""
    from typer.testing import CliRunner

    from deployments.cli import app

    _hardship(later_db, tmp_path, "A-R2")
    day(later_db, "2026-12-01T16:00:00Z")
    result = CliRunner().invoke(
        app,
        [
            "plan",
            "accept",
            "A-R2",
            "--kind",
            "deferral",
            "--agent",
            "lee",
            "--as-of",
            "2026-12-02T15:00:00Z",
            "--database",
            db_url,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    a = account(later_db, "A-R2")
    assert (a.past_due_amount, a.oldest_due_date, a.next_due_date) == (Decimal(0), None, date(2026, 12, 11))
    day(later_db, "2026-12-02T16:00:00Z")
    assert account(later_db, "A-R2").stage == "cured"
    pay(later_db, tmp_path, "A-R2", "412.50", "2026-12-11T15:00:00Z")
    day(later_db, "2026-12-11T16:00:00Z")
    assert [p.status for p in rows(later_db, plan_t, "A-R2")] == ["completed"]
    details = [e.detail for e in events(later_db, "A-R2", "plan")]
    assert any(d.startswith("deferral applied: USD 825.00 moved to the end of the term") for d in details)


def test_completed_instalment_plan_clears_the_arrears(later_db: Engine, tmp_path: Path) -> None:
    """Each plan payment is an instalment plus a share of the past due: the last one completes the
    plan with nothing past due, so the lifecycle cures the account."""
    from tasks.plans import accept_plan

    _hardship(later_db, tmp_path, "A-R3")
    _set_stage(later_db, "A-R3", "restructuring")
    _, terms = accept_plan(
        later_db, account_id="A-R3", kind="instalment", months=2, agent="lee", at=at("2026-12-02T15:00:00Z")
    )
    completed = []
    for item in terms.schedule:
        pay(later_db, tmp_path, "A-R3", str(item.amount), f"{item.due.isoformat()}T15:00:00Z")
        completed.append(refresh_later(later_db, f"{item.due.isoformat()}T16:00:00Z")["plans_completed"])
    assert completed == [0, 1]
    a = account(later_db, "A-R3")
    assert (a.past_due_amount, a.oldest_due_date) == (Decimal(0), None)
    assert events(later_db, "A-R3", "plan")[-1].detail == "plan 1 completed: all 2 payments made"
    assert [p.status for p in rows(later_db, plan_t, "A-R3")] == ["completed"]


def test_reageing_after_three_on_time_payments(later_db: Engine, tmp_path: Path) -> None:
    """A six-month plan paid on time three times re-ages the account (brought current), once."""
    from tasks.plans import accept_plan

    _hardship(later_db, tmp_path, "A-R4")
    _set_stage(later_db, "A-R4", "negotiation")
    _, terms = accept_plan(
        later_db, account_id="A-R4", kind="instalment", months=6, agent="lee", at=at("2026-12-02T15:00:00Z")
    )
    for n, item in enumerate(terms.schedule[:3], start=1):
        pay(later_db, tmp_path, "A-R4", str(item.amount), f"{item.due.isoformat()}T15:00:00Z")
        import_rows(
            later_db, tmp_path, [us_account("A-R4", past_due_amount="825.00", oldest_due_date="2026-11-11")]
        )
        counts = refresh_later(later_db, f"{item.due.isoformat()}T16:00:00Z")
        assert counts["plans_reaged"] == (1 if n == 3 else 0)
    assert account(later_db, "A-R4").past_due_amount == Decimal(0)
    plan = rows(later_db, plan_t, "A-R4")[0]
    assert (plan.status, plan.terms["reaged"], plan.terms["on_time"]) == ("active", True, 3)
    assert refresh_later(later_db, f"{terms.schedule[2].due.isoformat()}T17:00:00Z")["plans_reaged"] == 0


@pytest.mark.usefixtures("prefect_harness")
def test_defaulted_plan_sends_the_account_to_review(later_db: Engine, tmp_path: Path) -> None:
    """An instalment plan whose first payment is missed past its grace is defaulted; the lifecycle escalates
    to review."""
    _hardship(later_db, tmp_path, "A-R5")
    day(later_db, "2026-12-01T16:00:00Z")
    reply(later_db, "A-R5", "接受 分期 3", "2026-12-01T18:00:00Z")
    day(later_db, "2026-12-02T16:00:00Z")
    assert [p.status for p in rows(later_db, plan_t, "A-R5")] == ["active"]
    # Due 11 December with 5 days' grace: still active on the 16th (business dates in Shanghai).
    day(later_db, "2026-12-16T10:00:00Z")
    assert [p.status for p in rows(later_db, plan_t, "A-R5")] == ["active"]
    day(later_db, "2026-12-17T10:00:00Z")
    assert [p.status for p in rows(later_db, plan_t, "A-R5")] == ["defaulted"]
    assert account(later_db, "A-R5").stage == "repossession_review"
    assert (
        events(later_db, "A-R5", "transition")[-1].detail
        == "restructuring → repossession_review: plan defaulted"
    )


@pytest.mark.usefixtures("prefect_harness")
def test_declining_the_offer_by_reply_goes_to_review(later_db: Engine, tmp_path: Path) -> None:
    """DECLINE to an open offer declines it; the lifecycle then takes the account to review."""
    _hardship(later_db, tmp_path, "A-R6")
    day(later_db, "2026-12-01T16:00:00Z")
    reply(later_db, "A-R6", "DECLINE", "2026-12-01T18:00:00Z")
    day(later_db, "2026-12-02T16:00:00Z")
    assert [p.status for p in rows(later_db, plan_t, "A-R6")] == ["declined"]
    assert account(later_db, "A-R6").stage == "repossession_review"


def test_agent_cannot_agree_a_plan_once_a_reviewer_has_the_account(later_db: Engine, tmp_path: Path) -> None:
    """A plan cannot be agreed in repossession review: a reviewer decides there."""
    from tasks.plans import accept_plan

    _hardship(later_db, tmp_path, "A-R7")
    _set_stage(later_db, "A-R7", "repossession_review")
    with pytest.raises(PlanError, match="repossession_review"):
        accept_plan(
            later_db, account_id="A-R7", kind=None, months=None, agent="lee", at=at("2026-12-02T15:00:00Z")
        )


def test_a_short_plan_payment_is_stated_at_the_currency_precision(later_db: Engine, tmp_path: Path) -> None:
    """A plan defaulted after a partial payment said `short by USD 587.5000` and kept `paid` as
    `100.0000` (storage's four places): the reason and the plan's terms give the currency's own."""
    from tasks.plans import accept_plan

    _hardship(later_db, tmp_path, "A-R9")
    _set_stage(later_db, "A-R9", "negotiation")
    _, terms = accept_plan(
        later_db, account_id="A-R9", kind="instalment", months=3, agent="lee", at=at("2026-12-02T15:00:00Z")
    )
    pay(later_db, tmp_path, "A-R9", "100.00", "2026-12-05T15:00:00Z")
    refresh_later(later_db, "2026-12-20T16:00:00Z")
    [plan] = rows(later_db, plan_t, "A-R9")
    assert (plan.status, plan.terms["paid"]) == ("defaulted", "100.00")
    first = terms.schedule[0]
    assert events(later_db, "A-R9", "plan")[-1].detail == (
        f"plan {plan.id} defaulted: payment 1 of 3 (USD {first.amount} due {first.due.isoformat()}) "
        f"short by USD {first.amount - Decimal('100.00')} after 5 days' grace"
    )


def test_a_payment_the_plan_already_reflects_does_not_pay_it_again(later_db: Engine, tmp_path: Path) -> None:
    """A payment the morning's cycle applied lowered the past due the plan was then made on, and
    counted towards that plan as well: a deferral agreed in the afternoon completed at the next
    cycle without its next instalment being paid. Only payments applied after the plan count."""
    from tasks.plans import accept_plan

    _hardship(later_db, tmp_path, "A-R10")
    _set_stage(later_db, "A-R10", "negotiation")
    pay(later_db, tmp_path, "A-R10", "412.50", "2026-12-02T00:30:00Z")
    refresh_later(later_db, "2026-12-02T01:00:00Z")
    assert account(later_db, "A-R10").past_due_amount == Decimal("412.50")
    _, terms = accept_plan(
        later_db, account_id="A-R10", kind="deferral", months=None, agent="lee", at=at("2026-12-02T06:00:00Z")
    )
    assert terms.schedule == (Instalment(date(2026, 12, 11), Decimal("412.50")),)
    refresh_later(later_db, "2026-12-03T01:00:00Z")
    assert [p.status for p in rows(later_db, plan_t, "A-R10")] == ["active"]
    pay(later_db, tmp_path, "A-R10", "412.50", "2026-12-11T01:00:00Z")
    refresh_later(later_db, "2026-12-11T02:00:00Z")
    assert [p.status for p in rows(later_db, plan_t, "A-R10")] == ["completed"]


def test_plan_show_says_why_a_loan_without_an_instalment_gets_no_offer(
    later_db: Engine, tmp_path: Path, db_url: str
) -> None:
    """`arrears plan show` of a loan with past due and no instalment amount (a file may say 0) ended
    in a PlanError traceback, exit 1; its `--json` gave the past due at storage's four places
    (`825.0000`). It says why no offer is made, and the amount as USD writes it."""
    import json

    from typer.testing import CliRunner

    from deployments.cli import app

    import_rows(later_db, tmp_path, [us_account("A-R11", installment_amount="0", past_due_amount="825.00")])
    base = ["plan", "show", "A-R11", "--as-of", "2026-12-02T15:00:00Z", "--database", db_url]
    shown = CliRunner().invoke(app, base)
    assert shown.exit_code == 0, shown.output
    assert "A-R11: no offer: the loan has no instalment amount" in shown.output
    found = json.loads(CliRunner().invoke(app, [*base, "--json"]).output)
    assert (found["past_due_amount"], found["offers"], found["no_offer"]) == (
        "825.00",
        [],
        "the loan has no instalment amount",
    )


@pytest.mark.usefixtures("prefect_harness")
def test_a_hardship_borrower_behind_again_after_a_completed_deferral_is_offered_a_plan(
    later_db: Engine, tmp_path: Path
) -> None:
    """A deferral completed in December was still the account's plan when the borrower fell behind
    again in January: the cycle that took them into restructuring cured them there ('plan
    completed') with the past due unpaid, and did so again every day. They are offered a plan."""
    from tasks.plans import accept_plan

    _hardship(later_db, tmp_path, "A-R12")
    day(later_db, "2026-12-01T16:00:00Z")
    accept_plan(
        later_db, account_id="A-R12", kind="deferral", months=None, agent="lee", at=at("2026-12-02T15:00:00Z")
    )
    day(later_db, "2026-12-02T16:00:00Z")
    pay(later_db, tmp_path, "A-R12", "412.50", "2026-12-11T15:00:00Z")
    day(later_db, "2026-12-11T16:00:00Z")
    assert [p.status for p in rows(later_db, plan_t, "A-R12")] == ["completed"]
    assert account(later_db, "A-R12").stage == "cured"
    behind = us_account("A-R12", past_due_amount="412.50", oldest_due_date="2027-01-11")
    import_rows(later_db, tmp_path, [behind], now=at("2027-01-27T15:00:00Z"))
    set_scores(later_db, "A-R12", ability=0.3, willingness=0.7)
    for when in ("2027-01-27T16:00:00Z", "2027-01-28T16:00:00Z"):
        day(later_db, when)
        a = account(later_db, "A-R12")
        assert (a.stage, a.past_due_amount) == ("restructuring", Decimal("412.50")), when
    assert [p.status for p in rows(later_db, plan_t, "A-R12")] == ["completed", "offered"]
    transitions = [e.detail for e in events(later_db, "A-R12", "transition")]
    assert not any("plan completed" in d for d in transitions), transitions


@pytest.mark.parametrize("hold", ["bankruptcy", "breathing_space"])
def test_no_plan_is_agreed_under_a_moratorium(
    later_db: Engine, tmp_path: Path, db_url: str, hold: str
) -> None:
    """`arrears plan accept` under a bankruptcy (the automatic stay) or Breathing Space hold
    recorded the plan, zeroed a deferral's past due and wrote a letter asking for the payments, where
    `arrears settlement record` is refused: it is refused naming the hold (the one-line error
    `main()` exits 2 with), and nothing is stored."""
    from typer.testing import CliRunner

    from arrears.models import Letter
    from deployments.cli import app
    from deployments.cli._common import CliError

    import_rows(
        later_db,
        tmp_path,
        [us_account("A-R13", past_due_amount="825.00", oldest_due_date="2026-11-11", flags=hold)],
    )
    _set_stage(later_db, "A-R13", "restructuring")
    result = CliRunner().invoke(
        app,
        [
            "plan",
            "accept",
            "A-R13",
            "--kind",
            "deferral",
            "--as-of",
            "2026-12-02T15:00:00Z",
            "--database",
            db_url,
        ],
    )
    assert isinstance(result.exception, CliError), result.output
    assert result.exception.exit_code == 2
    assert str(result.exception).startswith(f"A-R13: {hold} hold: ")
    assert rows(later_db, plan_t, "A-R13") == []
    assert rows(later_db, Letter.__table__, "A-R13") == []  # type: ignore[attr-defined]
    assert account(later_db, "A-R13").past_due_amount == Decimal("825.00")
    shown = CliRunner().invoke(
        app, ["plan", "show", "A-R13", "--as-of", "2026-12-02T15:00:00Z", "--database", db_url]
    )
    assert f"A-R13: no offer: {hold} hold: " in shown.output
    assert "offer 1" not in shown.output


def test_a_one_month_deferral_says_month_in_the_audit_trail(later_db: Engine, tmp_path: Path) -> None:
    """The plan letter said "1 month" but the audit trail's "deferral applied" event still read
    "term extended by 1 months"."""
    from tasks.plans import accept_plan

    import_rows(later_db, tmp_path, [us_account("A-R14")])
    _set_stage(later_db, "A-R14", "negotiation")
    accept_plan(
        later_db, account_id="A-R14", kind="deferral", months=None, agent="lee", at=at("2026-12-02T15:00:00Z")
    )
    applied = [e.detail for e in events(later_db, "A-R14", "plan") if e.detail.startswith("deferral applied")]
    assert applied == [
        "deferral applied: USD 412.50 moved to the end of the term, term extended by 1 month; "
        "past due USD 412.50 → 0"
    ]


@pytest.mark.usefixtures("prefect_harness")
def test_a_borrower_paying_under_a_plan_agreed_in_negotiation_gets_no_weekly_ask(
    later_db: Engine, tmp_path: Path
) -> None:
    """A borrower able and willing (not in hardship) who agreed an instalment plan with an agent in
    negotiation stays there; the next week's cycle still asked them to promise the whole past
    due. No ask goes out while the plan runs."""
    from arrears.models import Message
    from tasks.plans import accept_plan

    import_rows(
        later_db, tmp_path, [us_account("A-R15", past_due_amount="825.00", oldest_due_date="2026-11-11")]
    )
    set_scores(later_db, "A-R15", ability=0.8, willingness=0.8)
    day(later_db, "2026-12-01T16:00:00Z")
    assert account(later_db, "A-R15").stage == "negotiation"
    accept_plan(
        later_db, account_id="A-R15", kind="instalment", months=3, agent="lee", at=at("2026-12-02T15:00:00Z")
    )
    day(later_db, "2026-12-08T16:00:00Z")
    assert account(later_db, "A-R15").stage == "negotiation"
    sent = [m.template for m in rows(later_db, Message.__table__, "A-R15")]  # type: ignore[attr-defined]
    assert sent == ["negotiation"]


def test_no_promise_is_taken_beside_an_active_plan(later_db: Engine, tmp_path: Path, db_url: str) -> None:
    """A promise to pay was recorded beside an active plan (by `arrears promise add` or a `PAY`
    reply): broken, it counted against a borrower paying as agreed. It is refused, naming the plan."""
    from typer.testing import CliRunner

    from arrears.models import Promise
    from deployments.cli import app
    from tasks.plans import accept_plan

    _hardship(later_db, tmp_path, "A-R16")
    _set_stage(later_db, "A-R16", "negotiation")
    plan_id, _ = accept_plan(
        later_db, account_id="A-R16", kind="instalment", months=3, agent="lee", at=at("2026-12-02T15:00:00Z")
    )
    result = CliRunner().invoke(
        app,
        [
            *("promise", "add", "A-R16", "--amount", "400", "--date", "2026-12-10"),
            *("--as-of", "2026-12-02T17:00:00Z", "--database", db_url),
        ],
    )
    assert str(result.exception) == (
        f"A-R16: promise not recorded: plan {plan_id} is active: the borrower is paying under it"
    )
    reply(later_db, "A-R16", "PAY 400 2026-12-10", "2026-12-02T18:00:00Z")
    refresh_later(later_db, "2026-12-03T01:00:00Z")
    assert rows(later_db, Promise.__table__, "A-R16") == []  # type: ignore[attr-defined]
    noted = [e.detail for e in events(later_db, "A-R16", "promise")]
    assert any(f"plan {plan_id} is active" in d for d in noted), noted


def test_show_json_gives_the_plan(later_db: Engine, tmp_path: Path, db_url: str) -> None:
    """`arrears show --json` gave a running settlement but not a running plan: an operator walking
    an account saw a cured account with no sign of the deferral it was paying under. It gives the
    latest plan: kind, status, who accepted it, the schedule."""
    import json

    from typer.testing import CliRunner

    from deployments.cli import app
    from tasks.plans import accept_plan

    _hardship(later_db, tmp_path, "A-R17")
    _set_stage(later_db, "A-R17", "negotiation")
    plan_id, terms = accept_plan(
        later_db, account_id="A-R17", kind="deferral", months=None, agent="lee", at=at("2026-12-02T15:00:00Z")
    )
    shown = CliRunner().invoke(app, ["show", "A-R17", "--json", "--database", db_url])
    assert shown.exit_code == 0, shown.output
    found = json.loads(shown.output)["plan"]
    assert (found["id"], found["kind"], found["status"], found["accepted_by"]) == (
        plan_id,
        "deferral",
        "active",
        "agent:lee",
    )
    assert found["schedule"] == [{"due": terms.schedule[0].due.isoformat(), "amount": "412.50"}]
    text = CliRunner().invoke(app, ["show", "A-R17", "--database", db_url]).output
    assert f"plan {plan_id} deferral active due {terms.schedule[0].due.isoformat()} " in text


def test_a_plan_replaces_a_promise_pending(later_db: Engine, tmp_path: Path) -> None:
    """A promise made before the plan stayed pending beside it: unpaid on its date (the borrower
    now paying the plan's dates), it was broken and counted against them. The plan replaces it,
    on the timeline."""
    from arrears.models import Promise
    from tasks.plans import accept_plan
    from tasks.promises import record_agent_promise

    _hardship(later_db, tmp_path, "A-R18")
    _set_stage(later_db, "A-R18", "negotiation")
    promised = record_agent_promise(
        later_db,
        account_id="A-R18",
        amount=Decimal("400"),
        due_date=date(2026, 12, 10),
        agent="lee",
        at=at("2026-12-02T14:00:00Z"),
    )
    plan_id, _ = accept_plan(
        later_db, account_id="A-R18", kind="instalment", months=3, agent="lee", at=at("2026-12-02T15:00:00Z")
    )
    [row] = rows(later_db, Promise.__table__, "A-R18")  # type: ignore[attr-defined]
    assert (row.id, row.status) == (promised, "replaced")
    assert f"promise {promised} replaced by plan {plan_id}" in [e.detail for e in events(later_db, "A-R18")]
    refresh_later(later_db, "2026-12-20T16:00:00Z")
    assert account(later_db, "A-R18").broken_promises == 0


@pytest.mark.usefixtures("prefect_harness")
def test_an_agent_cancels_a_plan_so_that_a_settlement_can_be_recorded(
    later_db: Engine, tmp_path: Path, db_url: str
) -> None:
    """A settlement is refused while a plan is active, and nothing could end a plan but its own
    completion or default: a borrower paying under a plan who agreed to settle could not be
    recorded as settling. `arrears plan cancel` ends it, audited with who and why; the settlement
    is then recorded and holds the account in restructuring rather than sending it to review."""
    from typer.testing import CliRunner

    from deployments.cli import app
    from deployments.cli._common import CliError
    from tasks.plans import accept_plan

    def cli(*args: str) -> Any:
        return CliRunner().invoke(app, [*args, "--as-of", "2026-12-03T15:00:00Z", "--database", db_url])

    _hardship(later_db, tmp_path, "A-R19")
    day(later_db, "2026-12-01T16:00:00Z")
    plan_id, _ = accept_plan(
        later_db, account_id="A-R19", kind="instalment", months=6, agent="lee", at=at("2026-12-02T15:00:00Z")
    )
    settle = (
        "settlement",
        "record",
        "A-R19",
        "--amount",
        "9000",
        "--pay-by",
        "2026-12-20",
        "--reason",
        "lump sum",
    )
    refused = cli(*settle)
    assert isinstance(refused.exception, CliError)
    assert f"plan {plan_id} is active" in str(refused.exception)
    assert "`arrears plan cancel` it first" in str(refused.exception)
    cancelled = cli("plan", "cancel", "A-R19", "--reason", "borrower settles", "--agent", "kim")
    assert cancelled.exit_code == 0, cancelled.output
    assert f"A-R19: plan {plan_id} cancelled" in cancelled.output
    [plan] = rows(later_db, plan_t, "A-R19")
    assert (plan.status, plan.terms["cancelled_by"], plan.terms["reason"]) == (
        "cancelled",
        "kim",
        "borrower settles",
    )
    trail = events(later_db, "A-R19", "plan")[-1]
    assert (trail.detail, trail.actor) == (f"plan {plan_id} cancelled: borrower settles", "agent:kim")
    assert cli(*settle).exit_code == 0
    day(later_db, "2026-12-03T16:00:00Z")
    assert account(later_db, "A-R19").stage == "restructuring"
    again = cli("plan", "cancel", "A-R19", "--reason", "twice")
    assert isinstance(again.exception, CliError)
    assert str(again.exception) == "A-R19: no plan is active: nothing changed"


def test_a_delinquent_account_before_its_first_cycle_may_agree_a_plan(
    later_db: Engine, tmp_path: Path, db_url: str
) -> None:
    """An account imported delinquent rests in `cured` until its first cycle; a promise or a
    settlement may be agreed then, but `arrears plan accept` said "account is in cured: plans are
    agreed in reminder, negotiation and restructuring". The plan is agreed; a current account is
    refused as current."""
    from typer.testing import CliRunner

    from deployments.cli import app
    from deployments.cli._common import CliError

    import_rows(
        later_db,
        tmp_path,
        [
            us_account("A-R20", past_due_amount="825.00", oldest_due_date="2026-11-11"),
            us_account("A-R21", past_due_amount="0", oldest_due_date=""),
        ],
    )
    assert account(later_db, "A-R20").stage == "cured"

    def accept(account_id: str) -> Any:
        return CliRunner().invoke(
            app,
            [
                "plan",
                "accept",
                account_id,
                "--months",
                "3",
                "--as-of",
                "2026-12-02T15:00:00Z",
                "--database",
                db_url,
            ],
        )

    agreed = accept("A-R20")
    assert agreed.exit_code == 0, agreed.output
    assert [(p.status, p.kind) for p in rows(later_db, plan_t, "A-R20")] == [("active", "instalment")]
    current = accept("A-R21")
    assert isinstance(current.exception, CliError)
    assert str(current.exception) == "A-R21: account is current (nothing past due): there is nothing to plan"


@pytest.mark.usefixtures("prefect_harness")
def test_an_agent_records_a_declined_offer(later_db: Engine, tmp_path: Path, db_url: str) -> None:
    """A borrower who turned the offer down on the phone could only be recorded by a DECLINE reply:
    the agent had no command, and the offer waited 14 days to expire into review as "unanswered".
    `arrears plan decline` records it with who and why; the next cycle takes the account to review."""
    from typer.testing import CliRunner

    from deployments.cli import app
    from deployments.cli._common import CliError

    def decline(account_id: str) -> Any:
        return CliRunner().invoke(
            app,
            [
                *("plan", "decline", account_id, "--reason", "cannot pay anything", "--agent", "kim"),
                *("--as-of", "2026-12-02T15:00:00Z", "--database", db_url),
            ],
        )

    _hardship(later_db, tmp_path, "A-R22")
    day(later_db, "2026-12-01T16:00:00Z")
    assert account(later_db, "A-R22").stage == "restructuring"
    declined = decline("A-R22")
    assert declined.exit_code == 0, declined.output
    [plan] = rows(later_db, plan_t, "A-R22")
    assert plan.status == "declined"
    trail = events(later_db, "A-R22", "plan")[-1]
    assert (trail.detail, trail.actor) == (
        f"plan offer {plan.id} declined (agent): cannot pay anything",
        "agent:kim",
    )
    day(later_db, "2026-12-02T16:00:00Z")
    assert account(later_db, "A-R22").stage == "repossession_review"
    import_rows(later_db, tmp_path, [us_account("A-R23")])
    none_open = decline("A-R23")
    assert isinstance(none_open.exception, CliError)
    assert "A-R23: no offer is open" in str(none_open.exception)
