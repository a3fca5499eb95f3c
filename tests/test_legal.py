"""Legal referral: the filing built from stored facts, submitted through the sandbox court once,
followed by polling to judgment, rejected filings back to the legal team, dismissal once paid."""

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, update

from arrears.review import NothingToClaim, ReferralFacts, claim_amount, draft_filing, notices_from
from tests.later_stage_helpers import (
    account,
    account_t,
    at,
    day,
    events,
    import_rows,
    in_thread,
    pay,
    referral_t,
    rows,
    us_account,
    wait_paused,
)


def facts(**kw: Any) -> ReferralFacts:
    base = ReferralFacts(
        referral_id=7,
        account_id="A-1",
        lender="Arrears Auto Finance",
        borrower_name="Dana Whitfield",
        jurisdiction="US-IA",
        currency="USD",
        balance=Decimal("18450.00"),
        fees=Decimal("650.00"),
        sale_proceeds=Decimal("9800.00"),
        past_due=Decimal("825.00"),
        oldest_due_date=date(2026, 10, 1),
        days_past_due=83,
        vin="1HGCM82633A004352",
        military=False,
        decided_by="Ana Ruiz",
        decision_reason="refuses to surrender",
        opened_on=date(2026, 12, 23),
        notices=notices_from([("cure_notice", at("2026-12-01T17:00:00Z"), "right-to-cure notice: 20 days")]),
    )
    return ReferralFacts.from_json(base.to_json() | kw) if kw else base


# -- the filing --------------------------------------------------------------------------------------


def test_claim_is_balance_plus_fees_less_sale_proceeds() -> None:
    """A deficiency claims what the sale left unpaid; a sale that covered everything leaves nothing to
    claim."""
    assert claim_amount(Decimal("18450.00"), Decimal("650.00"), Decimal("9800.00")) == Decimal("9300.00")
    with pytest.raises(NothingToClaim):
        claim_amount(Decimal("5000.00"), Decimal("0"), Decimal("5000.00"))


def test_us_filing_refers_to_contract_default_notices_and_carries_the_scra_affidavit() -> None:
    """An Iowa deficiency goes to the venue's court with the claim calculation, the contract, the
    default, the notices and the military-status affidavit."""
    draft = draft_filing(facts())
    assert (draft.court, draft.case_type, draft.claim, draft.military_affidavit) == (
        "US-IA-POLK",
        "deficiency",
        Decimal("9300.00"),
        True,
    )
    kinds = [d.kind for d in draft.documents]
    assert kinds == [
        "complaint",
        "contract",
        "default",
        "deficiency_calculation",
        "notices",
        "military_affidavit",
    ]
    texts = {d.kind: d.text for d in draft.documents}
    assert "Deficiency claimed: USD 9300.00" in texts["deficiency_calculation"]
    assert "right-to-cure notice" in texts["notices"]
    assert "is not, to the plaintiff's knowledge" in texts["military_affidavit"]
    assert (
        "IS in military service"
        in {d.kind: d.text for d in draft_filing(facts(military=True)).documents}["military_affidavit"]
    )


def test_china_files_a_payment_order_without_an_scra_affidavit() -> None:
    """In China the referral is a payment order (支付令) at the venue's court; SCRA does not apply."""
    draft = draft_filing(facts(jurisdiction="CN", currency="CNY", sale_proceeds="0", fees="0"))
    assert (draft.court, draft.case_type, draft.military_affidavit) == ("CN-SH-PD", "payment_order", False)
    assert "military_affidavit" not in [d.kind for d in draft.documents]


def test_the_same_facts_always_draft_the_same_documents() -> None:
    """Drafts come from stored facts only, so a resubmission under the same key carries the same content."""
    first, second = draft_filing(facts()), draft_filing(ReferralFacts.from_json(facts().to_json()))
    assert first.summary() == second.summary()
    assert first.idempotency_key == "referral-7"


# -- through the sandbox court ---------------------------------------------------------------------


