"""A borrower's PLAN (方案, OPTIONS) to a restructuring offer answered with the options in one text:
decided as every message is (rendered, checked by `check_contact`), written once per offer and
day, sent by the dispatch; no text where no offer is open or a moratorium bars a plan."""

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from arrears.compliance.content import check_content
from arrears.messages import MessageContext, format_money, render, template_params
from arrears.models import Message
from arrears.plan_options import TEMPLATE, accept_words, options_text
from arrears.policy import DEFAULT_POLICY
from arrears.restructuring import DEFAULT_PLAN_RULES, Loan, choose, offers, parse_plan_reply
from tests.later_stage_helpers import (
    account,
    day,
    events,
    import_rows,
    plan_t,
    reply,
    rows,
    set_scores,
    us_account,
)

message_t = Message.__table__  # type: ignore[attr-defined]
LENDER = "Arrears Auto Finance"


@pytest.fixture
def later_db(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, sms_sandbox: Any) -> Engine:
    from arrears.settings import get_settings

    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    monkeypatch.setenv("ARREARS_LENDER_NAME", LENDER)
    get_settings.cache_clear()
    return engine


def _in_restructuring(engine: Engine, tmp_path: Path, account_id: str, **kw: Any) -> None:
    """A willing but unable borrower two instalments behind, moved into restructuring (and sent the
    offer) by the cycle of 1 December."""
    import_rows(
        engine,
        tmp_path,
        [us_account(account_id, past_due_amount="825.00", oldest_due_date="2026-11-11", **kw)],
    )
    set_scores(engine, account_id, ability=0.3, willingness=0.7)
    day(engine, "2026-12-01T16:00:00Z")
    assert account(engine, account_id).stage == "restructuring"


def _options(engine: Engine, account_id: str) -> list[Any]:
    return [m for m in rows(engine, message_t, account_id) if m.template == TEMPLATE]


def _plan_notes(engine: Engine, account_id: str) -> list[str]:
    return [e.detail for e in events(engine, account_id, "plan") if "plan options" in e.detail]


def _plan_show(db_url: str, account_id: str, as_of: str) -> dict[str, Any]:
    import json

    from typer.testing import CliRunner

    from deployments.cli import app

    result = CliRunner().invoke(
        app, ["plan", "show", account_id, "--as-of", as_of, "--database", db_url, "--json"]
    )
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.output))


@pytest.mark.usefixtures("prefect_harness")
def test_a_plan_reply_is_answered_with_the_options_and_sent(
    later_db: Engine, tmp_path: Path, db_url: str, sms_sandbox: Any
) -> None:
    """PLAN read by the next cycle puts one options text in the outbox naming each offer's amounts
    (those `arrears plan show` gives) and its accept words; the cycle's dispatch sends it, and the
    words it gives take that very plan."""
    _in_restructuring(later_db, tmp_path, "A-PO1")
    reply(later_db, "A-PO1", "PLAN", "2026-12-01T18:00:00Z")
    shown = _plan_show(db_url, "A-PO1", "2026-12-02T16:00:00Z")
    day(later_db, "2026-12-02T16:00:00Z")
    [text] = _options(later_db, "A-PO1")
    episode = account(later_db, "A-PO1").episode
    assert (text.status, text.idempotency_key) == ("sent", f"A-PO1:plan-options:{episode}:2026-12-03")
    assert [o["kind"] for o in shown["offers"]] == ["deferral", "instalment", "instalment"]
    amounts = {format_money(Decimal(i["amount"]), "USD") for o in shown["offers"] for i in o["schedule"]}
    assert amounts == {"$412.50", "$687.50", "$550.00"} and all(a in text.body for a in amounts)
    assert "defer 2 payments ($825.00) to the end of your loan" in text.body
    for words in ("ACCEPT DEFERRAL", "ACCEPT INSTALMENT 3", "ACCEPT INSTALMENT 6", "DECLINE"):
        assert f"reply {words}" in text.body
    assert text.body.startswith(f"{LENDER}: Hi Dana,") and text.body.endswith("Reply STOP to opt out.")
    # The sandbox vendor is template-based (Aliyun's shape): it receives the values, options included.
    [received] = [m for m in sms_sandbox.messages() if m["template"] == TEMPLATE]
    assert received["params"]["options"] == text.params["options"]
    assert "reply ACCEPT INSTALMENT 6" in text.params["options"]
    assert _plan_notes(later_db, "A-PO1") == [
        "borrower asked for the plan options (reply PLAN): answered with the options text, scheduled"
    ]
    reply(later_db, "A-PO1", "ACCEPT INSTALMENT 6", "2026-12-03T16:00:00Z")
    day(later_db, "2026-12-03T18:00:00Z")
    [plan] = rows(later_db, plan_t, "A-PO1")
    assert (plan.status, plan.terms["months"]) == ("active", 6)
    first = plan.terms["schedule"][0]
    assert (
        f"6 monthly payments of {format_money(Decimal(first['amount']), 'USD')} from {first['due']}"
        in text.body
    )


