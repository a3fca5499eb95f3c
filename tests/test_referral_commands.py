"""`arrears referral close` and `arrears referral refile`: the legal team acts on the referrals
`arrears review list` shows waiting for them (a rejected filing, a payment order objected to, a
dismissal to file), audited as theirs; each decision taken once; the account's lifecycle follows
(no suit: charged off by the policy; a suit off-system: kept in legal referral until its judgment)."""

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from arrears.lifecycle import NOT_SUING, Facts, advance
from arrears.policy import DEFAULT_POLICY
from arrears.vocabulary import Exit, Stage
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
from tests.test_legal import _in_legal, _run_of, _wait_referral
from tests.test_payment_order_objection import OBJECTION, _filed_cn, _listed, _poll


def _cli(db_url: str, *args: str) -> Any:
    from typer.testing import CliRunner

    from deployments.cli import app

    return CliRunner().invoke(app, [*args, "--database", db_url])


def _close(
    db_url: str, account_id: str, outcome: str, *extra: str, when: str = "2027-01-20T09:00:00Z"
) -> Any:
    return _cli(
        db_url,
        "referral",
        "close",
        account_id,
        "--outcome",
        outcome,
        "--by",
        "Mei Chen",
        "--reason",
        "counsel's advice",
        "--as-of",
        when,
        *extra,
    )


def _refile(db_url: str, account_id: str, *extra: str, when: str = "2027-01-20T09:00:00Z") -> Any:
    return _cli(
        db_url,
        "referral",
        "refile",
        account_id,
        "--by",
        "Mei Chen",
        "--reason",
        "venue fixed",
        "--as-of",
        when,
        *extra,
    )


def _refused(result: Any) -> str:
    """The one-line error of a command refused with exit 2 (nothing changed)."""
    from deployments.cli._common import CliError

    assert isinstance(result.exception, CliError) and result.exception.exit_code == 2, result.output
    return str(result.exception)


def _team_events(engine: Engine, account_id: str) -> list[Any]:
    return [e for e in events(engine, account_id, "referral") if e.actor.startswith("legal:")]


def _objected(engine: Engine, tmp_path: Path, court: Any, account_id: str) -> Any:
    """A CN account in legal referral whose payment order the respondent objected to."""
    filed = _filed_cn(engine, tmp_path, account_id)
    court.advance(filed.filing_id, "objected", reason=OBJECTION)
    assert _poll(filed.referral_id, "2027-01-15T09:00:00Z").status == "objected"
    return filed


# -- the lifecycle ---------------------------------------------------------------------------------


def test_an_account_the_legal_team_does_not_sue_is_charged_off_at_the_policys_days() -> None:
    """In legal referral an account is not charged off while a court pursues it; once the legal
    team does not sue, it is, at the policy's charge-off days past due, and only then."""
    from tests.test_lifecycle import facts, view

    days = DEFAULT_POLICY.exits.charge_off_dpd
    assert days is not None
    pursued = advance(
        view(stage=Stage.LEGAL_REFERRAL, dpd=days + 5),
        facts(referral_status="served"),
        DEFAULT_POLICY,
        at("2026-12-01T04:00:00Z"),
    )
    assert pursued.stage == Stage.LEGAL_REFERRAL
    dropped: Facts = facts(referral_status=NOT_SUING)
    late = advance(
        view(stage=Stage.LEGAL_REFERRAL, dpd=days + 5), dropped, DEFAULT_POLICY, at("2026-12-01T04:00:00Z")
    )
    assert late.stage == Exit.CHARGED_OFF
    assert late.steps[-1].reason.endswith("(the legal team does not sue)")
    early = advance(
        view(stage=Stage.LEGAL_REFERRAL, dpd=days - 1), dropped, DEFAULT_POLICY, at("2026-12-01T04:00:00Z")
    )
    assert early.stage == Stage.LEGAL_REFERRAL


# -- close -----------------------------------------------------------------------------------------