def _in_legal(engine: Engine, tmp_path: Path, account_id: str, **kw: str) -> None:
    import_rows(
        engine,
        tmp_path,
        [us_account(account_id, past_due_amount="825.00", oldest_due_date="2026-10-01", **kw)],
    )
    with engine.begin() as c:
        c.execute(
            update(account_t)
            .where(account_t.c.account_id == account_id)
            .values(
                stage="legal_referral", stage_since=at("2026-12-23T16:00:00Z"), episode=4, days_past_due=83
            )
        )


def _filings(court: Any) -> list[dict[str, Any]]:
    return court.filings()


def test_submission_happens_once_however_often_the_step_runs(
    court_db: Engine, tmp_path: Path, court: Any
) -> None:
    """Opening and submitting twice leaves one referral, one filing at the court and one draft on record."""
    from arrears.storage.installation import stored_installation_id
    from tasks.legal import open_referral, submit_filing
    from tasks.providers import court_session

    _in_legal(court_db, tmp_path, "A-L1")
    with court_session():
        state = open_referral.fn("A-L1", at("2026-12-23T17:00:00Z"))
        assert state is not None and (state.status, state.claim_amount) == ("draft", Decimal("18450.00"))
        assert open_referral.fn("A-L1", at("2026-12-24T17:00:00Z")).referral_id == state.referral_id
        first = submit_filing.fn(state.referral_id, at("2026-12-23T17:00:00Z"))
        second = submit_filing.fn(state.referral_id, at("2026-12-24T17:00:00Z"))
    assert first.filing_id and first.filing_id == second.filing_id and first.status == "submitted"
    [filing] = _filings(court)
    with court_db.connect() as c:
        assert filing["idempotencyKey"] == f"{stored_installation_id(c)}-referral-{state.referral_id}"
    assert len([e for e in events(court_db, "A-L1", "filing") if e.data["action"] == "drafted"]) == 1


def test_a_referral_with_no_court_to_file_in_goes_back_to_the_legal_team(
    court_db: Engine, tmp_path: Path, court: Any
) -> None:
    """A referral in a jurisdiction the venue table has no court for (the plain US profile) is
    refused at once, back to the legal team with the reason, not retried for minutes and failed
    run after run."""
    from tasks.legal import open_referral, submit_filing
    from tasks.providers import court_session

    _in_legal(court_db, tmp_path, "A-L8", jurisdiction="US", timezone="America/New_York")
    with court_session():
        state = open_referral.fn("A-L8", at("2026-12-23T17:00:00Z"))
        done = submit_filing.fn(state.referral_id, at("2026-12-23T17:00:00Z"))
    assert (done.status, done.filing_id, _filings(court)) == ("rejected", None, [])
    [refused] = events(court_db, "A-L8", "court")
    assert "no court is configured for US" in refused.data["reason"]


def test_an_irish_referral_is_filed_at_the_irish_court_without_an_scra_affidavit(
    court_db: Engine, tmp_path: Path, court: Any
) -> None:
    """Every IE repossess decision becomes a referral for a court order (protected goods, CCA 1995
    ss.63-64): the venue table has a court for it, and the gateway takes the filing, a claim with
    no SCRA affidavit (a US law)."""
    from tasks.legal import open_referral, submit_filing
    from tasks.providers import court_session

    where = {"timezone": "Europe/Dublin", "phone": "+353 85 123 4567", "currency": "EUR"}
    _in_legal(court_db, tmp_path, "A-L9", jurisdiction="IE", **where)
    with court_session():
        state = open_referral.fn("A-L9", at("2026-12-23T17:00:00Z"))
        done = submit_filing.fn(state.referral_id, at("2026-12-23T17:00:00Z"))
    assert done.status == "submitted" and done.filing_id
    [filing] = _filings(court)
    assert (filing["court"], filing["caseType"]) == ("IE-CC-DUB", "deficiency")
    message = filing["message"]
    assert not message.get("militaryStatusAffidavit")
    assert "military_affidavit" not in [d["kind"] for d in message["documents"]]


