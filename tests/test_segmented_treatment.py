"""Segmented treatment day by day, as a collections strategist checks it (DESIGN §2): a borrower in
hardship is offered a deferral or an instalment plan, and that offer must reach them before it can
be counted as declined; a strategic defaulter escalates faster than a borrower in hardship."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, update

from arrears.models import Message
from tests.later_stage_helpers import (
    account,
    contact_t,
    day,
    import_rows,
    plan_t,
    rows,
    set_scores,
    us_account,
)

message_t = Message.__table__  # type: ignore[attr-defined]
FOUND = "+15159870001"  # a number a skip trace found: unconfirmed, perhaps a third party's


@pytest.fixture
def world(
    sqlite_engine: Engine, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, sms_sandbox: Any
) -> Engine:
    from arrears.settings import get_settings

    monkeypatch.setenv("ARREARS_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("ARREARS_BUREAU_PULLS_PER_CYCLE", "0")  # the scores below stand in for the bureau
    get_settings.cache_clear()
    return sqlite_engine


def _only_a_found_number(engine: Engine, account_id: str) -> None:
    """The file's number disowned ("wrong number"); the skip trace's number, unconfirmed, is left."""
    [acct] = [account(engine, account_id)]
    with engine.begin() as c:
        c.execute(
            update(contact_t)
            .where(contact_t.c.borrower_id == acct.borrower_id)
            .values(valid=False, invalid_reason="wrong_number")
        )
        c.execute(
            insert(contact_t).values(
                borrower_id=acct.borrower_id,
                channel="sms",
                address=FOUND,
                is_primary=False,
                valid=True,
                verified=False,
                source="bureau",
                failures=0,
                created_at=datetime(2026, 11, 30, tzinfo=UTC),
            )
        )


def _offers(engine: Engine, account_id: str) -> list[Any]:
    return [m for m in rows(engine, message_t, account_id) if m.template == "restructuring_offer"]


def _confirm(url: str, account_id: str, number: str, as_of: str) -> None:
    from typer.testing import CliRunner

    from deployments.cli import app

    command = ["contact", "confirm", account_id, number, "--reason", "borrower called in"]
    result = CliRunner().invoke(app, [*command, "--as-of", as_of, "--database", url])
    assert result.exit_code == 0, result.output


@pytest.mark.usefixtures("prefect_harness")
def test_an_offer_blocked_from_an_unconfirmed_number_goes_once_the_number_is_confirmed(
    world: Engine, tmp_path: Path, sqlite_url: str
) -> None:
    """A borrower in hardship whose only number is a skip trace's, unconfirmed, enters
    restructuring: the offer, which tells of the debt, is blocked to it and reaches nobody. Once an
    agent confirms the number, the offer goes to it at the stay's next weekly attempt (it went
    never: its key was spent on the blocked one), and an offer nobody received is not counted as
    declined 14 days on, which sent the borrower to review at 35 days past due, before a strategic
    defaulter's 45."""
    import_rows(
        world, tmp_path, [us_account("A-HS1", past_due_amount="825.00", oldest_due_date="2026-11-11")]
    )
    set_scores(world, "A-HS1", ability=0.3, willingness=0.7)
    _only_a_found_number(world, "A-HS1")
    day(world, "2026-12-01T16:00:00Z")
    assert account(world, "A-HS1").stage == "restructuring"
    [blocked] = _offers(world, "A-HS1")
    assert (blocked.status, blocked.reason) == ("blocked", "content:third-party-debt")

    for d in range(2, 8):  # the lender's 3 to 8 December: the offer counts as made to nobody
        day(world, f"2026-12-{d:02d}T16:00:00Z")
        if d == 2:
            _confirm(sqlite_url, "A-HS1", FOUND, "2026-12-03T15:00:00Z")
    assert not rows(world, plan_t, "A-HS1")
    day(world, "2026-12-08T16:00:00Z")  # a week into the stay: the offer again, to the confirmed number
    offers = _offers(world, "A-HS1")
    assert [(m.status, m.address) for m in offers] == [("blocked", FOUND), ("sent", FOUND)]
    for d in range(9, 23):  # offered on the lender's 10 December: it expires on the 24th, not before
        day(world, f"2026-12-{d:02d}T16:00:00Z")
    assert account(world, "A-HS1").stage == "restructuring"
    assert [p.status for p in rows(world, plan_t, "A-HS1")] == ["offered"]
