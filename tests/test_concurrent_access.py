"""What one process does while another writes to the same database (SQLite: one writer at a time)."""

import sqlite3
import threading
from pathlib import Path

from typer.testing import CliRunner

from arrears.storage import database_file, get_engine, migrate
from deployments.cli import app
from tests.factories import account_record, write_csv

runner = CliRunner()


def test_opening_a_migrated_database_does_not_wait_for_a_writer(sqlite_url: str) -> None:
    """Every command opens its database through `migrate`: at head it writes nothing, so it must not
    queue behind an import's (or a cycle's) write transaction and fail with "database is locked"
    after the busy timeout, as `arrears show` and `arrears hold place` did during an import."""
    engine = get_engine(sqlite_url)
    migrate(engine)
    path = database_file(sqlite_url)
    assert path is not None
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")  # an import holding the write lock
    opened = threading.Event()
    failed: list[BaseException] = []

    def open_again() -> None:
        try:
            migrate(engine)
            opened.set()
        except BaseException as error:  # the busy timeout, if it waited
            failed.append(error)

    thread = threading.Thread(target=open_again, daemon=True)
    thread.start()
    try:
        assert opened.wait(5), "migrate at head waited for the writer's lock"
        assert not failed
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        thread.join(60)


def test_read_commands_answer_while_an_import_holds_the_write_lock(tmp_path: Path, sqlite_url: str) -> None:
    """An agent's `arrears show`, `report`, `hold list`, `promise list`, `letters list` and
    `callbacks list` read only: during a long import (one write transaction, 40-150 s for a
    million accounts) they answer from WAL's snapshot instead of failing after the busy timeout."""
    accounts = write_csv(tmp_path / "accounts.csv", [account_record(account_id="A-1")])
    assert runner.invoke(app, ["import", "accounts", str(accounts), "--database", sqlite_url]).exit_code == 0
    path = database_file(sqlite_url)
    assert path is not None
    commands = [
        ["show", "A-1", "--json"],
        ["report", "--json"],
        ["hold", "list", "A-1", "--json"],
        ["promise", "list", "A-1", "--json"],
        ["letters", "list", "--json"],
        ["callbacks", "list", "--json"],
    ]
    codes: list[int] = []
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")  # the import's transaction
    thread = threading.Thread(
        target=lambda: codes.extend(
            runner.invoke(app, [*c, "--database", sqlite_url]).exit_code for c in commands
        ),
        daemon=True,
    )
    thread.start()
    try:
        thread.join(20)
        assert not thread.is_alive(), f"read commands waited for the writer ({len(codes)} answered)"
        assert codes == [0] * len(commands)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        thread.join(120)


def test_a_worker_process_killed_mid_cycle_leaves_the_retry_a_working_pool() -> None:
    """kill -9 of one of the cycle's worker processes (the OOM killer, an operator) fails the shard
    it ran; the shard task's retry must run in a working pool. A broken ProcessPoolExecutor refused
    every submission, so on PostgreSQL with two workers every retry failed at once
    (`BrokenProcessPool ... Retries are exhausted`) and the whole cycle failed."""
    import os
    import signal
    import time

    from tasks import workers

    with workers.worker_processes(2):
        first = workers.in_worker(os.getpid)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not getattr(workers._pool, "_broken", False):  # noticed in the pool's own thread
            assert time.monotonic() < deadline, "the pool never noticed its worker's death"
            time.sleep(0.05)
        again = workers.in_worker(os.getpid)  # the task's retry
        assert again != first and again != os.getpid()
