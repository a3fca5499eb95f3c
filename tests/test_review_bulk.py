"""The cycle writes the right-to-cure letters of the reviews it opens in bulk (issue 14): the same
letters, PDFs and audit events as writing them one review at a time, on a generated portfolio."""

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select, update

from arrears.clock import business_date
from arrears.importing import Kind, open_source
from arrears.settings import get_settings
from arrears.simulate import generate_portfolio, write_accounts_file
from arrears.storage import reviews
from arrears.storage.importer import run_import
from arrears.storage.tables import account, audit, letter

INSTANT = datetime(2026, 12, 1, 1, tzinfo=UTC)


@pytest.fixture
def cycle_db(sqlite_engine: Engine, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("ARREARS_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    return sqlite_engine


def _written(c: Connection) -> tuple[list[Any], list[Any]]:
    letters = list(c.execute(select(letter).order_by(letter.c.id)))
    events = [
        (r.account_id, r.at, r.detail, r.data)
        for r in c.execute(select(audit).where(audit.c.kind == "letter").order_by(audit.c.id))
    ]
    return letters, events


def test_cure_letters_in_bulk_are_those_written_one_by_one(cycle_db: Engine, tmp_path: Path) -> None:
    """Letters (blocked ones included), their ids, PDFs and audit events are the same whether the
    reviews' letters are written in one call or one review at a time."""
    from tasks.cycle import advance_shard, open_cycle, plan_shards, refresh
    from tasks.letters import write_cure_letter, write_cure_letters

    file = tmp_path / "portfolio.csv"
    write_accounts_file(generate_portfolio(400, seed=5, business_date=date(2026, 12, 1)), file)
    assert run_import(cycle_db, open_source(file, Kind.ACCOUNTS), now=INSTANT).rejected == 0
    day = business_date(INSTANT, get_settings().lender_timezone)
    cycle_id = open_cycle.fn(INSTANT, day)
    refresh.fn(INSTANT, day, cycle_id)
    for shard in plan_shards.fn(100):
        advance_shard.fn(shard, INSTANT, day, cycle_id)
    with cycle_db.begin() as c:
        reviews.open_reviews(c, at=INSTANT)
        # The simulator gives no mailing address: every other account gets one, so that letters
        # are rendered (pending) as well as blocked.
        ids = c.execute(select(account.c.account_id).order_by(account.c.account_id)).scalars().all()
        c.execute(
            update(account)
            .where(account.c.account_id.in_(ids[::2]))
            .values(
                address_line1="12 Elm Street",
                city="Des Moines",
                state="IA",
                postal_code="50309",
                country="US",
            )
        )
    with cycle_db.connect() as c:
        states = reviews.open_review_states(c)
    with cycle_db.connect() as c, c.begin() as bulk:
        n = write_cure_letters(c, states, INSTANT)
        in_bulk = _written(c)
        bulk.rollback()
    with cycle_db.connect() as c, c.begin() as single:
        assert sum(write_cure_letter(c, s, INSTANT) for s in states) == n
        one_by_one = _written(c)
        single.rollback()
    assert in_bulk == one_by_one
    assert n > 5 and len({row.status for row in in_bulk[0]}) > 1  # pending and blocked letters both
