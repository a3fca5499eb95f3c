"""A quarantine entry is resolved only once its retry's work committed (DESIGN §4, isolation): a
retry that fails, or never finishes (the database gone in its middle, the process killed), leaves
it in quarantine, listed, counted and retried by `--all`, with the new error when the database
takes it; `arrears quarantine retry` says so in one line and exits 1."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from arrears.settings import get_settings
from arrears.storage import quarantine
from deployments.cli import app
from tests.later_stage_helpers import account, import_rows, us_account

AS_OF = "2026-12-05T16:00:00Z"  # 10:00 in Des Moines: the account moves to reminder
AT = datetime(2026, 12, 5, 16, tzinfo=UTC)
GONE = "the database went away"


@pytest.fixture
def cycle_db(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """The database the tasks open (ARREARS_DATABASE_URL)."""
    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    return engine


@contextmanager
def _database_away(engine: Engine) -> Iterator[dict[str, bool]]:
    """While `state["away"]`, every statement on `engine` fails as on a database gone away (the
    tasks' engine is the same object: one engine per URL per process)."""
    state = {"away": False}

    def refuse(*args: Any) -> None:
        if state["away"]:
            raise OperationalError("(the statement)", {}, Exception(GONE))

    event.listen(engine, "before_cursor_execute", refuse)
    try:
        yield state
    finally:
        event.remove(engine, "before_cursor_execute", refuse)


def _quarantined(engine: Engine, account_id: str, *, step: str = "advance") -> int:
    with engine.begin() as c:
        return quarantine.put(
            c,
            what=quarantine.What.ACCOUNT,
            ref=account_id,
            account_id=account_id,
            step=step,
            error_type="ZoneInfoNotFoundError",
            error="No time zone found with key Mars/Olympus",
            at=AT,
        )


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _listed(db_url: str, *extra: str) -> list[dict[str, Any]]:
    return list(json.loads(_cli("quarantine", "list", "--json", "--database", db_url, *extra).stdout))


def test_an_entry_is_resolved_only_by_the_retry_that_released_it(sqlite_engine: Engine) -> None:
    """Released for a retry, an entry lets the steps see its item but stays in quarantine (listed,
    counted) until that retry resolves it; a step that sets the item aside again or a failed retry
    leaves nothing to resolve, and the steps skip the item again; a retry released later is the one
    that resolves; a resolved entry is neither released nor reopened."""
    later = AT + timedelta(minutes=5)
    entry_id = _quarantined(sqlite_engine, "A-R1")
    with sqlite_engine.begin() as c:
        assert quarantine.release(c, entry_id, at=AT)
        assert quarantine.open_accounts(c) == set()
        [row] = quarantine.entries(c)
        assert (row.id, row.resolved, row.step, row.retried_at, row.retrying_since) == (
            entry_id,
            False,
            "advance",
            AT,
            AT,
        )
        assert quarantine.counts(c)["open_total"] == 1
        quarantine.put(
            c,
            what=quarantine.What.ACCOUNT,
            ref="A-R1",
            account_id="A-R1",
            step="refresh",
            error_type="ValueError",
            error="still broken",
            at=AT,
        )
        assert not quarantine.resolve(c, entry_id, since=AT)
        assert quarantine.open_accounts(c) == {"A-R1"}

        assert quarantine.release(c, entry_id, at=AT)
        quarantine.reopen(c, entry_id, error_type="OperationalError", error=GONE, at=AT)
        assert not quarantine.resolve(c, entry_id, since=AT)
        assert quarantine.open_accounts(c) == {"A-R1"}
        [row] = quarantine.entries(c)
        assert (row.resolved, row.retrying_since, row.step, row.error_type) == (
            False,
            None,
            "refresh",
            "OperationalError",
        )

        assert quarantine.release(c, entry_id, at=AT)  # a retry that never finished
        assert quarantine.release(c, entry_id, at=later)  # is retried again
        assert not quarantine.resolve(c, entry_id, since=AT)
        assert quarantine.resolve(c, entry_id, since=later)
        assert quarantine.entries(c) == [] and quarantine.counts(c)["open_total"] == 0
        assert quarantine.open_accounts(c) == set()
        resolved = quarantine.entry(c, entry_id)
        assert resolved is not None and (resolved.resolved, resolved.retrying_since) == (True, None)
        assert not quarantine.release(c, entry_id, at=later)
        quarantine.reopen(c, entry_id, error_type="ValueError", error="late", at=later)
        untouched = quarantine.entry(c, entry_id)
        assert untouched is not None and (untouched.resolved, untouched.error) == (True, GONE)


@pytest.mark.usefixtures("prefect_harness", "sms_sandbox")
def test_a_retry_the_database_walked_out_on_leaves_the_entry_in_quarantine(
    cycle_db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database goes away in the middle of a retry (its advance) and is still away when the
    retry would record its failure: the command says so in one line and exits 1, and the entry is
    still in quarantine, listed as a retry not confirmed and counted. Away only for the advance, the
    database gets the retry's error and the steps skip the account again. Once the retry's work
    commits, the entry is resolved."""
    import flows.account_lifecycle as lifecycle
    from deployments.cli._common import console

    monkeypatch.setattr(console, "_width", 250)  # the table's cells unwrapped
    import_rows(cycle_db, tmp_path, [us_account("A-Q1")])
    entry_id = _quarantined(cycle_db, "A-Q1")
    real_advance = lifecycle.advance_shard

    with _database_away(cycle_db) as database:

        def gone_for_good(*args: Any, **kwargs: Any) -> Any:
            database["away"] = True  # the refresh committed; the advance finds the database gone
            return real_advance.fn(*args, **kwargs)  # the task's body: its retries would only wait

        monkeypatch.setattr(lifecycle, "advance_shard", gone_for_good)
        retried = _cli("quarantine", "retry", str(entry_id), "--as-of", AS_OF, "--database", db_url)
        database["away"] = False
        assert retried.exit_code == 1, retried.output
        assert retried.output.splitlines() == [
            f"{entry_id}: still in quarantine: OperationalError {GONE} (not recorded: {GONE})"
        ]
        [listed] = _listed(db_url)
        assert (listed["id"], listed["resolved"], listed["step"]) == (entry_id, False, "advance")
        assert listed["error_type"] == "ZoneInfoNotFoundError"  # the database never heard of the retry's
        assert listed["retrying_since"] is not None and listed["retrying_since"] == listed["retried_at"]
        table = _cli("quarantine", "list", "--database", db_url).output
        assert f"retry started {listed['retrying_since'][:16]}, not confirmed" in table
        with cycle_db.connect() as c:
            assert quarantine.counts(c)["open_total"] == 1

        def gone_for_a_moment(*args: Any, **kwargs: Any) -> Any:
            database["away"] = True
            try:
                return real_advance.fn(*args, **kwargs)
            finally:
                database["away"] = False

        monkeypatch.setattr(lifecycle, "advance_shard", gone_for_a_moment)
        again = _cli("quarantine", "retry", "--all", "--as-of", AS_OF, "--database", db_url)
        assert again.exit_code == 1, again.output
        assert again.output.splitlines() == [f"{entry_id}: still in quarantine: OperationalError {GONE}"]
        [listed] = _listed(db_url)
        assert (listed["resolved"], listed["retrying_since"]) == (False, None)
        assert (listed["error_type"], listed["error"]) == ("OperationalError", GONE)
        with cycle_db.connect() as c:
            assert quarantine.open_accounts(c) == {"A-Q1"}  # the cycle skips it again

    monkeypatch.setattr(lifecycle, "advance_shard", real_advance)
    fixed = _cli("quarantine", "retry", str(entry_id), "--as-of", AS_OF, "--database", db_url)
    assert fixed.exit_code == 0, fixed.output
    assert fixed.output.splitlines() == [f"{entry_id}: resolved"]
    assert _listed(db_url) == []
    [resolved] = _listed(db_url, "--resolved")
    assert (resolved["resolved"], resolved["retrying_since"], resolved["step"]) == (True, None, "advance")
    assert account(cycle_db, "A-Q1").stage == "reminder"


@pytest.mark.usefixtures("prefect_harness", "sms_sandbox")
def test_retry_quarantined_itself_resolves_an_entry_whose_retry_passed(
    cycle_db: Engine, tmp_path: Path
) -> None:
    """`retry_quarantined` resolves an entry once its retry's work committed, whoever calls it."""
    from flows.account_lifecycle import retry_quarantined

    import_rows(cycle_db, tmp_path, [us_account("A-Q2")])
    entry_id = _quarantined(cycle_db, "A-Q2")
    [result] = retry_quarantined([entry_id], as_of=AS_OF)
    assert (result["resolved"], result["retrying_since"], result["account_id"]) == (True, None, "A-Q2")
    with cycle_db.connect() as c:
        entry = quarantine.entry(c, entry_id)
    assert entry is not None and (entry.resolved, entry.retrying_since) == (True, None)


def test_a_retry_the_database_refuses_from_the_start_changes_nothing(cycle_db: Engine) -> None:
    """The database away before a retry could release its entry: each entry is said not retried,
    without raising, and nothing changed."""
    from flows.account_lifecycle import retry_quarantined

    first, second = _quarantined(cycle_db, "A-Q3"), _quarantined(cycle_db, "A-Q4")
    with _database_away(cycle_db) as database:
        database["away"] = True
        results = retry_quarantined([first, second])
    assert [(r["id"], r["resolved"], r["error_type"], r["error"]) for r in results] == [
        (i, False, "OperationalError", f"not retried: {GONE}") for i in (first, second)
    ]
    with cycle_db.connect() as c:
        rows = quarantine.entries(c)
    assert [(r.id, r.retried_at, r.retrying_since, r.error_type) for r in rows] == [
        (i, None, None, "ZoneInfoNotFoundError") for i in (first, second)
    ]
