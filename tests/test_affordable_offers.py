"""Restructuring offers within the borrower's means (DESIGN §2: the plan is "computed from the loan
and the borrower's ability"): a plan whose monthly payment is above a third of the bureau's income
estimate (`segmentation.AFFORDABLE_SHARE`, the line `ability_score` draws) is not offered, recorded
or listed in the PLAN options, and a reply cannot take it; an agent still may. A borrower is always
offered something: when no plan fits, the one asking least."""

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from arrears.plan_options import TEMPLATE
from arrears.restructuring import (
    DEFAULT_PLAN_RULES,
    Loan,
    PlanError,
    PlanTerms,
    choose,
    offers,
    payment_ceiling,
)
from arrears.segmentation import AFFORDABLE_SHARE, ability_score
from tests.later_stage_helpers import (
    account,
    account_t,
    at,
    events,
    plan_t,
    refresh_later,
    reply,
    rows,
)
from tests.test_plan_options import _options
from tests.test_plans_and_agreements import _accept, _restructuring_account
from tests.test_restructuring import loan

RULES = DEFAULT_PLAN_RULES
TODAY = date(2026, 12, 2)
# The brief's borrower: 18,000 a year is 1,500 a month, of which a third is 500.00.
CEILING = Decimal("500.00")


def _largest(terms: PlanTerms) -> Decimal:
    return max(i.amount for i in terms.schedule)


def _shape(found: list[PlanTerms]) -> list[tuple[str, int, Decimal]]:
    return [(o.kind, o.months, o.largest_payment) for o in found]


# -- the ceiling ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yearly", "currency", "ceiling"),
    [
        ("18000", "USD", "500.00"),  # exact: a third of 1,500, not 499.99
        ("10000", "USD", "277.77"),  # 277.777…: rounded down, never above the line
        ("10000", "JPY", "277"),
        ("10000", "KWD", "277.777"),
        ("0", "USD", "0.00"),  # an estimate of no income is one: nothing fits
    ],
)
def test_the_ceiling_is_a_third_of_the_monthly_income_at_the_currencys_precision(
    yearly: str, currency: str, ceiling: str
) -> None:
    found = payment_ceiling(Decimal(yearly), currency)
    assert found == Decimal(ceiling) and str(found) == ceiling


def test_no_income_estimate_is_no_ceiling() -> None:
    assert payment_ceiling(None, "USD") is None


def test_the_ceiling_is_the_line_ability_score_draws() -> None:
    """One line for both: an instalment at the ceiling is no burden to `ability_score`, a cent more
    is (the score drops by the burden's 0.25)."""
    monthly = Decimal(18000) / 12
    assert AFFORDABLE_SHARE * 3 == 1

    def score(installment: Decimal) -> float | None:
        return ability_score(
            score_band="C",
            monthly_income=monthly,
            installment=installment,
            vehicle_value=None,
            balance=Decimal(0),
        )

    ceiling = payment_ceiling(Decimal(18000), "USD")
    assert ceiling == CEILING
    assert score(ceiling) == pytest.approx(0.55)
    assert score(ceiling + Decimal("0.01")) == pytest.approx(0.30)


# -- the offers ----------------------------------------------------------------------------------


def test_the_brief_example_offers_only_the_deferral() -> None:
    """825.00 behind on a 412.50 instalment: plans of 687.50 and 550.00 a month were offered to a
    borrower whose income affords 500.00; only the 412.50 deferral fits."""
    assert _shape(offers(loan(), business_date=TODAY, rules=RULES)) == [
        ("deferral", 2, Decimal("412.50")),
        ("instalment", 3, Decimal("687.50")),
        ("instalment", 6, Decimal("550.00")),
    ]
    assert _shape(offers(loan(), business_date=TODAY, rules=RULES, ceiling=CEILING)) == [
        ("deferral", 2, Decimal("412.50"))
    ]


def test_the_recommended_first_order_is_kept_among_those_left() -> None:
    found = offers(loan(), business_date=TODAY, rules=RULES, ceiling=Decimal("600.00"))
    assert _shape(found) == [("deferral", 2, Decimal("412.50")), ("instalment", 6, Decimal("550.00"))]


def test_a_payment_at_the_ceiling_fits() -> None:
    found = offers(loan(), business_date=TODAY, rules=RULES, ceiling=Decimal("550.00"))
    assert [o.months for o in found] == [2, 6]


@pytest.mark.parametrize("ceiling", ["0.00", "100.00"])
def test_when_nothing_fits_the_offer_asking_least_is_kept_alone(ceiling: str) -> None:
    """A zero income estimate, or one below even the regular instalment: the borrower is still
    offered something, the plan asking least of them each month."""
    assert _shape(offers(loan(), business_date=TODAY, rules=RULES, ceiling=Decimal(ceiling))) == [
        ("deferral", 2, Decimal("412.50"))
    ]
    # Four instalments behind: no deferral is offered; of the instalment plans, the longest asks least.
    behind = loan(past_due="1650.00", oldest=date(2026, 8, 11))
    assert _shape(offers(behind, business_date=TODAY, rules=RULES, ceiling=Decimal(ceiling))) == [
        ("instalment", 6, Decimal("687.50"))
    ]


