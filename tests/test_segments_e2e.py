"""One account of each segment walked from its first reminder to its end, under Prefect, with the
sandbox SMS provider, the sandbox bureau and the sandbox court, reviews and referrals running on
served deployments:

- self_cure (CN): promises by reply in Chinese, pays, the promise is kept, cured;
- unreachable (US-IA): its only number is dead, so nothing is sent; the bureau's skip trace finds
  new numbers, unconfirmed (perhaps a third party's), so the reminder, which tells of the debt, is
  blocked to them; the borrower pays, cured;
- hardship (US-IA): the bureau pull on entering negotiation finds no ability (band E), so
  restructuring is offered, accepted by reply, paid: cured by the plan, plan completed;
- strategic (US-IA): able by the bureau (band B), breaks two promises, reaches review early, the
  20-day right to cure runs out, a reviewer decides repossession through Prefect's API while the
  run waits: vendor order placed;
- distressed (US-CA): unable by the bureau, unwilling, 60 days past due without a plan, review (no
  cure notice owed in California), referred to legal on the command line, filed, judgment, closed.

The sandbox bureau answers as a pure function of the subject's phone: the numbers below were
chosen for the band each story needs. `arrears show --json` tells each story in its timeline.
"""

import json
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import Engine, update

from tests.factories import account_record
from tests.later_stage_helpers import (
    Served,
    account,
    contact_t,
    day,
    import_rows,
    pay,
    plan_t,
    referral_t,
    reply,
    review_t,
    rows,
    set_scores,
    us_account,
    wait_state,
)

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


