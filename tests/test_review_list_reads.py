"""`arrears review list` reads without SQLite's write lock.

It read through `engine.connect()`, which on SQLite begins IMMEDIATE: for the ten seconds it
reads a million-account book it held up the cycle's writers, and it failed with "database is
locked" when an import or the cycle held the lock for 30 s. It reads through `read_only`, as the
other list commands do.
"""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text, update
from typer.testing import CliRunner

from arrears.storage import reviews
from arrears.storage.tables import account
from tests.later_stage_helpers import import_rows, us_account

NOW = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)
AS_OF = "2026-12-10T12:00:00Z"
DAY = timedelta(days=1)


def _in_review(engine: Engine, tmp_path: Path, account_id: str, since: datetime) -> None:
    """An account in repossession review since `since`, its review opened then."""
    import_rows(engine, tmp_path, [us_account(account_id)])
    with engine.begin() as c:
        c.execute(
            update(account)
            .where(account.c.account_id == account_id)
            .values(stage="repossession_review", stage_since=since, episode=3, days_past_due=61)
        )
        reviews.open_reviews(c, at=since)


def _cli(*args: str) -> Any:
    from deployments.cli import app

    return CliRunner().invoke(app, list(args))


def test_the_list_reads_while_the_cycle_writes(
    sqlite_engine: Engine, sqlite_url: str, tmp_path: Path
) -> None:
    """A writer holds SQLite's write lock (the cycle, an import): the list reads without taking
    it, and neither waits for the other."""
    _in_review(sqlite_engine, tmp_path, "A-1", NOW - DAY)
    writer = create_engine(sqlite_url, isolation_level="AUTOCOMMIT")
    with writer.connect() as w:
        w.exec_driver_sql("BEGIN IMMEDIATE")
        w.execute(text("UPDATE account SET days_past_due = 62 WHERE account_id = 'A-1'"))
        try:  # before, the list took the write lock too: it waited 30 s for it, and failed
            listed = _cli("review", "list", "--json", "--database", sqlite_url, "--as-of", AS_OF)
        finally:
            w.exec_driver_sql("ROLLBACK")
    writer.dispose()
    assert listed.exit_code == 0, listed.output
    assert [(x["account_id"], x["days_past_due"]) for x in json.loads(listed.stdout)] == [("A-1", 61)]