def test_not_suing_an_objected_payment_order_leaves_the_queue_once_and_charges_off_in_time(
    court_db: Engine, tmp_path: Path, court: Any, db_url: str
) -> None:
    """The legal team does not sue on a payment order objected to: audited as theirs with the
    reason, the referral leaves `review list`; the same command again changes nothing; the account
    stays in legal referral until the policy's charge-off days past due, then is charged off."""
    filed = _objected(court_db, tmp_path, court, "A-RC1")
    assert [w["waits_for"] for w in _listed(db_url, "A-RC1")] == ["legal team"]
    done = _close(db_url, "A-RC1", "not-suing")
    assert done.exit_code == 0, done.output
    assert "objected → not_suing" in done.output and "Mei Chen" in done.output
    assert _listed(db_url, "A-RC1") == []
    [said] = _team_events(court_db, "A-RC1")
    assert (said.actor, said.data["outcome"], said.data["reason"]) == (
        "legal:Mei Chen",
        "not-suing",
        "counsel's advice",
    )
    assert (said.data["referral_id"], said.data["from"], said.data["to"]) == (
        filed.referral_id,
        "objected",
        "not_suing",
    )
    again = _close(db_url, "A-RC1", "not-suing", when="2027-01-21T09:00:00Z")
    assert again.exit_code == 0, again.output
    assert "nothing changed" in again.output
    assert len(_team_events(court_db, "A-RC1")) == 1
    other = _close(db_url, "A-RC1", "suing-off-system", when="2027-01-21T09:00:00Z")
    assert "ended not_suing by Mei Chen" in _refused(other)
    day(court_db, "2027-01-21T16:00:00Z")
    assert account(court_db, "A-RC1").stage == "legal_referral"  # 112 days past due: not yet
    day(court_db, "2027-03-31T16:00:00Z")  # oldest due 2026-10-01: 181 days past due
    assert account(court_db, "A-RC1").stage == "charged_off"
    assert events(court_db, "A-RC1", "transition")[-1].detail.endswith("(the legal team does not sue)")


def test_a_referral_the_team_did_not_sue_on_says_nothing_of_a_later_stay(
    court_db: Engine, tmp_path: Path, court: Any, db_url: str
) -> None:
    """Not sued, the account paid, fell behind and came back to legal referral: until this stay's
    referral opens, the cycle reads no referral for it, not the old one's `not_suing`, which would
    charge it off at once however the legal team decides this time."""
    from datetime import UTC, datetime

    from sqlalchemy import update

    from arrears.storage.cycle import load_shard
    from arrears.storage.tables import account as account_t

    _objected(court_db, tmp_path, court, "A-RC9")
    assert _close(db_url, "A-RC9", "not-suing").exit_code == 0

    def read() -> str | None:
        with court_db.connect() as c:
            [row] = [
                r
                for r in load_shard(
                    c,
                    lo="A-RC9",
                    hi=None,  # every account from it on: the one asked for is picked below
                    business_date=datetime(2027, 2, 1).date(),
                    lender="Lender",
                    lender_timezone="UTC",
                )
                if r.view.account_id == "A-RC9"
            ]
        return row.facts.referral_status

    assert read() == NOT_SUING
    with court_db.begin() as c:  # back in legal referral since today: a new stay
        c.execute(
            update(account_t)
            .where(account_t.c.account_id == "A-RC9")
            .values(stage_since=datetime(2027, 2, 1, tzinfo=UTC))
        )
    assert read() is None


def test_a_suit_off_system_keeps_the_account_in_legal_referral_until_its_judgment(
    court_db: Engine, tmp_path: Path, court: Any, db_url: str
) -> None:
    """Counsel sues off-system after the objection: the referral waits for the court (saying how
    to record its end), the account is not charged off however late, and the judgment the legal
    team records closes it at the next cycle."""
    _objected(court_db, tmp_path, court, "A-RC2")
    done = _close(db_url, "A-RC2", "suing-off-system")
    assert done.exit_code == 0, done.output
    [waiting] = _listed(db_url, "A-RC2")
    assert waiting["waits_for"] == "court"
    assert "arrears referral close A-RC2 --outcome judgment|not-suing" in waiting["detail"]
    day(court_db, "2027-03-31T16:00:00Z")
    assert account(court_db, "A-RC2").stage == "legal_referral"
    refused = _close(db_url, "A-RC2", "dismissal-filed", when="2027-04-01T09:00:00Z")
    assert "not-suing" in _refused(refused)
    judged = _close(db_url, "A-RC2", "judgment", when="2027-04-01T09:00:00Z")
    assert judged.exit_code == 0, judged.output
    assert _listed(db_url, "A-RC2") == []
    day(court_db, "2027-04-01T16:00:00Z")
    assert account(court_db, "A-RC2").stage == "closed"