@pytest.mark.usefixtures("prefect_harness")
def test_a_plan_reply_read_at_night_is_deferred_to_the_borrowers_window(
    later_db: Engine, tmp_path: Path, db_url: str, sms_sandbox: Any
) -> None:
    """Read at 23:00 in Des Moines, the options text waits for 08:00 there (`hours:US-IA`), as
    `arrears show` says, and the next dispatch in the window sends it."""
    import json

    from typer.testing import CliRunner

    from deployments.cli import app

    _in_restructuring(later_db, tmp_path, "A-PO2")
    reply(later_db, "A-PO2", "plan", "2026-12-03T04:30:00Z")
    day(later_db, "2026-12-03T05:00:00Z")  # 23:00 on 2 December in America/Chicago
    [text] = _options(later_db, "A-PO2")
    assert (text.status, text.reason) == ("scheduled", "hours:US-IA")
    assert text.not_before.replace(tzinfo=UTC) == datetime(2026, 12, 3, 14, 0, tzinfo=UTC)
    assert not [m for m in sms_sandbox.messages() if m["template"] == TEMPLATE]
    assert _plan_notes(later_db, "A-PO2") == [
        "borrower asked for the plan options (reply PLAN): answered with the options text, "
        "deferred to 2026-12-03T14:00Z (hours:US-IA)"
    ]
    shown = CliRunner().invoke(app, ["show", "A-PO2", "--database", db_url, "--json"])
    assert shown.exit_code == 0, shown.output
    [listed] = [m for m in json.loads(shown.output)["messages"] if m["template"] == TEMPLATE]
    assert (listed["status"], listed["reason"]) == ("scheduled", "hours:US-IA")
    assert listed["not_before"].startswith("2026-12-03T14:00")
    day(later_db, "2026-12-03T15:00:00Z")
    assert [m.status for m in _options(later_db, "A-PO2")] == ["sent"]
    assert len([m for m in sms_sandbox.messages() if m["template"] == TEMPLATE]) == 1


@pytest.mark.usefixtures("prefect_harness")
def test_no_options_text_under_a_bankruptcy_hold(later_db: Engine, tmp_path: Path) -> None:
    """The automatic stay bars a plan: a PLAN under a bankruptcy hold gets no text, and the
    timeline says why."""
    _in_restructuring(later_db, tmp_path, "A-PO3")
    import_rows(
        later_db,
        tmp_path,
        [us_account("A-PO3", past_due_amount="825.00", oldest_due_date="2026-11-11", flags="bankruptcy")],
    )
    reply(later_db, "A-PO3", "OPTIONS", "2026-12-01T18:00:00Z")
    day(later_db, "2026-12-02T16:00:00Z")
    assert _options(later_db, "A-PO3") == []
    [note] = _plan_notes(later_db, "A-PO3")
    assert note.startswith(
        "borrower asked for the plan options (reply PLAN), not answered: bankruptcy hold: the automatic stay"
    )


@pytest.mark.usefixtures("prefect_harness")
def test_a_dispute_hold_records_the_options_text_blocked(later_db: Engine, tmp_path: Path) -> None:
    """A hold that stops texts but not a plan (a dispute): the options text is decided and recorded
    blocked with the hold as its reason, never sent."""
    _in_restructuring(later_db, tmp_path, "A-PO4")
    import_rows(
        later_db,
        tmp_path,
        [us_account("A-PO4", past_due_amount="825.00", oldest_due_date="2026-11-11", flags="dispute")],
    )
    reply(later_db, "A-PO4", "PLAN", "2026-12-01T18:00:00Z")
    day(later_db, "2026-12-02T16:00:00Z")
    assert [(m.status, m.reason) for m in _options(later_db, "A-PO4")] == [("blocked", "hold:dispute")]