def test_two_databases_filing_through_one_gateway_never_share_a_filing(
    court_db: Engine, tmp_path: Path, court: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The filing's key carries the installation id (DESIGN §3): a second database (a staging copy,
    another lender's book) whose referral 1 is the same account's files a case of its own, and
    never takes the first database's filing for its own (to withdraw it when its copy pays)."""
    from arrears.settings import get_settings
    from arrears.storage import get_engine, migrate
    from tasks.legal import open_referral, submit_filing
    from tasks.providers import court_session

    filed = []
    for n in (1, 2):
        if n == 2:
            other = f"sqlite:///{tmp_path / 'other.db'}"
            migrate(get_engine(other))
            monkeypatch.setenv("ARREARS_DATABASE_URL", other)
            get_settings.cache_clear()
        _in_legal(get_engine(get_settings().database_url), tmp_path, "A-L7")
        with court_session():
            state = open_referral.fn("A-L7", at("2026-12-23T17:00:00Z"))
            filed.append(submit_filing.fn(state.referral_id, at("2026-12-23T17:00:00Z")).filing_id)
    assert filed[0] != filed[1] and len(_filings(court)) == 2


def test_paid_after_a_submission_whose_answer_was_lost_is_left_to_counsel(
    court_db: Engine, tmp_path: Path, court: Any
) -> None:
    """Killed after the filing went to the gateway and before its id was stored, then paid: the
    filing may be before the court, so the referral is not simply called withdrawn; it waits for
    counsel (`dismissing`) with the key the filing went under."""
    from arrears.review import draft_filing
    from arrears.storage import referrals
    from tasks.legal import envelope_of, open_referral, request_dismissal
    from tasks.providers import court_session, current_court

    _in_legal(court_db, tmp_path, "A-L9")
    with court_session():
        state = open_referral.fn("A-L9", at("2026-12-23T17:00:00Z"))
        with court_db.begin() as c:  # what submit_filing does before it asks the gateway
            draft = draft_filing(referrals.referral_facts(c, state.referral_id))
            referrals.record_filing_draft(
                c, referral_id=state.referral_id, summary=draft.summary(), at=state.opened_at
            )
        current_court().submit(envelope_of(draft))  # the answer lost: no filing id stored
        pay(court_db, tmp_path, "A-L9", "18450.00", "2026-12-27T15:00:00Z")
        day(court_db, "2026-12-27T16:00:00Z")
        done = request_dismissal.fn(state.referral_id, at("2026-12-27T17:00:00Z"))
    assert done.status == "dismissing"
    detail = events(court_db, "A-L9", "filing")[-1].detail
    assert draft.idempotency_key in detail
    assert detail.endswith("balance USD 0.00"), detail  # at the currency's precision, not storage's four


@pytest.mark.usefixtures("prefect_harness")
def test_referral_run_follows_the_filing_to_judgment_and_the_account_closes(
    court_db: Engine, tmp_path: Path, court: Any
) -> None:
    """The run files, waits, polls the court when woken, ends at judgment; the lifecycle closes the
    account."""
    from flows.legal_referral import legal_referral, start_referrals

    _in_legal(court_db, tmp_path, "A-L2")
    running = in_thread(legal_referral, "A-L2", "2026-12-23T17:00:00Z")
    [referral] = _wait_referral(court_db, "A-L2")
    run_id = _run_of(court_db, "A-L2")
    wait_paused(run_id, "court-wait-1")
    court.advance(referral.filing_id, "judgment")
    assert start_referrals(at("2027-01-20T17:00:00Z"), "2027-01-20T17:00:00Z")["referral_runs_woken"] == 1
    result = running.result(timeout=60)
    assert result["status"] == "judgment"
    day(court_db, "2027-01-21T16:00:00Z")
    assert account(court_db, "A-L2").stage == "closed"
    assert events(court_db, "A-L2", "transition")[-1].detail == "legal_referral → closed: judgment entered"


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_waiting_on_the_court_ends_when_a_callback_ends_its_case(
    court_db: Engine, tmp_path: Path, court: Any
) -> None:
    """The judgment arrives by the court's callback (the webhook records it on the referral) while
    the run waits: the next cycle wakes the run, which ends with the case. It was left paused for
    good: only runs of referrals still open were woken."""
    from arrears.storage.court_statuses import record_court_status
    from flows.legal_referral import legal_referral, start_referrals

    _in_legal(court_db, tmp_path, "A-L7")
    running = in_thread(legal_referral, "A-L7", "2026-12-23T17:00:00Z")
    [referral] = _wait_referral(court_db, "A-L7")
    wait_paused(_run_of(court_db, "A-L7"), "court-wait-1")
    with court_db.begin() as c:
        recorded = record_court_status(
            c,
            filing_id=referral.filing_id,
            status="judgment",
            at=at("2027-01-19T17:00:00Z"),
            provider="court",
            callback_id="judgment-A-L7",
        )
    assert recorded.changed, recorded
    assert start_referrals(at("2027-01-20T17:00:00Z"), "2027-01-20T17:00:00Z")["referral_runs_woken"] == 1
    assert running.result(timeout=60)["status"] == "judgment"


@pytest.mark.usefixtures("prefect_harness")
def test_rejected_filing_goes_back_to_the_legal_team_with_the_courts_reason(
    court_db: Engine, tmp_path: Path, court: Any, db_url: str
) -> None:
    """A filing the court rejects ends the run and waits in `arrears review list` for the legal team, with the
    reason."""
    from typer.testing import CliRunner

    from deployments.cli import app
    from flows.legal_referral import legal_referral, start_referrals

    _in_legal(court_db, tmp_path, "A-L3")
    running = in_thread(legal_referral, "A-L3", "2026-12-23T17:00:00Z")
    [referral] = _wait_referral(court_db, "A-L3")
    wait_paused(_run_of(court_db, "A-L3"), "court-wait-1")
    court.advance(referral.filing_id, "rejected", reason="notice of sale lacks proof of mailing")
    start_referrals(at("2026-12-28T17:00:00Z"), "2026-12-28T17:00:00Z")
    assert running.result(timeout=60)["queue"] == "legal team"
    listed = CliRunner().invoke(app, ["review", "list", "--json", "--database", db_url])
    [waiting] = [w for w in json.loads(listed.stdout) if w["account_id"] == "A-L3"]
    assert (waiting["what"], waiting["waits_for"]) == ("referral", "legal team")
    assert waiting["detail"] == "filing rejected: notice of sale lacks proof of mailing"


@pytest.mark.usefixtures("prefect_harness")
def test_paid_account_withdraws_the_filing(court_db: Engine, tmp_path: Path, court: Any) -> None:
    """Paid in full while the court still reviews the filing: the run withdraws it at the gateway and ends."""
    from flows.legal_referral import legal_referral, start_referrals

    _in_legal(court_db, tmp_path, "A-L4")
    running = in_thread(legal_referral, "A-L4", "2026-12-23T17:00:00Z")
    [referral] = _wait_referral(court_db, "A-L4")
    wait_paused(_run_of(court_db, "A-L4"), "court-wait-1")
    pay(court_db, tmp_path, "A-L4", "18450.00", "2026-12-27T15:00:00Z")
    day(court_db, "2026-12-27T16:00:00Z")
    assert account(court_db, "A-L4").stage == "paid_off"
    start_referrals(at("2026-12-27T17:00:00Z"), "2026-12-27T17:00:00Z")
    assert running.result(timeout=60)["status"] == "dismissed"
    assert [f["status"] for f in _filings(court) if f["filingId"] == referral.filing_id] == ["cancelled"]
    assert events(court_db, "A-L4", "filing")[-1].detail.startswith(
        f"filing {referral.filing_id} withdrawn at the court"
    )


def _wait_referral(engine: Engine, account_id: str, timeout: float = 60) -> list[Any]:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in rows(engine, referral_t, account_id) if r.filing_id]
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{account_id} was never filed")