def test_a_suit_off_system_whose_account_paid_waits_for_its_dismissal(
    court_db: Engine, tmp_path: Path, court: Any, db_url: str
) -> None:
    """The borrower pays off while counsel's suit off-system runs: no run can withdraw it, so the
    referral goes back to the legal team for its dismissal; `not-suing` is refused naming the
    outcome that fits, `dismissal-filed` ends it."""
    _objected(court_db, tmp_path, court, "A-RC3")
    assert _close(db_url, "A-RC3", "suing-off-system").exit_code == 0
    pay(court_db, tmp_path, "A-RC3", "18450.00", "2027-01-22T03:00:00Z")
    day(court_db, "2027-01-22T16:00:00Z")
    assert account(court_db, "A-RC3").stage == "paid_off"
    [waiting] = _listed(db_url, "A-RC3")
    assert (
        waiting["waits_for"] == "legal team" and "dismissal of the suit filed off-system" in waiting["detail"]
    )
    refused = _close(db_url, "A-RC3", "not-suing", when="2027-01-23T09:00:00Z")
    assert "dismissal-filed" in _refused(refused)
    assert _close(db_url, "A-RC3", "dismissal-filed", when="2027-01-23T09:00:00Z").exit_code == 0
    assert _listed(db_url, "A-RC3") == []
    assert [e.data["to"] for e in _team_events(court_db, "A-RC3")] == ["off_system", "dismissed"]


def test_a_dismissal_counsel_filed_ends_a_dismissing_referral(
    court_db: Engine, tmp_path: Path, court: Any, db_url: str
) -> None:
    """Paid off after the court accepted the filing (the gateway withdraws it no more): the
    referral waits for counsel's dismissal; recorded, it ends `dismissed` and leaves the list."""
    from tasks.legal import open_referral, poll_filing, request_dismissal, submit_filing
    from tasks.providers import court_session

    _in_legal(court_db, tmp_path, "A-RC4")
    with court_session():
        state = open_referral.fn("A-RC4", at("2026-12-23T17:00:00Z"))
        filed = submit_filing.fn(state.referral_id, at("2026-12-23T17:00:00Z"))
        court.advance(filed.filing_id, "accepted")
        assert poll_filing.fn(state.referral_id, at("2026-12-26T17:00:00Z")).status == "accepted"
        pay(court_db, tmp_path, "A-RC4", "18450.00", "2026-12-27T15:00:00Z")
        day(court_db, "2026-12-27T16:00:00Z")
        assert request_dismissal.fn(state.referral_id, at("2026-12-27T17:00:00Z")).status == "dismissing"
    [waiting] = _listed(db_url, "A-RC4")
    assert (waiting["waits_for"], waiting["detail"]) == ("legal team", "referral dismissing")
    done = _close(db_url, "A-RC4", "dismissal-filed", "--json", when="2026-12-29T09:00:00Z")
    assert done.exit_code == 0, done.output
    said = json.loads(done.stdout)
    assert (said["from"], said["status"], said["changed"]) == ("dismissing", "dismissed", True)
    assert _listed(db_url, "A-RC4") == []