def test_nothing_past_due_is_still_no_offer_under_a_ceiling() -> None:
    assert offers(loan(past_due="0.00", oldest=None), business_date=TODAY, rules=RULES, ceiling=CEILING) == []


@settings(max_examples=200, deadline=None)
@given(
    installment=st.integers(1, 200_000).map(lambda cents: Decimal(cents).scaleb(-2)),
    behind=st.integers(1, 6),
    ceiling=st.one_of(st.none(), st.integers(0, 500_000).map(lambda cents: Decimal(cents).scaleb(-2))),
)
def test_every_offer_kept_fits_the_ceiling_unless_only_the_smallest_is_kept(
    installment: Decimal, behind: int, ceiling: Decimal | None
) -> None:
    """The offers under a ceiling are those without it that fit, in their order; never none where
    there were some: the single one asking least (the first of them) when none fits."""
    # A loan `behind` instalments past due, the oldest unpaid `behind` months before.
    oldest = date(2026, 12 - behind, 11)
    the_loan = Loan("USD", installment * 60, installment, installment * behind, oldest)
    every = offers(the_loan, business_date=TODAY, rules=RULES)
    kept = offers(the_loan, business_date=TODAY, rules=RULES, ceiling=ceiling)
    assert bool(kept) == bool(every)
    if ceiling is None:
        assert kept == every
        return
    fitting = [o for o in every if _largest(o) <= ceiling]
    if fitting:
        assert kept == fitting
    else:
        least = min(_largest(o) for o in every)
        assert kept == [next(o for o in every if _largest(o) == least)]


# -- choosing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "months"), [("instalment", 3), (None, 6), ("instalment", 6)])
def test_a_reply_cannot_take_a_plan_beyond_the_borrowers_means(kind: str | None, months: int) -> None:
    """`ACCEPT INSTALMENT 6` (550.00 a month) is refused to a borrower whose income affords 500.00,
    saying why; an agent may still agree it."""
    with pytest.raises(PlanError, match=r"not one of the offers .*above the USD 500\.00 the borrower's"):
        choose(
            loan(),
            kind=kind,
            months=months,
            business_date=TODAY,
            rules=RULES,
            offered_only=True,
            ceiling=CEILING,
        )
    agreed = choose(loan(), kind=kind, months=months, business_date=TODAY, rules=RULES, ceiling=CEILING)
    assert (agreed.kind, agreed.months) == ("instalment", months)


def test_a_bare_accept_or_a_kind_alone_takes_the_first_affordable_offer() -> None:
    """`ACCEPT` is the recommended offer among those the borrower can afford, and `ACCEPT INSTALMENT`
    the first instalment plan they can: the policy's first (3 months, 687.50) is not offered to them."""

    def chosen(kind: str | None, ceiling: Decimal | None) -> tuple[str, int]:
        terms = choose(
            loan(),
            kind=kind,
            months=None,
            business_date=TODAY,
            rules=RULES,
            offered_only=True,
            ceiling=ceiling,
        )
        return terms.kind, terms.months

    assert chosen(None, CEILING) == ("deferral", 2)
    assert chosen("deferral", CEILING) == ("deferral", 2)
    assert chosen("instalment", Decimal("600.00")) == ("instalment", 6)
    assert chosen("instalment", None) == ("instalment", 3)  # no ceiling: as before
    with pytest.raises(PlanError, match="not one of the offers"):
        chosen("instalment", CEILING)


# -- stored income, recorded offers, a PLAN reply's options ---------------------------------------


@pytest.fixture
def later_db(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, sms_sandbox: Any) -> Engine:
    from arrears.settings import get_settings

    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    return engine


def _pull(engine: Engine, account_id: str, income: str | None, when: str, report: str) -> None:
    """The bureau's answer for the account, with a yearly income estimate, stored as the cycle does."""
    from arrears.storage.bureau_pulls import Pulled, PullSubject, record_pulls

    row = account(engine, account_id)
    subject = PullSubject(
        account_id,
        row.borrower_id,
        row.episode,
        "ability",
        "Dana",
        None,
        "USD",
        Decimal("18450"),
        Decimal("412.50"),
        None,
        installation=report,  # a key of its own: one pull per reason and episode otherwise
    )
    estimate = None if income is None else Decimal(income)
    pulled = Pulled(subject, "604(a)(3)(A)", report, "C", estimate, [], None, False, False)
    with engine.begin() as c:
        record_pulls(c, [pulled], at=at(when))


def _ceilings(engine: Engine, *account_ids: str) -> dict[str, Decimal | None]:
    from arrears.storage.plans import payment_ceilings

    with engine.connect() as c:
        found = c.execute(select(account_t).where(account_t.c.account_id.in_(account_ids))).all()
        return payment_ceilings(c, found)


