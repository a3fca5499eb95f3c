"""Court referrals under real conditions: the military-status affidavit sworn as the filing goes
out and kept true while the case runs, a court gateway down while a filing is submitted, polled
or withdrawn, a withdrawal left to counsel in the legal team's queue, a payment order's parties."""

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from arrears.review import MILITARY_AFFIDAVIT, draft_filing
from tests.later_stage_helpers import account, at, day, events, in_thread, pay
from tests.test_legal import _in_legal, _run_of, _wait_referral, facts


def _hold(engine: Engine, account_id: str, kind: str, when: str) -> None:
    from arrears.storage.holds import place_hold
    from arrears.vocabulary import Hold

    with engine.begin() as c:
        place_hold(c, account_id=account_id, kind=Hold(kind), by="agent:ann", why="orders", at=at(when))


def _affidavit_sha(court: Any, filing_id: str) -> str:
    [filing] = [f for f in court.filings() if f["filingId"] == filing_id]
    [doc] = [d for d in filing["message"]["documents"] if d["kind"] == MILITARY_AFFIDAVIT]
    return str(doc["sha256"])


# -- the military-status affidavit -----------------------------------------------------------------


def test_a_military_hold_placed_after_the_referral_opened_is_sworn_in_the_affidavit(
    court_db: Engine, tmp_path: Path, court: Any
) -> None:
    """Called up between the referral's opening and its filing (held back meanwhile, say): the
    affidavit filed says the defendant IS in military service, never the "not in service" of the
    day the referral opened (50 U.S.C. 3931(c): a false affidavit is an offence)."""
    from arrears.storage import referrals
    from tasks.legal import open_referral, submit_filing
    from tasks.providers import court_session

    _in_legal(court_db, tmp_path, "A-M1")
    with court_session():
        state = open_referral.fn("A-M1", at("2026-12-23T17:00:00Z"))
        _hold(court_db, "A-M1", "military", "2026-12-24T15:00:00Z")
        done = submit_filing.fn(state.referral_id, at("2026-12-24T17:00:00Z"))
    with court_db.connect() as c:
        stored = referrals.referral_facts(c, state.referral_id)
    sworn = {d.kind: d for d in draft_filing(replace(stored, military=True)).documents}[MILITARY_AFFIDAVIT]
    assert "IS in military service" in sworn.text
    assert _affidavit_sha(court, str(done.filing_id)) == sworn.sha256


def test_a_draft_sent_again_after_a_lost_answer_keeps_the_affidavit_it_was_drafted_with(
    court_db: Engine, tmp_path: Path, court: Any
) -> None:
    """The draft went to the gateway, its answer lost, and a military hold came meanwhile: the
    resubmission carries the same documents under the same key (the gateway answers with the
    first filing instead of refusing other content under its key)."""
    from tasks.legal import open_referral, submit_filing
    from tasks.providers import court_session

    _in_legal(court_db, tmp_path, "A-M2")
    with court_session():
        state = open_referral.fn("A-M2", at("2026-12-23T17:00:00Z"))
        court.set_faults(operation="ReviewFiling", http_500=8, retry_after=0)  # executed, answer lost
        from integrations.retries import testing

        with testing():
            lost = submit_filing.fn(state.referral_id, at("2026-12-23T17:00:00Z"))
        assert (lost.status, lost.filing_id) == ("draft", None)
        court.set_faults()
        _hold(court_db, "A-M2", "military", "2026-12-24T15:00:00Z")
        done = submit_filing.fn(state.referral_id, at("2026-12-24T17:00:00Z"))
    assert done.status == "submitted" and len(court.filings()) == 1