def _run_of(engine: Engine, account_id: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    # Asked of the server by name: unfiltered, the API gives 200 of the session's runs, which
    # after the suite's other tests may not hold this one.
    named = FlowRunFilter(name=FlowRunFilterName(any_=[f"referral {account_id}"]))
    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_flow_runs(flow_run_filter=named) if not r.state.is_final()]
    assert runs, f"no referral run for {account_id}"
    return max(runs, key=lambda r: r.created).id


@pytest.mark.usefixtures("prefect_harness")
def test_a_bankruptcy_holds_the_filing_back_until_it_is_lifted(
    court_db: Engine, tmp_path: Path, court: Any, db_url: str
) -> None:
    """A bankruptcy placed while the account sits in legal referral (the automatic stay, 11 U.S.C.
    362): the run files nothing, says so once however often it is woken, and files once an agent
    lifts the hold (the case was dismissed). A bankruptcy placed again after the filing is put on
    record for counsel, once, while the case is still followed to judgment."""
    from typer.testing import CliRunner

    from deployments.cli import app
    from flows.legal_referral import legal_referral, start_referrals

    def hold(verb: str) -> None:
        given = ["--reason", "chapter 7 petition", "--agent", "ann", "--database", db_url]
        done = CliRunner().invoke(app, ["hold", verb, "A-L5", "bankruptcy", *given])
        assert done.exit_code == 0, done.output

    def held() -> list[Any]:
        return [e for e in events(court_db, "A-L5", "filing") if e.data.get("action") == "held"]

    _in_legal(court_db, tmp_path, "A-L5")
    hold("place")
    running = in_thread(legal_referral, "A-L5", "2026-12-23T17:00:00Z")
    run_id = _run_of_when(court_db, "A-L5", lambda: bool(held()))
    wait_paused(run_id, "court-wait-1")
    start_referrals(at("2026-12-24T17:00:00Z"), "2026-12-24T17:00:00Z")
    wait_paused(run_id, "court-wait-2")
    assert _filings(court) == []
    [first] = held()
    assert first.detail == "filing held back: hold:bankruptcy; it is submitted once the hold is lifted"

    hold("lift")
    start_referrals(at("2026-12-28T17:00:00Z"), "2026-12-28T17:00:00Z")
    [referral] = _wait_referral(court_db, "A-L5")
    wait_paused(run_id, "court-wait-3")
    assert [f["filingId"] for f in _filings(court)] == [referral.filing_id]

    hold("place")
    for wait, day_ in ((4, "2027-01-04"), (5, "2027-01-05")):
        start_referrals(at(f"{day_}T17:00:00Z"), f"{day_}T17:00:00Z")
        wait_paused(run_id, f"court-wait-{wait}")
    stayed = f"filing {referral.filing_id} is before the court under hold:bankruptcy"
    assert [e.detail for e in held()][1:] == [f"{stayed}: counsel must tell the court (stay)"]
    court.advance(referral.filing_id, "judgment")
    start_referrals(at("2027-01-20T17:00:00Z"), "2027-01-20T17:00:00Z")
    assert running.result(timeout=60)["status"] == "judgment"