def test_a_referral_that_does_not_wait_for_the_legal_team_is_refused_naming_why(
    court_db: Engine, tmp_path: Path, court: Any, db_url: str
) -> None:
    """A filing before the court through the gateway is the court's: close and refile are refused
    (exit 2, nothing recorded), as are an unknown account, an unnamed person, a decision dated
    before the referral's last change, and a judgment on a filing that never went off-system."""
    from tasks.legal import open_referral, submit_filing
    from tasks.providers import court_session

    _in_legal(court_db, tmp_path, "A-RC5")
    with court_session():
        state = open_referral.fn("A-RC5", at("2026-12-23T17:00:00Z"))
        filed = submit_filing.fn(state.referral_id, at("2026-12-23T17:00:00Z"))
    closed = _close(db_url, "A-RC5", "not-suing")
    assert f"waits for the court (filing {filed.filing_id} submitted)" in _refused(closed)
    refiled = _refile(db_url, "A-RC5")
    assert "only a rejected filing is refiled" in _refused(refiled)
    assert "no account 'A-NONE'" in _refused(_close(db_url, "A-NONE", "not-suing"))
    nobody = _cli(
        db_url, "referral", "close", "A-RC5", "--outcome", "not-suing", "--by", " ", "--reason", "x"
    )
    assert "--by" in _refused(nobody)
    court.advance(filed.filing_id, "rejected", reason="claim form unsigned")
    from tasks.legal import poll_filing

    with court_session():
        assert poll_filing.fn(state.referral_id, at("2026-12-28T17:00:00Z")).status == "rejected"
    early = _close(db_url, "A-RC5", "not-suing", when="2026-12-24T09:00:00Z")
    assert _refused(early).startswith("--as-of: ")
    judged = _close(db_url, "A-RC5", "judgment")
    assert "suing-off-system" in _refused(judged)
    assert _team_events(court_db, "A-RC5") == []
    assert [r.status for r in rows(court_db, referral_t, "A-RC5")] == ["rejected"]


def test_a_draft_the_legal_team_takes_off_system_is_never_filed_through_the_gateway(
    court_db: Engine, tmp_path: Path, court: Any, db_url: str
) -> None:
    """Counsel files a draft by hand: the referral run's submit step, run after, files nothing,
    and the referral waits for the court off-system."""
    from tasks.legal import open_referral, submit_filing
    from tasks.providers import court_session

    _in_legal(court_db, tmp_path, "A-RC7")
    with court_session():
        state = open_referral.fn("A-RC7", at("2026-12-23T17:00:00Z"))
    assert [w["waits_for"] for w in _listed(db_url, "A-RC7")] == ["legal team"]
    assert _close(db_url, "A-RC7", "suing-off-system", when="2026-12-24T09:00:00Z").exit_code == 0
    with court_session():
        after = submit_filing.fn(state.referral_id, at("2026-12-24T17:00:00Z"))
    assert (after.status, after.filing_id, court.filings()) == ("off_system", None, [])
    assert [w["waits_for"] for w in _listed(db_url, "A-RC7")] == ["court"]


# -- refile ----------------------------------------------------------------------------------------