@pytest.mark.usefixtures("prefect_harness")
def test_a_military_hold_placed_after_filing_is_put_on_record_for_counsel(
    court_db: Engine, tmp_path: Path, court: Any
) -> None:
    """The filing swore the defendant is not in military service; a military hold placed while
    the case runs makes that affidavit untrue before any default judgment: counsel is told once,
    however often the run is woken, and the case is still followed."""
    from flows.legal_referral import legal_referral, start_referrals
    from tests.later_stage_helpers import wait_paused

    _in_legal(court_db, tmp_path, "A-M3")
    running = in_thread(legal_referral, "A-M3", "2026-12-23T17:00:00Z")
    [referral] = _wait_referral(court_db, "A-M3")
    run_id = _run_of(court_db, "A-M3")
    wait_paused(run_id, "court-wait-1")
    _hold(court_db, "A-M3", "military", "2026-12-28T15:00:00Z")
    for wait, day_ in ((2, "2026-12-28"), (3, "2026-12-29")):
        start_referrals(at(f"{day_}T17:00:00Z"), f"{day_}T17:00:00Z")
        wait_paused(run_id, f"court-wait-{wait}")
    told = [e for e in events(court_db, "A-M3", "filing") if e.data.get("held") == "hold:military"]
    assert len(told) == 1, [e.detail for e in events(court_db, "A-M3", "filing")]
    assert referral.filing_id in told[0].detail and "amended military-status affidavit" in told[0].detail
    court.advance(referral.filing_id, "judgment")
    start_referrals(at("2027-01-20T17:00:00Z"), "2027-01-20T17:00:00Z")
    assert running.result(timeout=60)["status"] == "judgment"


# -- the court gateway down ------------------------------------------------------------------------


def test_a_court_outage_leaves_the_referral_waiting_with_nothing_lost(
    court_db: Engine, tmp_path: Path, court: Any
) -> None:
    """The gateway answers 503 to every attempt: submitting and polling leave the referral as it
    was (the run waits for its next wake instead of failing), and the filing goes out, once,
    when the gateway is back."""
    from integrations.retries import testing
    from tasks.legal import open_referral, poll_filing, submit_filing
    from tasks.providers import court_session

    _in_legal(court_db, tmp_path, "A-O1")
    with court_session(), testing():
        state = open_referral.fn("A-O1", at("2026-12-23T17:00:00Z"))
        court.set_faults(http_503=50, retry_after=0)
        waiting = submit_filing.fn(state.referral_id, at("2026-12-23T17:00:00Z"))
        assert (waiting.status, waiting.filing_id, court.filings()) == ("draft", None, [])
        court.set_faults()
        filed = submit_filing.fn(state.referral_id, at("2026-12-24T17:00:00Z"))
        court.set_faults(http_503=50, retry_after=0)
        polled = poll_filing.fn(state.referral_id, at("2026-12-25T17:00:00Z"))
    assert filed.status == "submitted" and (polled.status, polled.filing_id) == ("submitted", filed.filing_id)
    assert len(court.filings()) == 1


def test_a_court_outage_when_the_account_paid_withdraws_the_filing_once_the_gateway_is_back(
    court_db: Engine, tmp_path: Path, court: Any
) -> None:
    """Paid in full while the filing is under review, and the gateway down when the run asks to
    withdraw it: the run waits (a failed run is never restarted for an account out of legal
    referral, and the suit would go on against a borrower who paid), then withdraws it."""
    from integrations.retries import testing
    from tasks.legal import open_referral, request_dismissal, submit_filing
    from tasks.providers import court_session

    _in_legal(court_db, tmp_path, "A-O2")
    with court_session(), testing():
        state = open_referral.fn("A-O2", at("2026-12-23T17:00:00Z"))
        filed = submit_filing.fn(state.referral_id, at("2026-12-23T17:00:00Z"))
        pay(court_db, tmp_path, "A-O2", "18450.00", "2026-12-27T15:00:00Z")
        day(court_db, "2026-12-27T16:00:00Z")
        assert account(court_db, "A-O2").stage == "paid_off"
        court.set_faults(operation="CancelFiling", http_503=50, retry_after=0)
        waiting = request_dismissal.fn(state.referral_id, at("2026-12-27T17:00:00Z"))
        assert waiting.status == "submitted"
        court.set_faults()
        done = request_dismissal.fn(state.referral_id, at("2026-12-28T17:00:00Z"))
    assert done.status == "dismissed"
    assert [f["status"] for f in court.filings() if f["filingId"] == filed.filing_id] == ["cancelled"]


