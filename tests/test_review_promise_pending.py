"""A promise to pay still running holds back a repossession (or a referral to legal) in review.

A promise is taken in reminder and negotiation; the account may reach review before its date (60
days past due). In US-CA, which owes no cure notice, a reviewer could approve the repossession the
same day, before the date the lender had accepted. Now repossess and legal are refused, naming the
promise and its date, until the cycle judges it (kept or broken); negotiate, which honours it, is
not; the review's flow run waits for its form meanwhile. The lifecycle is unchanged: DESIGN §2
sends an account to review at 60 days "without a working plan", and the benchmark's decisions
stay as they were."""

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, update
from typer.testing import CliRunner

from tests.later_stage_helpers import account_t, at, put_in_review, refresh_later, review_t, rows

PROMISED = "2026-12-20"  # judged broken after 23 December (3 days' grace) without the money


def _cli(*args: str) -> Any:
    from deployments.cli import app

    return CliRunner().invoke(app, list(args))


def _promised_then_reviewed(engine: Engine, tmp_path: Path, db_url: str, account_id: str) -> None:
    """A US-CA account that promised by phone, in negotiation, to pay 400.00 on 20 December, and
    reached repossession review on 1 December (61 days past due) with the promise running."""
    from tasks.review import prepare_reviews

    put_in_review(engine, tmp_path, account_id, jurisdiction="US-CA", timezone="America/Los_Angeles")
    with engine.begin() as c:
        c.execute(update(account_t).where(account_t.c.account_id == account_id).values(stage="negotiation"))
    added = _cli(
        "promise", "add", account_id, "--amount", "400", "--date", PROMISED, "--agent", "Cy",
        "--as-of", "2026-11-30T17:00:00Z", "--database", db_url,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    with engine.begin() as c:
        c.execute(
            update(account_t)
            .where(account_t.c.account_id == account_id)
            .values(stage="repossession_review", stage_since=at("2026-12-01T16:00:00Z"))
        )
    prepare_reviews.fn(at("2026-12-01T17:00:00Z"))


def _decide(db_url: str, account_id: str, decision: str, as_of: str) -> Any:
    return _cli(
        "review", "decide", account_id, "--decision", decision, "--reviewer", "Ana",
        "--reason", "no payment", "--as-of", as_of, "--database", db_url, "--json",
    )  # fmt: skip


def _refused(result: Any) -> str:
    from deployments.cli._common import CliError

    assert isinstance(result.exception, CliError) and result.exception.exit_code == 2, result.output
    return str(result.exception)


def test_repossess_and_legal_are_refused_until_the_promise_is_judged(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """Before 20 December, and until the cycle judges the promise broken (after its grace), the
    reviewer is told why, with the promise's amount and date; the first cycle that judges it
    lets the repossession be approved."""
    account_id = "A-PP1"
    _promised_then_reviewed(mail_db, tmp_path, db_url, account_id)
    for decision, when in [("repossess", "2026-12-02T17:00:00Z"), ("legal", "2026-12-22T17:00:00Z")]:
        why = _refused(_decide(db_url, account_id, decision, when))
        assert f"to pay USD 400.00 by {PROMISED} is pending" in why, why
        assert "judged after 2026-12-23" in why and "negotiate may be decided now" in why
    [review] = rows(mail_db, review_t, account_id)
    assert review.decided_at is None

    refresh_later(mail_db, "2026-12-24T17:00:00Z")  # nothing paid: the promise is broken
    approved = _decide(db_url, account_id, "repossess", "2026-12-24T18:00:00Z")
    assert approved.exit_code == 0, approved.output
    assert json.loads(approved.stdout)["vendor_order"] is not None


def test_returning_to_negotiation_is_not_held_back_by_the_promise(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """Negotiate honours the promise: the reviewer may send the account back at once."""
    account_id = "A-PP2"
    _promised_then_reviewed(mail_db, tmp_path, db_url, account_id)
    back = _decide(db_url, account_id, "negotiate", "2026-12-02T17:00:00Z")
    assert back.exit_code == 0, back.output
    [review] = rows(mail_db, review_t, account_id)
    assert review.decision == "negotiate"


def test_the_review_run_waits_for_the_promise_as_it_waits_for_the_cure_period(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """The flow run and the cycle's wake ask `refusal` with no decision named: the promise holds
    the form back, whether the review is read alone or in bulk (the wake reads every paused run's
    review at once); an account without a promise is ready as before."""
    from arrears.storage import reviews
    from tasks.review import refusal

    put_in_review(mail_db, tmp_path, "A-PP4", jurisdiction="US-CA", timezone="America/Los_Angeles")
    _promised_then_reviewed(mail_db, tmp_path, db_url, "A-PP3")  # both reviews open here
    now = at("2026-12-02T17:00:00Z")
    with mail_db.connect() as c:
        alone = reviews.current_review(c, "A-PP3")
        bulk = {s.account_id: s for s in reviews.open_review_states(c)}
    assert alone is not None and alone.promise is not None
    assert alone.promise == bulk["A-PP3"].promise and alone.promise.due_date.isoformat() == PROMISED
    for state in (alone, bulk["A-PP3"]):
        assert f"by {PROMISED} is pending" in (refusal(state, now) or "")
        assert refusal(state, now, "negotiate") is None
    assert bulk["A-PP4"].promise is None and refusal(bulk["A-PP4"], now) is None


def test_review_list_shows_a_review_held_by_a_promise_waiting_for_the_promise(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """A review whose cure period is over but whose borrower's promise runs waits for the promise,
    not for a reviewer whose repossess or legal would be refused; `--waits-for promise` finds it."""
    account_id = "A-PP5"
    _promised_then_reviewed(mail_db, tmp_path, db_url, account_id)
    out = _cli("review", "list", "--json", "--database", db_url, "--as-of", "2026-12-02T17:00:00Z")
    assert out.exit_code == 0, out.output
    [waiting] = json.loads(out.stdout)
    assert waiting["waits_for"] == "promise" and PROMISED in waiting["detail"], waiting
    only = _cli(
        "review",
        "list",
        "--json",
        "--waits-for",
        "promise",
        "--database",
        db_url,
        "--as-of",
        "2026-12-02T17:00:00Z",
    )
    assert [w["account_id"] for w in json.loads(only.stdout)] == [account_id]