def test_a_filing_rejected_for_want_of_a_court_is_refiled_once_an_import_fixes_the_account(
    court_db: Engine, tmp_path: Path, court: Any, db_url: str
) -> None:
    """Refused at once for a jurisdiction the venue table lacks: refiling before the data is fixed
    is refused, nothing changed; after an import corrects the jurisdiction, a new referral drafted
    from today's facts is what the referral run files (at the Iowa court, under its own key), and
    the same refile again changes nothing."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from arrears.storage.installation import stored_installation_id
    from tasks.legal import open_referral, referral_work, submit_filing
    from tasks.providers import court_session

    _in_legal(court_db, tmp_path, "A-RF1", jurisdiction="US", timezone="America/New_York")
    with court_session():
        first = open_referral.fn("A-RF1", at("2026-12-23T17:00:00Z"))
        assert submit_filing.fn(first.referral_id, at("2026-12-23T17:00:00Z")).status == "rejected"
    unfixed = _refile(db_url, "A-RF1")
    assert "no court is configured for US" in _refused(unfixed)
    assert [r.status for r in rows(court_db, referral_t, "A-RF1")] == ["rejected"]
    import_rows(
        court_db, tmp_path, [us_account("A-RF1", past_due_amount="825.00", oldest_due_date="2026-10-01")]
    )
    with court_db.begin() as c:  # the import leaves the stage as it was: in legal referral
        assert (
            c.execute(select(account_t.c.stage).where(account_t.c.account_id == "A-RF1")).scalar()
            == "legal_referral"
        )
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        done = _refile(db_url, "A-RF1", "--json")
    assert done.exit_code == 0, done.output
    said = json.loads(done.stdout)
    assert (said["referral_id"], said["status"], said["changed"]) == (first.referral_id, "refiled", True)
    assert "the next cycle's referral run files it" in said["flow_run"]
    new_id = said["refiled_as"]
    assert [(a, r, s) for a, _, r, s in referral_work.fn() if a == "A-RF1"] == [("A-RF1", new_id, "draft")]
    assert _listed(db_url, "A-RF1")[0]["id"] == new_id
    with court_session():
        state = open_referral.fn("A-RF1", at("2027-01-20T10:00:00Z"))
        assert state.referral_id == new_id
        assert submit_filing.fn(new_id, at("2027-01-20T10:00:00Z")).status == "submitted"
    [filing] = court.filings()
    with court_db.connect() as c:
        assert filing["idempotencyKey"] == f"{stored_installation_id(c)}-referral-{new_id}"
    assert filing["court"].startswith("US-IA")
    [refiling] = _team_events(court_db, "A-RF1")
    assert (refiling.data["refiled_as"], refiling.data["reason"]) == (new_id, "venue fixed")
    again = _refile(db_url, "A-RF1", when="2027-01-21T09:00:00Z")
    assert again.exit_code == 0 and f"already refiled as referral {new_id}" in again.output, again.output
    assert len(rows(court_db, referral_t, "A-RF1")) == 2 and len(_team_events(court_db, "A-RF1")) == 1


@pytest.mark.usefixtures("prefect_harness")
def test_a_rejected_filing_refiled_is_filed_by_the_woken_referral_run(
    court_db: Engine, tmp_path: Path, court: Any, db_url: str
) -> None:
    """The court's rejection arrives by callback while the run waits on it; `refile` wakes the
    run, which takes up the new referral and files it at the sandbox court under a new key: two
    filings, the second waited on by the same run, and nothing left for the legal team."""
    from arrears.storage.court_statuses import record_court_status
    from flows.legal_referral import legal_referral, start_referrals

    _in_legal(court_db, tmp_path, "A-RF2")
    running = in_thread(legal_referral, "A-RF2", "2026-12-23T17:00:00Z")
    [old] = _wait_referral(court_db, "A-RF2")
    run_id = _run_of(court_db, "A-RF2")
    wait_paused(run_id, "court-wait-1")
    court.advance(old.filing_id, "rejected", reason="notice of sale lacks proof of mailing")
    with court_db.begin() as c:
        recorded = record_court_status(
            c,
            filing_id=old.filing_id,
            status="rejected",
            at=at("2026-12-28T17:00:00Z"),
            provider="sandbox",
            callback_id="rejected-A-RF2",
            reason="notice of sale lacks proof of mailing",
        )
    assert recorded.changed
    done = _refile(db_url, "A-RF2", when="2026-12-29T09:00:00Z")
    assert done.exit_code == 0, done.output
    assert f"run {run_id} woken" in done.output
    wait_paused(run_id, "court-wait-2")
    old_row, new_row = rows(court_db, referral_t, "A-RF2")
    assert (old_row.status, new_row.status) == ("refiled", "submitted")
    assert [f["filingId"] for f in court.filings()] == [old.filing_id, new_row.filing_id]
    [waiting] = _listed(db_url, "A-RF2")
    assert (waiting["waits_for"], waiting["id"]) == ("court", new_row.id)
    again = _refile(db_url, "A-RF2", when="2026-12-30T09:00:00Z")
    assert again.exit_code == 0 and "nothing changed" in again.output
    assert len(court.filings()) == 2
    court.advance(new_row.filing_id, "judgment")
    start_referrals(at("2027-01-20T17:00:00Z"), "2027-01-20T17:00:00Z")
    assert running.result(timeout=60)["status"] == "judgment"


def test_a_court_status_after_the_legal_team_ended_a_referral_does_not_reopen_it(
    court_db: Engine, tmp_path: Path, court: Any, db_url: str
) -> None:
    """Not suing on a payment order objected to ends the referral: a status the court sends later
    about its filing is kept on the timeline, not applied, as after a withdrawal."""
    from arrears.storage.court_statuses import record_court_status

    filed = _objected(court_db, tmp_path, court, "A-RC6")
    assert _close(db_url, "A-RC6", "not-suing").exit_code == 0
    with court_db.begin() as c:
        record_court_status(
            c,
            filing_id=filed.filing_id,
            status="judgment",
            at=at("2027-01-25T09:00:00Z"),
            provider="sandbox",
            callback_id="late-A-RC6",
        )
    assert [r.status for r in rows(court_db, referral_t, "A-RC6")] == ["not_suing"]
