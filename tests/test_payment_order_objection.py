"""A payment order (支付令) objected to, or taking effect, under China's 督促程序: the sandbox court
reports either, the ECF client reads them, and the referral goes to the legal team (an objection:
counsel decides whether to sue) or ends as a judgment (an order that took effect: enforceable)."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.later_stage_helpers import account, at, day, events, in_thread, pay, wait_paused
from tests.test_legal import _in_legal, _run_of, _wait_referral

OBJECTION = "被申请人在法定期间提出书面异议：对欠款金额有异议"  # the court's notice of the objection
_CN = {
    "jurisdiction": "CN",
    "timezone": "Asia/Shanghai",
    "currency": "CNY",
    "phone": "13800138000",
    "address_line1": "世纪大道100号",
    "city": "上海市",
    "state": "上海",
    "postal_code": "200120",
}


@pytest.fixture
def provider(court: Any) -> Iterator[Any]:
    from integrations.providers import build_provider

    with build_provider("court", "sandbox", court.base_url, court.credentials) as p:
        yield p


def _payment_order(key: str, court_code: str = "CN-SH-PD") -> Any:
    from integrations.court.contract import make_payment_order

    return make_payment_order(key, court=court_code)


def _suit(key: str) -> Any:
    from integrations.court.contract import make_envelope

    return make_envelope(key)


def _filed_cn(engine: Engine, tmp_path: Path, account_id: str) -> Any:
    """A CN account in legal referral whose payment order is filed at the sandbox court."""
    from tasks.legal import open_referral, submit_filing
    from tasks.providers import court_session

    _in_legal(engine, tmp_path, account_id, **_CN)
    with court_session():
        state = open_referral.fn(account_id, at("2026-12-23T09:00:00Z"))
        filed = submit_filing.fn(state.referral_id, at("2026-12-23T09:00:00Z"))
    assert filed.filing_id and filed.status == "submitted"
    return filed


def _poll(referral_id: int, when: str) -> Any:
    from tasks.legal import poll_filing
    from tasks.providers import court_session

    with court_session():
        return poll_filing.fn(referral_id, at(when))


def _listed(db_url: str, account_id: str) -> list[dict[str, Any]]:
    from typer.testing import CliRunner

    from deployments.cli import app

    listed = CliRunner().invoke(app, ["review", "list", "--json", "--database", db_url])
    assert listed.exit_code == 0, listed.output
    return [w for w in json.loads(listed.stdout) if w["account_id"] == account_id]


# -- the sandbox court and the ECF client ----------------------------------------------------------


def test_only_a_served_payment_order_is_objected_to(provider: Any, court: Any) -> None:
    """An objection follows service of a payment order: a deficiency suit cannot be objected to,
    a payment order reaches `objected` through `served`, and nothing follows it, not even the
    order taking effect."""
    import httpx

    suit = provider.submit(_suit("po-s"))
    with pytest.raises(httpx.HTTPStatusError) as refused:
        court.advance(suit.filing_id, "objected")
    assert refused.value.response.status_code == 409 and "payment order" in refused.value.response.text
    order = provider.submit(_payment_order("po-1"))
    moved = court.advance(order.filing_id, "objected", reason=OBJECTION)
    assert [e["caseStatus"] for e in moved["events"]][-2:] == [None, "objection-filed"]
    assert [e["serviceStatus"] for e in moved["events"]][-2:] == ["delivered", "delivered"]
    status = provider.status(order.filing_id)
    assert (status.status, status.reason, status.terminal) == ("objected", OBJECTION, True)
    assert status.vendor_status == "accepted/delivered/objection-filed"
    with pytest.raises(httpx.HTTPStatusError) as after:
        court.advance(order.filing_id, "judgment")
    assert after.value.response.status_code == 409


def test_a_payment_order_takes_effect_in_its_own_words_and_reads_as_judgment(
    provider: Any, court: Any
) -> None:
    """A payment order neither paid nor objected to takes effect (支付令生效): the gateway says
    `order-effective`, not a judgment entered, and the client reads it as `judgment`; a suit's
    judgment keeps its words."""
    order = provider.submit(_payment_order("po-2"))
    court.advance(order.filing_id, "judgment")
    effective = provider.status(order.filing_id)
    assert (effective.status, effective.vendor_status) == ("judgment", "accepted/delivered/order-effective")
    suit = provider.submit(_suit("po-3"))
    court.advance(suit.filing_id, "judgment")
    assert provider.status(suit.filing_id).vendor_status == "accepted/delivered/judgment-entered"


def test_the_object_courts_rule_objects_to_payment_orders_when_they_would_take_effect(
    provider: Any, court: Any
) -> None:
    """Over time, payment orders at a court `object_courts` names are objected to (dated when the
    order would have taken effect, with the rule's reason); elsewhere they take effect."""
    court.set_rules(
        review_after_seconds=0,
        accept_after_seconds=0,
        serve_after_seconds=0,
        judgment_after_seconds=0,
        object_courts="^CN-SH-",
        objection_reason=OBJECTION,
    )
    objected = provider.submit(_payment_order("po-4", "CN-SH-PD"))
    effective = provider.submit(_payment_order("po-5", "CN-BJ-CY"))
    status = provider.status(objected.filing_id)
    assert (status.status, status.reason, status.at) == ("objected", OBJECTION, objected.submitted_at)
    assert provider.status(effective.filing_id).status == "judgment"


def test_the_object_courts_rule_must_be_a_regular_expression(court: Any) -> None:
    """A rule that is no regular expression is refused (422), not left to fail each status lookup."""
    import httpx

    with pytest.raises(httpx.HTTPStatusError) as refused:
        court.set_rules(object_courts="CN-(")
    assert refused.value.response.status_code == 422 and "object_courts" in refused.value.response.text


def test_a_case_word_the_client_does_not_know_is_unreadable_not_served(provider: Any, court: Any) -> None:
    """A gateway's own word for an objection (or anything else) that the client does not know is
    refused, and comes back from a callback as an unreadable event kept for operators: read as
    `served`, the referral would wait for a judgment that never comes."""
    from integrations.callbacks import UnreadableItem
    from integrations.court._wire import status_from_wire

    with pytest.raises(ValueError, match="caseStatus"):
        status_from_wire("accepted", "delivered", "支付令失效")
    order = provider.submit(_payment_order("po-6"))
    court.advance(order.filing_id, "served")
    odd = {
        "filingId": order.filing_id,
        "reviewStatus": "accepted",
        "serviceStatus": "delivered",
        "caseStatus": "支付令失效",
        "statusAt": datetime.now(UTC).isoformat(),
    }
    headers, body = court.signed_callback(order.filing_id, raw_events=[odd])
    read = provider.parse_callback(headers, body)
    assert [getattr(s, "status", None) for s in read] == ["served", None]
    assert isinstance(read[1], UnreadableItem) and "支付令失效" in read[1].reason


# -- the referral ----------------------------------------------------------------------------------


def test_an_objection_polled_goes_to_the_legal_team_with_the_courts_reason(
    court_db: Engine, tmp_path: Path, court: Any, db_url: str
) -> None:
    """The respondent objects to the served payment order: the poll records `objected` once (the
    court's reason and own words on the timeline), the account stays in legal referral, and
    `arrears review list` shows the referral waiting for the legal team, who decide whether to sue."""
    filed = _filed_cn(court_db, tmp_path, "A-PO1")
    court.advance(filed.filing_id, "served")
    assert _poll(filed.referral_id, "2027-01-05T09:00:00Z").status == "served"
    court.advance(filed.filing_id, "objected", reason=OBJECTION)
    for when in ("2027-01-15T09:00:00Z", "2027-01-16T09:00:00Z"):
        assert _poll(filed.referral_id, when).status == "objected"
    [objection] = [e for e in events(court_db, "A-PO1", "court") if e.data["to"] == "objected"]
    assert (objection.data["from"], objection.data["reason"]) == ("served", OBJECTION)
    assert objection.data["vendor_status"] == "accepted/delivered/objection-filed"
    assert "支付令失效" in objection.detail and "legal team decides whether to sue" in objection.detail
    day(court_db, "2027-01-16T16:00:00Z")
    assert account(court_db, "A-PO1").stage == "legal_referral"
    [waiting] = _listed(db_url, "A-PO1")
    assert (waiting["what"], waiting["waits_for"]) == ("referral", "legal team")
    assert waiting["detail"].startswith(f"payment order objected to: {OBJECTION}; decide whether to sue")


def test_an_objection_after_the_account_paid_stays_before_the_legal_team(
    court_db: Engine, tmp_path: Path, court: Any, db_url: str
) -> None:
    """Objected to, then paid off: after an objection the court takes the case to litigation unless
    the applicant says no, so the referral stays in the legal team's queue, saying so, though the
    account has left legal referral."""
    filed = _filed_cn(court_db, tmp_path, "A-PO2")
    court.advance(filed.filing_id, "objected", reason=OBJECTION)
    assert _poll(filed.referral_id, "2027-01-15T09:00:00Z").status == "objected"
    pay(court_db, tmp_path, "A-PO2", "18450.00", "2027-01-18T03:00:00Z")
    day(court_db, "2027-01-18T16:00:00Z")
    assert account(court_db, "A-PO2").stage == "paid_off"
    [waiting] = _listed(db_url, "A-PO2")
    assert waiting["waits_for"] == "legal team"
    assert waiting["detail"].endswith(
        "account paid_off: tell the court the applicant does not agree to litigation"
    )


def test_a_payment_order_that_took_effect_ends_as_a_judgment_and_closes_the_account(
    court_db: Engine, tmp_path: Path, court: Any, db_url: str
) -> None:
    """Fifteen days after service with no objection the order takes effect: the referral ends as
    `judgment` (the court's `order-effective` on the timeline), nothing waits for anyone, and
    the lifecycle closes the account as for a judgment."""
    filed = _filed_cn(court_db, tmp_path, "A-PO3")
    court.advance(filed.filing_id, "judgment")
    assert _poll(filed.referral_id, "2027-01-20T09:00:00Z").status == "judgment"
    [effective] = [e for e in events(court_db, "A-PO3", "court") if e.data["to"] == "judgment"]
    assert effective.data["vendor_status"] == "accepted/delivered/order-effective"
    assert _listed(db_url, "A-PO3") == []
    day(court_db, "2027-01-21T16:00:00Z")
    assert account(court_db, "A-PO3").stage == "closed"


def test_an_objection_by_callback_sends_the_referral_to_the_legal_team(
    court_db: Engine, tmp_path: Path, court: Any, provider: Any, db_url: str
) -> None:
    """The court's callback of the objection, stored as the webhook stores it, moves the referral
    to `objected` with the court's reason: it waits for the legal team."""
    from deployments.callback_spool import Received, store_received

    filed = _filed_cn(court_db, tmp_path, "A-PO4")
    court.advance(filed.filing_id, "objected", reason=OBJECTION)
    headers, body = court.signed_callback(filed.filing_id)
    items = provider.parse_callback(headers, body)
    received = Received.of("court", "sandbox", "status", "sandbox", datetime.now(UTC), body, items)
    store_received(court_db, received, lambda account_id, reason: None)
    [objection] = [e for e in events(court_db, "A-PO4", "court") if e.data["to"] == "objected"]
    assert objection.data["reason"] == OBJECTION
    [waiting] = _listed(db_url, "A-PO4")
    assert waiting["waits_for"] == "legal team" and OBJECTION in waiting["detail"]


def test_an_objection_by_callback_keeps_the_courts_own_words(
    court_db: Engine, tmp_path: Path, court: Any, provider: Any
) -> None:
    """A status stored from a callback carries the court's words on the timeline, as a polled one."""
    from deployments.callback_spool import Received, store_received

    filed = _filed_cn(court_db, tmp_path, "A-PO5")
    court.advance(filed.filing_id, "objected", reason=OBJECTION)
    headers, body = court.signed_callback(filed.filing_id)
    items = provider.parse_callback(headers, body)
    received = Received.of("court", "sandbox", "status", "sandbox", datetime.now(UTC), body, items)
    store_received(court_db, received, lambda account_id, reason: None)
    [objection] = [e for e in events(court_db, "A-PO5", "court") if e.data["to"] == "objected"]
    assert objection.data.get("vendor_status") == "accepted/delivered/objection-filed"


@pytest.mark.usefixtures("prefect_harness")
def test_the_referral_run_ends_with_the_objection_in_the_legal_teams_queue(
    court_db: Engine, tmp_path: Path, court: Any, db_url: str
) -> None:
    """The run files the payment order, waits, and when woken after the objection ends, handing the
    referral to the legal team (it waited for a judgment that never came)."""
    from flows.legal_referral import legal_referral, start_referrals

    _in_legal(court_db, tmp_path, "A-PO6", **_CN)
    running = in_thread(legal_referral, "A-PO6", "2026-12-23T09:00:00Z")
    [referral] = _wait_referral(court_db, "A-PO6")
    wait_paused(_run_of(court_db, "A-PO6"), "court-wait-1")
    court.advance(referral.filing_id, "objected", reason=OBJECTION)
    start_referrals(at("2027-01-15T09:00:00Z"), "2027-01-15T09:00:00Z")
    result = running.result(timeout=60)
    assert (result["status"], result["queue"]) == ("objected", "legal team")
    [waiting] = _listed(db_url, "A-PO6")
    assert (waiting["what"], waiting["waits_for"]) == ("referral", "legal team")
