"""Invariants a collections operator and a regulator hold a month of cycles to, each found broken
in `arrears demo --accounts 1000 --days 30` and reproduced here in small form (a few accounts, a
few days)."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select
from typer.testing import CliRunner

from arrears.storage.tables import account as account_table
from arrears.storage.tables import message as message_table
from deployments.cli import app
from integrations import retries
from tests.later_stage_helpers import (
    account,
    day,
    events,
    import_rows,
    rows,
    set_scores,
    us_account,
)

runner = CliRunner()


def run(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def later_db(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, sms_sandbox: Any) -> Engine:
    """The database the cycle's tasks open, texting through the sandbox SMS server."""
    from arrears.settings import get_settings

    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    return engine


@pytest.fixture
def _no_waiting() -> Iterator[None]:
    """The SMS client's retries do not sleep through the outage's Retry-After."""
    with retries.testing():
        yield


@pytest.mark.usefixtures("prefect_harness", "_no_waiting")
def test_an_offer_that_never_left_is_not_counted_as_declined(
    later_db: Engine, tmp_path: Path, sms_sandbox: Any
) -> None:
    """DESIGN §2: restructuring leaves for review when the "offer [is] declined"; the policy counts
    "an offer unanswered this long" as declined. In the month's demo, 80 US hardship borrowers went
    to repossession review as "offer unanswered, counted as declined" whose offer text had never
    been sent (it waited, scheduled, the whole 14 days). Here the SMS provider is down for the
    fortnight (README exit 4: "messages wait"): the borrower cannot answer an offer they never
    received, and must not be escalated towards repossession for it."""
    import_rows(
        later_db,
        tmp_path,
        [us_account("A-M1", past_due_amount="825.00", oldest_due_date="2026-11-11")],
    )
    set_scores(later_db, "A-M1", ability=0.3, willingness=0.7)  # hardship: willing but unable
    sms_sandbox.set_faults(http_503=100_000, retry_after=0)  # down for the whole test
    day(later_db, "2026-12-01T16:00:00Z")  # 10:00 in Des Moines: into restructuring, the offer waits
    assert account(later_db, "A-M1").stage == "restructuring"
    day(later_db, "2026-12-02T16:00:00Z")
    day(later_db, "2026-12-17T16:00:00Z")
    offers = [m for m in rows(later_db, message_table, "A-M1") if m.template == "restructuring_offer"]
    assert offers and all(m.sent_at is None for m in offers)  # not one offer text left
    moved = [e.detail for e in events(later_db, "A-M1", "transition")]
    assert not any("counted as declined" in d for d in moved), moved
    assert account(later_db, "A-M1").stage == "restructuring"


@pytest.mark.usefixtures("prefect_harness", "sms_sandbox")
def test_the_demo_texts_borrowers_in_every_zone_over_its_days(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: the demo is "the main job on the embedded default ... across China and the US
    (several time zones)", and `--days N` simulates N days. The CN and US contact windows share no
    hour (08:00-22:00 Shanghai is 00:00-14:00 UTC; 08:00-21:00 across the US is 16:00-02:00 UTC), so
    a cycle at one instant each day can text only one of them at once; the other's texts are
    deferred to their morning. The demo never dispatched them: over 30 days of 1,000 accounts not one
    US borrower was texted (706 sent, all CN; 132 US texts still waiting, some 29 days old; 547
    blocked as stale once their account moved on), while their accounts went on to repossession
    review. Every zone's borrowers must get the texts the run decided for them."""
    monkeypatch.delenv("ARREARS_LETTERS_BASE_URL", raising=False)
    monkeypatch.delenv("ARREARS_LETTERS_CREDENTIALS", raising=False)
    demo = run(
        "demo", "--accounts", "60", "--days", "3", "--as-of", "2026-12-01T12:00:00Z", "--database", sqlite_url
    )
    assert demo.exit_code == 0, demo.output
    with create_engine(sqlite_url).connect() as c:
        us_sent = {
            us
            for (us,) in c.execute(
                select(account_table.c.jurisdiction.startswith("US"))
                .join(message_table, account_table.c.account_id == message_table.c.account_id)
                .where(message_table.c.sent_at.is_not(None))
            )
        }
        last_cycle = datetime(2026, 12, 3, 12, tzinfo=UTC)
        overdue = c.execute(  # due before the last day's cycle, and never sent: waiting for ever
            select(message_table.c.id)
            .join(account_table, account_table.c.account_id == message_table.c.account_id)
            .where(message_table.c.status == "scheduled", message_table.c.not_before < last_cycle)
        ).all()
    assert False in us_sent, "no CN borrower texted"
    assert True in us_sent, "no US borrower texted in 3 days"
    assert overdue == [], f"{len(overdue)} texts came due before the last day and never went"


@pytest.mark.usefixtures("prefect_harness", "_no_waiting")
def test_asks_held_back_for_weeks_do_not_all_go_out_on_consecutive_days(
    later_db: Engine, tmp_path: Path, sms_sandbox: Any
) -> None:
    """DESIGN §2: negotiation "asks for a promise to pay" on a cadence, the policy's 7 days between
    requests. In the month's demo a US borrower's asks waited (never sent) for weeks: four identical
    asks of one stay were queued, and once the window was open they went out on three consecutive
    days (the fourth stopped by the borrower's 7-day cap). Here a provider outage holds the asks of
    three weeks: when it ends, the borrower gets one ask in a week, not three on three days."""
    from flows.daily_cycle import dispatch_outbox

    import_rows(later_db, tmp_path, [us_account("A-M3", oldest_due_date="2026-11-11")])
    set_scores(
        later_db, "A-M3", ability=0.7, willingness=0.3
    )  # strategic: to review from 45 days, not before
    sms_sandbox.set_faults(http_503=100_000, retry_after=0)
    for when in ("2026-12-01T16:00:00Z", "2026-12-08T16:00:00Z", "2026-12-15T16:00:00Z"):
        day(later_db, when)
    assert account(later_db, "A-M3").stage == "negotiation"
    sms_sandbox.reset()  # the provider is back
    for when in ("2026-12-16T16:00:00Z", "2026-12-17T16:00:00Z", "2026-12-18T16:00:00Z"):
        dispatch_outbox(as_of=when)
    asks = [
        m.sent_at for m in rows(later_db, message_table, "A-M3") if m.template == "negotiation" and m.sent_at
    ]
    assert len(asks) == 1, asks