@pytest.mark.usefixtures("prefect_harness")
def test_a_second_plan_reply_the_same_day_gets_no_second_text(later_db: Engine, tmp_path: Path) -> None:
    """PLAN twice the same day, and again read by a later cycle of that day: one options text."""
    _in_restructuring(later_db, tmp_path, "A-PO5")
    reply(later_db, "A-PO5", "PLAN", "2026-12-01T18:00:00Z")
    reply(later_db, "A-PO5", "方案", "2026-12-01T19:00:00Z")
    day(later_db, "2026-12-02T16:00:00Z")
    reply(later_db, "A-PO5", "PLAN", "2026-12-02T17:00:00Z")
    day(later_db, "2026-12-02T18:00:00Z")
    assert len(_options(later_db, "A-PO5")) == 1
    assert _plan_notes(later_db, "A-PO5") == [
        "borrower asked for the plan options (reply PLAN): answered with the options text, scheduled",
        "borrower asked for the plan options (reply PLAN), not answered: already answered on 2026-12-03",
        "borrower asked for the plan options (reply PLAN), not answered: already answered on 2026-12-03",
    ]


@pytest.mark.usefixtures("prefect_harness")
def test_a_plan_reply_outside_restructuring_is_noted_not_answered(later_db: Engine, tmp_path: Path) -> None:
    """In negotiation no offer is open: PLAN gets no text, the timeline says so."""
    import_rows(
        later_db, tmp_path, [us_account("A-PO6", past_due_amount="825.00", oldest_due_date="2026-11-11")]
    )
    set_scores(later_db, "A-PO6", ability=0.8, willingness=0.8)
    day(later_db, "2026-12-01T16:00:00Z")
    assert account(later_db, "A-PO6").stage == "negotiation"
    reply(later_db, "A-PO6", "PLAN", "2026-12-01T18:00:00Z")
    day(later_db, "2026-12-02T16:00:00Z")
    assert _options(later_db, "A-PO6") == []
    assert _plan_notes(later_db, "A-PO6") == [
        "borrower asked for the plan options (reply PLAN), not answered: "
        "no offer is open (account in negotiation)"
    ]


@pytest.mark.usefixtures("prefect_harness")
def test_a_chinese_account_gets_the_options_in_chinese(later_db: Engine, tmp_path: Path) -> None:
    """A CN borrower's 方案 is answered in Chinese, with the Chinese accept words and amounts in yuan."""
    _in_restructuring(
        later_db,
        tmp_path,
        "A-PO7",
        borrower_name="王芳",
        jurisdiction="CN",
        timezone="Asia/Shanghai",
        currency="CNY",
        phone="139 1234 5678",
        address_line1=None,
        city=None,
        state=None,
        postal_code=None,
    )
    day(later_db, "2026-12-02T02:00:00Z")  # 10:00 in Shanghai: the offer, deferred from midnight, goes
    reply(later_db, "A-PO7", "方案", "2026-12-03T03:00:00Z")
    day(later_db, "2026-12-03T03:30:00Z")
    [text] = _options(later_db, "A-PO7")
    assert text.status == "sent"
    assert text.body.startswith(f"【{LENDER}】王芳您好，您的车贷逾期金额¥825.00可选以下方案：")
    for words in ("接受延期", "接受分期3", "接受分期6", "拒绝"):
        assert f"回复“{words}”" in text.body
    assert "每期¥687.50" in text.body


# -- the text, pure ---------------------------------------------------------------------------------


def _loan(past_due: str = "825.00", currency: str = "USD") -> Loan:
    return Loan(currency, Decimal("18450.00"), Decimal("412.50"), Decimal(past_due), date(2026, 11, 11))


@pytest.mark.parametrize("past_due", ["412.50", "825.00", "825.01", "5000.00"])
@pytest.mark.parametrize("locale", ["en", "zh-CN"])
def test_the_accept_words_take_the_very_offer_they_follow(past_due: str, locale: str) -> None:
    """Each offer's words, read back by `parse_plan_reply` and chosen, give that offer's terms."""
    today = date(2026, 12, 2)
    found = offers(_loan(past_due), business_date=today, rules=DEFAULT_PLAN_RULES)
    text = options_text(found, locale)
    for terms in found:
        words = accept_words(terms, locale)
        assert words in text
        answer = parse_plan_reply(words)
        assert answer is not None and answer.action == "accept"
        chosen = choose(
            _loan(past_due),
            kind=answer.kind,
            months=answer.months,
            business_date=today,
            rules=DEFAULT_PLAN_RULES,
        )
        assert chosen == terms