def _run_of_when(engine: Engine, account_id: str, ready: Any, timeout: float = 60) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return _run_of(engine, account_id)
        time.sleep(0.2)
    raise AssertionError(f"{account_id}: the referral run never got there")


@pytest.mark.usefixtures("prefect_harness")
def test_cured_account_withdraws_the_filing(court_db: Engine, tmp_path: Path, court: Any) -> None:
    """Past due cleared (reinstated, the balance still owed) while the court reviews the filing:
    the account leaves legal referral as cured, so the run withdraws the filing and ends."""
    from flows.legal_referral import legal_referral, start_referrals

    _in_legal(court_db, tmp_path, "A-L6")
    running = in_thread(legal_referral, "A-L6", "2026-12-23T17:00:00Z")
    [referral] = _wait_referral(court_db, "A-L6")
    wait_paused(_run_of(court_db, "A-L6"), "court-wait-1")
    pay(court_db, tmp_path, "A-L6", "825.00", "2026-12-27T15:00:00Z")
    day(court_db, "2026-12-27T16:00:00Z")
    assert account(court_db, "A-L6").stage == "cured"
    start_referrals(at("2026-12-27T17:00:00Z"), "2026-12-27T17:00:00Z")
    assert running.result(timeout=60)["status"] == "dismissed"
    assert [f["status"] for f in _filings(court) if f["filingId"] == referral.filing_id] == ["cancelled"]