def test_a_filing_whose_run_died_is_still_withdrawn_once_the_account_paid(
    court_db: Engine, tmp_path: Path, court: Any
) -> None:
    """The run following a filing died (a worker killed) and the account paid before the next cycle
    could restart it: the filing is still before the court, so the cycle's work list keeps the
    referral and a new run opens it and withdraws the filing, rather than leaving the suit to run
    on against a borrower who paid because the account is out of legal referral."""
    from tasks.legal import open_referral, referral_work, request_dismissal, submit_filing
    from tasks.providers import court_session

    _in_legal(court_db, tmp_path, "A-D1")
    with court_session():
        state = open_referral.fn("A-D1", at("2026-12-23T17:00:00Z"))
        filed = submit_filing.fn(state.referral_id, at("2026-12-23T17:00:00Z"))
        pay(court_db, tmp_path, "A-D1", "18450.00", "2026-12-27T15:00:00Z")
        day(court_db, "2026-12-27T16:00:00Z")
        assert account(court_db, "A-D1").stage == "paid_off"
        assert [w[2:] for w in referral_work.fn() if w[0] == "A-D1"] == [(state.referral_id, "submitted")]
        reopened = open_referral.fn("A-D1", at("2026-12-28T17:00:00Z"))
        assert reopened is not None and reopened.referral_id == state.referral_id and reopened.paid
        assert request_dismissal.fn(state.referral_id, at("2026-12-28T17:00:00Z")).status == "dismissed"
        assert [w for w in referral_work.fn() if w[0] == "A-D1"] == []
        assert open_referral.fn("A-D1", at("2026-12-29T17:00:00Z")) is None
    assert [f["status"] for f in court.filings() if f["filingId"] == filed.filing_id] == ["cancelled"]


# -- the legal team's queue ------------------------------------------------------------------------


def test_a_withdrawal_left_to_counsel_waits_in_the_legal_teams_queue(
    court_db: Engine, tmp_path: Path, court: Any, db_url: str
) -> None:
    """Paid after the court accepted the filing: the gateway cannot withdraw it any more, so counsel
    must file the dismissal; `arrears review list` shows it waiting for the legal team (the
    account, paid off, is out of legal referral), or the suit goes on against a borrower who paid."""
    from typer.testing import CliRunner

    from deployments.cli import app
    from tasks.legal import open_referral, request_dismissal, submit_filing
    from tasks.providers import court_session

    _in_legal(court_db, tmp_path, "A-Q1")
    with court_session():
        state = open_referral.fn("A-Q1", at("2026-12-23T17:00:00Z"))
        filed = submit_filing.fn(state.referral_id, at("2026-12-23T17:00:00Z"))
        court.advance(filed.filing_id, "accepted")
        from tasks.legal import poll_filing

        assert poll_filing.fn(state.referral_id, at("2026-12-24T17:00:00Z")).status == "accepted"
        pay(court_db, tmp_path, "A-Q1", "18450.00", "2026-12-27T15:00:00Z")
        day(court_db, "2026-12-27T16:00:00Z")
        assert request_dismissal.fn(state.referral_id, at("2026-12-27T17:00:00Z")).status == "dismissing"
    listed = CliRunner().invoke(app, ["review", "list", "--json", "--database", db_url])
    assert [(w["what"], w["waits_for"]) for w in json.loads(listed.stdout) if w["account_id"] == "A-Q1"] == [
        ("referral", "legal team")
    ]


# -- China: the payment order ----------------------------------------------------------------------


def test_a_payment_order_is_applied_for_by_an_applicant_against_a_respondent() -> None:
    """A 支付令 is an application (Civil Procedure Law ch. 17): its parties are the applicant
    (申请人) and the respondent (被申请人), not a plaintiff and a defendant of a suit."""
    from tasks.legal import envelope_of

    envelope = envelope_of(
        draft_filing(facts(jurisdiction="CN", currency="CNY", sale_proceeds="0", fees="0"))
    )
    assert envelope.case_type == "payment_order"
    assert [p.role for p in envelope.parties] == ["applicant", "respondent"]
    us = envelope_of(draft_filing(facts()))
    assert [p.role for p in us.parties] == ["plaintiff", "defendant"]