@pytest.mark.parametrize("code", ["CN", "US", "US-CA", "US-IA", "US-MA", "US-WI", "GB", "IE"])
def test_the_options_text_passes_the_content_check_in_every_profile(code: str) -> None:
    """Rendered for each profile (all of them offer plans), the options text is approved, names the
    lender, carries the opt-out where the profile requires it and no word of the lexicon."""
    currency = {"CN": "CNY", "GB": "GBP", "IE": "EUR"}.get(code, "USD")
    name = "王芳" if code == "CN" else "Dana Whitfield"
    ctx = MessageContext(LENDER, name, code, currency, Decimal("825.01"), Decimal("412.50"), 20)
    prof = DEFAULT_POLICY.profile(code)
    found = offers(_loan("825.01", currency), business_date=date(2026, 12, 2), rules=DEFAULT_PLAN_RULES)
    fill = template_params(ctx) | {"options": options_text(found, prof.locale)}
    body = render(TEMPLATE, ctx, fill, profile=prof)
    assert TEMPLATE in DEFAULT_POLICY.approved_templates
    assert all(accept_words(t, prof.locale) in body for t in found)
    assert check_content(body, lender=LENDER, profile=prof, fill=fill) is None
    if prof.sms_opt_out_required:
        assert body.endswith(prof.opt_out_text)


def test_an_offer_is_open_only_in_restructuring_until_it_is_answered_or_expires() -> None:
    """PLAN is answered while the offer stands (none recorded yet, or offered and not expired);
    not once it expired, was declined, a plan or a settlement runs, or outside restructuring."""
    from dataclasses import replace

    from arrears.lifecycle import AccountView, Facts, PlanFact, offer_closed

    view = AccountView(
        account_id="A-1",
        stage="restructuring",
        stage_since=datetime(2026, 12, 1, 16, tzinfo=UTC),
        episode=3,
        days_past_due=21,
        past_due_amount=Decimal("825.00"),
        balance=Decimal("18450.00"),
        jurisdiction="US-IA",
        timezone="America/Chicago",
        oldest_due_date=date(2026, 11, 11),
    )
    today = date(2026, 12, 10)
    facts = Facts(business_date=today, stage_began=date(2026, 12, 2))
    offered = PlanFact("offered", date(2026, 12, 2), 3)

    def closed(**kw: Any) -> str | None:
        return offer_closed(view, replace(facts, **kw), DEFAULT_POLICY)

    assert closed() is None and closed(plan=offered) is None
    assert closed(plan=offered, business_date=date(2026, 12, 16)) == (
        "the offer of 2026-12-02 expired (14 days unanswered)"
    )
    assert closed(plan=PlanFact("declined", today, 3)) == "no offer is open (plan declined)"
    assert closed(plan=PlanFact("active", today, 3)) == "a plan is active: the borrower is paying under it"
    assert closed(settlement="active") == "a settlement is agreed: the borrower is paying under it"
    assert offer_closed(replace(view, stage="negotiation"), facts, DEFAULT_POLICY) == (
        "no offer is open (account in negotiation)"
    )


@pytest.mark.usefixtures("prefect_harness")
def test_the_single_account_path_answers_a_plan_reply_at_once(
    later_db: Engine, tmp_path: Path, sms_sandbox: Any
) -> None:
    """The webhook's run for the replying account (`account_lifecycle`) reads the PLAN and sends the
    options then, without waiting for the next daily cycle."""
    from flows.account_lifecycle import account_lifecycle

    _in_restructuring(later_db, tmp_path, "A-PO8")
    reply(later_db, "A-PO8", "PLAN", "2026-12-02T17:00:00Z")
    result = account_lifecycle("A-PO8", as_of="2026-12-02T17:01:00Z", reason="reply")
    assert result["refresh"]["options_from_replies"] == 1
    assert [m.status for m in _options(later_db, "A-PO8")] == ["sent"]
    assert len([m for m in sms_sandbox.messages() if m["template"] == TEMPLATE]) == 1