@pytest.fixture
def world(
    sqlite_engine: Engine, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sms_sandbox: Any
) -> Any:
    """The database, the sandbox court, and the review and referral deployments served elsewhere."""
    from arrears.settings import get_settings
    from integrations.agency.sandbox import start_agency_sandbox
    from integrations.bureau.sandbox import start_bureau_sandbox
    from integrations.court.sandbox import start_court_sandbox
    from integrations.letters.sandbox import start_letters_sandbox

    with (
        start_court_sandbox() as court,
        start_bureau_sandbox() as bureau,
        start_letters_sandbox() as lob,
        start_agency_sandbox() as agency,
    ):
        env = {
            "ARREARS_DATABASE_URL": sqlite_url,
            "ARREARS_HOME": str(tmp_path / "home"),
            "ARREARS_COURT_PROVIDER": "sandbox",
            "ARREARS_COURT_BASE_URL": court.base_url,
            "ARREARS_COURT_CREDENTIALS": json.dumps(court.credentials),
            "ARREARS_BUREAU_PROVIDER": "sandbox",
            "ARREARS_BUREAU_BASE_URL": bureau.base_url,
            "ARREARS_BUREAU_CREDENTIALS": json.dumps(dict(bureau.credentials)),
            "ARREARS_LETTERS_PROVIDER": "sandbox",
            "ARREARS_LETTERS_BASE_URL": lob.base_url,
            "ARREARS_LETTERS_CREDENTIALS": json.dumps(lob.credentials),
            "ARREARS_AGENCY_PROVIDER": "sandbox",
            "ARREARS_AGENCY_BASE_URL": agency.base_url,
            "ARREARS_AGENCY_CREDENTIALS": json.dumps(agency.credentials),
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        served = Served(tmp_path, env)
        try:
            served.wait_ready()
            yield sqlite_engine, court, lob
        finally:
            served.stop()


def _story(url: str, account_id: str) -> dict[str, Any]:
    from typer.testing import CliRunner

    from deployments.cli import app

    result = CliRunner().invoke(app, ["show", account_id, "--json", "--database", url])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _in_order(timeline: list[dict[str, Any]], expected: list[tuple[str, str]]) -> None:
    """Each (kind, text) of `expected` appears in the timeline, in this order."""
    position = 0
    for kind, text in expected:
        for i in range(position, len(timeline)):
            if timeline[i]["kind"] == kind and text in timeline[i]["detail"]:
                position = i + 1
                break
        else:
            shown = "\n".join(f"{e['at'][:16]} {e['kind']}: {e['detail']}" for e in timeline)
            pytest.fail(f"no {kind} {text!r} after position {position} in:\n{shown}")


def _run_waiting(engine: Engine, account_id: str, key: str) -> UUID:
    [review] = [r for r in rows(engine, review_t, account_id) if r.flow_run_id]
    run_id = UUID(review.flow_run_id)
    wait_state(run_id, lambda s: s.is_paused() and s.state_details.pause_key == key, f"waiting on {key}")
    return run_id


def test_each_segment_walks_to_its_end(world: Any, sqlite_url: str, tmp_path: Path) -> None:
    """Self-cure cures on a kept promise, hardship cures by a plan, strategic ends in a repossession
    decided in review, distressed ends in a judgment; each story is in its timeline."""
    from prefect.flow_runs import resume_flow_run
    from typer.testing import CliRunner

    from deployments.cli import app

    engine, court, lob = world
    cn = account_record(
        account_id="A-SELF",
        borrower_name="王芳",
        phone="13912345678",
        timezone="Asia/Shanghai",
        jurisdiction="CN",
        currency="CNY",
        balance="60000.00",
        installment_amount="3000.00",
        past_due_amount="3000.00",
        oldest_due_date="2026-11-30",
    )
    import_rows(engine, tmp_path, [cn])
    import_rows(
        engine,
        tmp_path,
        [
            us_account("A-HARD", phone="(515) 281-1001", oldest_due_date="2026-11-30"),  # bureau: band E
            us_account("A-STRAT", phone="(515) 281-1000", oldest_due_date="2026-11-30"),  # bureau: band B
            us_account(
                "A-UNREACH", phone="(515) 281-1006", oldest_due_date="2026-11-30"
            ),  # skip trace finds mobiles
            us_account(
                "A-DIST",
                phone="(213) 373-1001",
                jurisdiction="US-CA",
                timezone="America/Los_Angeles",
                oldest_due_date="2026-11-30",
            ),  # bureau: band E
        ],
    )
    set_scores(engine, "A-HARD", willingness=0.7)  # earlier contact: willing
    set_scores(engine, "A-DIST", willingness=0.3)  # earlier contact: unwilling
    with engine.begin() as c:  # the provider reported A-UNREACH's only number invalid
        c.execute(update(contact_t).where(contact_t.c.address == "+15152811006").values(valid=False))

    def cycle(as_of: str) -> dict[str, Any]:
        return day(engine, as_of)

    everyone = ("A-SELF", "A-HARD", "A-STRAT", "A-UNREACH", "A-DIST")
    cycle("2026-12-01T01:00:00Z")
    assert {a: account(engine, a).stage for a in everyone} == dict.fromkeys(everyone, "reminder")
    assert account(engine, "A-UNREACH").segment == "unreachable"

    # self_cure: a promise in Chinese, kept by a payment. unreachable: reachable again after the skip trace.
    reply(engine, "A-SELF", "还款 3000 2026-12-05", "2026-12-01T05:00:00Z")
    reply(engine, "A-STRAT", "PAY 412.50 2026-12-05", "2026-12-02T01:30:00Z")
    cycle("2026-12-03T01:00:00Z")
    assert account(engine, "A-UNREACH").segment != "unreachable"
    pay(engine, tmp_path, "A-SELF", "3000.00", "2026-12-04T03:00:00Z")
    pay(engine, tmp_path, "A-UNREACH", "412.50", "2026-12-04T03:00:00Z")
    cycle("2026-12-05T01:00:00Z")
    assert account(engine, "A-SELF").stage == "cured"
    assert account(engine, "A-UNREACH").stage == "cured"

    # strategic: the first promise is broken, a second is made; the bureau finds it able.
    cycle("2026-12-09T01:00:00Z")
    strat = account(engine, "A-STRAT")
    assert (strat.stage, strat.segment, strat.broken_promises) == ("negotiation", "strategic", 1)
    reply(engine, "A-STRAT", "PAY 412.50 2026-12-14", "2026-12-09T02:00:00Z")
    cycle("2026-12-10T01:00:00Z")

    # hardship: negotiation at 16 days; the bureau pull finds no ability; restructuring the next day.
    cycle("2026-12-16T01:00:00Z")
    assert {a: account(engine, a).stage for a in ("A-HARD", "A-DIST")} == dict.fromkeys(
        ("A-HARD", "A-DIST"), "negotiation"
    )
    cycle("2026-12-17T01:00:00Z")
    assert (account(engine, "A-HARD").stage, account(engine, "A-DIST").segment) == (
        "restructuring",
        "distressed",
    )

    # strategic: the second broken promise sends it to review; the run suspends for the cure period.
    result = cycle("2026-12-18T01:00:00Z")
    assert account(engine, "A-STRAT").stage == "repossession_review"
    assert result["later"]["review_runs_started"] == 1
    _run_waiting(engine, "A-STRAT", "cure-wait-1")
    # The right-to-cure letter, in the post the same night (beside A-DIST's validation notice).
    [notice] = [sent for sent in lob.letters() if sent["description"] == "right_to_cure"]
    lob.advance(notice["id"], "mailed", at="2026-12-18T01:00:00Z")

    # hardship: the offer is accepted by reply.
    reply(engine, "A-HARD", "ACCEPT 3", "2026-12-18T02:00:00Z")
    cycle("2026-12-19T01:00:00Z")
    [plan] = rows(engine, plan_t, "A-HARD")
    assert (plan.status, plan.kind, plan.terms["months"]) == ("active", "instalment", 3)
    first, second, third = (s["due"] for s in plan.terms["schedule"])

    # hardship: the first plan payment clears the past due: cured by the plan.
    pay(engine, tmp_path, "A-HARD", plan.terms["schedule"][0]["amount"], f"{first}T03:00:00Z")
    cycle(f"{first}T04:00:00Z")
    assert account(engine, "A-HARD").stage == "cured"

    # strategic: after the Iowa cure period (20 days from the mailed letter, never before the day it
    # printed: Saturday 9 January, so Monday 11th) the cycle wakes the run; a reviewer decides in Prefect.
    cycle("2027-01-12T07:00:00Z")
    run_id = _run_waiting(engine, "A-STRAT", "decision")
    resume_flow_run(
        run_id,
        run_input={
            "decision": "repossess",
            "reviewer": "Ana Ruiz",
            "reason": "two promises broken, vehicle located",
        },
    )
    wait_state(run_id, lambda s: s.is_completed(), "completed")
    [review] = rows(engine, review_t, "A-STRAT")
    assert (review.decision, review.reviewer) == ("repossess", "Ana Ruiz")

    # distressed: 60 days past due without a plan; no cure notice in California; referred on the CLI.
    cycle("2027-01-29T01:00:00Z")
    assert account(engine, "A-DIST").stage == "repossession_review"
    _run_waiting(engine, "A-DIST", "decision")
    decided = CliRunner().invoke(
        app,
        [
            "review",
            "decide",
            "A-DIST",
            "--decision",
            "legal",
            "--reviewer",
            "Bo Chen",
            "--reason",
            "no contact, equity negative",
            "--database",
            sqlite_url,
            "--as-of",
            "2027-01-29T02:00:00Z",
        ],
    )
    assert decided.exit_code == 0, decided.output
    assert "resumed with the decision" in decided.output
    pay(engine, tmp_path, "A-HARD", plan.terms["schedule"][1]["amount"], f"{second}T03:00:00Z")
    cycle("2027-01-30T04:00:00Z")
    assert account(engine, "A-DIST").stage == "legal_referral"
    referral = _filed(engine, "A-DIST")
    court.advance(referral.filing_id, "judgment")
    cycle("2027-01-31T04:00:00Z")  # wakes the referral run: it polls the court and ends
    _until(lambda: rows(engine, referral_t, "A-DIST")[-1].status == "judgment", "judgment recorded")
    cycle("2027-02-01T04:00:00Z")
    assert account(engine, "A-DIST").stage == "closed"

    # hardship: the last plan payment completes the plan.
    pay(engine, tmp_path, "A-HARD", plan.terms["schedule"][2]["amount"], f"{third}T03:00:00Z")
    cycle(f"{third}T04:00:00Z")
    assert [p.status for p in rows(engine, plan_t, "A-HARD")] == ["completed"]

    # Each story, as `arrears show --json` tells it.
    _in_order(
        _story(sqlite_url, "A-SELF")["timeline"],
        [
            ("transition", "cured → reminder"),
            ("reply", "还款 3000 2026-12-05"),
            ("promise", "promise to pay CNY 3000.00"),
            ("promise", "kept"),
            ("transition", "reminder → cured: past due cleared"),
        ],
    )
    _in_order(
        _story(sqlite_url, "A-UNREACH")["timeline"],
        [
            ("segment", "→ unreachable"),
            ("bureau", "skip trace (604(a)(3)(A)): band B"),
            ("segment", "unreachable →"),
            ("message", "reminder blocked: content:third-party-debt"),
            ("transition", "reminder → cured: past due cleared"),
        ],
    )
    _in_order(
        _story(sqlite_url, "A-HARD")["timeline"],
        [
            ("bureau", "bureau pull (604(a)(3)(A)): band E"),
            ("transition", "negotiation → restructuring: hardship"),
            ("plan", "plan offered: deferral of 1 instalment"),
            ("reply", "ACCEPT 3"),
            ("plan", "accepted (reply): instalment plan over 3 months"),
            ("transition", "restructuring → cured"),
            ("plan", "completed: all 3 payments made"),
        ],
    )
    _in_order(
        _story(sqlite_url, "A-STRAT")["timeline"],
        [
            ("promise", "broken"),
            ("transition", "reminder → negotiation: promise to pay broken"),
            ("segment", "→ strategic"),
            ("promise", "broken"),
            ("transition", "negotiation → repossession_review: strategic: 2 promises broken"),
            ("review", "opened"),
            ("cure_notice", "to cure within 20 days"),
            ("decision", "reviewer Ana Ruiz decided repossess"),
            ("vendor_order", "placed with the recovery agent"),
        ],
    )
    _in_order(
        _story(sqlite_url, "A-DIST")["timeline"],
        [
            ("transition", "negotiation → repossession_review: 60 days past due without a working plan"),
            ("review", "opened"),
            ("decision", "reviewer Bo Chen decided legal"),
            ("transition", "repossession_review → legal_referral: reviewer referred to legal"),
            ("referral", "legal referral"),
            ("filing", "filing drafted for US-CA-LASC"),
            ("filing", "submitted"),
            ("court", "→ judgment"),
            ("transition", "legal_referral → closed: judgment entered"),
        ],
    )
    assert _story(sqlite_url, "A-STRAT")["stage"] == "repossession_review"


def _filed(engine: Engine, account_id: str) -> Any:
    _until(lambda: any(r.filing_id for r in rows(engine, referral_t, account_id)), f"{account_id} filed")
    return [r for r in rows(engine, referral_t, account_id) if r.filing_id][-1]


def _until(check: Any, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for: {what}")