def test_the_ceiling_is_read_from_the_borrowers_latest_income_estimate(
    later_db: Engine, tmp_path: Path
) -> None:
    """The borrower's latest estimate, pulled for any of their loans; a later pull without one (a
    refusal, an unreadable estimate) hides none; a borrower never pulled has no ceiling, and one
    estimated at no income a ceiling of zero."""
    from tests.later_stage_helpers import import_rows, us_account

    import_rows(
        later_db,
        tmp_path,
        [
            us_account("A-AF1", borrower_id="B-AF", phone="(515) 281-7001"),
            us_account("A-AF2", borrower_id="B-AF", phone="(515) 281-7001"),
            us_account("A-AF3", borrower_id="B-AF3"),
            us_account("A-AF4", borrower_id="B-AF4"),
        ],
    )
    _pull(later_db, "A-AF1", "18000", "2026-11-01T10:00:00Z", "R-1")
    _pull(later_db, "A-AF2", "24000", "2026-11-20T10:00:00Z", "R-2")
    _pull(later_db, "A-AF1", None, "2026-11-25T10:00:00Z", "R-3")
    _pull(later_db, "A-AF4", "0", "2026-11-25T10:00:00Z", "R-4")
    assert _ceilings(later_db, "A-AF1", "A-AF2", "A-AF3", "A-AF4") == {
        "A-AF1": Decimal("666.66"),
        "A-AF2": Decimal("666.66"),
        "A-AF3": None,
        "A-AF4": Decimal("0.00"),
    }


def test_a_borrower_with_a_stored_income_gets_only_affordable_offers(
    later_db: Engine, tmp_path: Path
) -> None:
    """The bureau estimated 18,000 a year: the offer recorded in the refresh, its timeline event and
    the options a PLAN reply gets list only the 412.50 deferral, never the 687.50 and 550.00 plans;
    `ACCEPT INSTALMENT 6` by text is refused with the reason, `ACCEPT DEFERRAL` takes the offer."""
    _restructuring_account(later_db, tmp_path, "A-AF5")
    _pull(later_db, "A-AF5", "18000", "2026-12-01T10:00:00Z", "R-5")
    reply(later_db, "A-AF5", "PLAN", "2026-12-02T17:00:00Z")
    refresh_later(later_db, "2026-12-02T18:00:00Z")

    [offered] = rows(later_db, plan_t, "A-AF5")
    assert offered.status == "offered" and offered.terms["ceiling"] == "500.00"
    assert [(o["kind"], o["months"]) for o in offered.terms["offers"]] == [("deferral", 2)]
    [note] = [e.detail for e in events(later_db, "A-AF5", "plan") if e.detail.startswith("plan offered")]
    assert "within the USD 500.00 a month the borrower's income affords" in note
    assert "instalment plan" not in note

    [text] = _options(later_db, "A-AF5")
    assert text.template == TEMPLATE
    options = text.params["options"]
    assert "reply ACCEPT DEFERRAL" in options and "ACCEPT INSTALMENT" not in options
    assert "$412.50" in text.body and "$687.50" not in text.body and "$550.00" not in text.body

    reply(later_db, "A-AF5", "ACCEPT INSTALMENT 6", "2026-12-02T19:00:00Z")
    refresh_later(later_db, "2026-12-02T20:00:00Z")
    assert [p.status for p in rows(later_db, plan_t, "A-AF5")] == ["offered"]
    [refused] = [e.detail for e in events(later_db, "A-AF5", "plan") if "not applied" in e.detail]
    assert "USD 550.00 a month is above the USD 500.00 the borrower's income affords" in refused

    reply(later_db, "A-AF5", "ACCEPT DEFERRAL", "2026-12-02T21:00:00Z")
    refresh_later(later_db, "2026-12-02T22:00:00Z")
    [plan] = rows(later_db, plan_t, "A-AF5")
    assert (plan.status, plan.kind, plan.terms["offers"]) == ("active", "deferral", offered.terms["offers"])


def test_an_agent_may_agree_a_plan_above_the_ceiling(later_db: Engine, tmp_path: Path) -> None:
    """The ceiling binds what a text may take; an agent who heard the borrower out agrees any plan
    the policy bounds."""
    _restructuring_account(later_db, tmp_path, "A-AF6")
    _pull(later_db, "A-AF6", "18000", "2026-12-01T10:00:00Z", "R-6")
    with pytest.raises(PlanError, match=r"above the USD 500\.00"):
        _accept(later_db, "A-AF6", "reply", "instalment", 3)
    _, terms = _accept(later_db, "A-AF6", "agent", "instalment", 3)
    assert (terms.kind, terms.months, terms.largest_payment) == ("instalment", 3, Decimal("687.50"))


def test_without_an_income_estimate_every_offer_is_recorded(later_db: Engine, tmp_path: Path) -> None:
    """No estimate, no ceiling: the offers are the policy's, as before."""
    _restructuring_account(later_db, tmp_path, "A-AF7")
    refresh_later(later_db, "2026-12-02T18:00:00Z")
    [offered] = rows(later_db, plan_t, "A-AF7")
    assert offered.terms["ceiling"] is None
    assert [(o["kind"], o["months"]) for o in offered.terms["offers"]] == [
        ("deferral", 2),
        ("instalment", 3),
        ("instalment", 6),
    ]
