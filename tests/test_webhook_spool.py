"""Callbacks that arrive while an import holds SQLite's write lock: acknowledged at once, kept in
the spool, stored once the lock frees (or at the next start), and stored once however often they
come. Real parts: a SQLite file another connection holds with BEGIN IMMEDIATE (as `arrears import`
does for a whole file), providers built against the real SMS sandbox, callbacks signed as their
vendors sign them (the helpers of tests/test_webhooks.py)."""

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from arrears.models import AuditEvent, ContactPoint
from arrears.settings import get_settings
from arrears.storage import database_file, read_only
from deployments.cli import app as cli
from deployments.webhooks import LifecycleRunner, create_app
from tests.factories import account_record
from tests.test_webhooks import CN_PHONE, US_PHONE, _aliyun_post, _cn, _import, _sms_up, _twilio_post

audit = AuditEvent.__table__  # type: ignore[attr-defined]
contact = ContactPoint.__table__  # type: ignore[attr-defined]

WAIT = 0.3  # ARREARS_WEBHOOK_STORE_WAIT here: the lock below is held longer


@pytest.fixture
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The settings the webhook server reads: a short store wait and a spool of the test's own."""
    directory = tmp_path / "spool"
    monkeypatch.setenv("ARREARS_WEBHOOK_STORE_WAIT", str(WAIT))
    monkeypatch.setenv("ARREARS_WEBHOOK_SPOOL_DIR", str(directory))
    get_settings.cache_clear()
    yield directory
    get_settings.cache_clear()


@pytest.fixture
def runner() -> Iterator[LifecycleRunner]:
    r = LifecycleRunner(run=lambda *_: None)
    yield r
    r.close()


@contextmanager
def import_holding_the_lock(url: str) -> Iterator[None]:
    """Another connection in BEGIN IMMEDIATE until the block ends, as an import of a large file."""
    database = database_file(url)
    assert database is not None
    holder = sqlite3.connect(database, isolation_level=None, timeout=5)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def _opt_outs(engine: Engine) -> int:
    """Opt-out events, read without the write lock (an import may hold it)."""
    with read_only(engine) as c:
        return len(c.execute(select(audit.c.id).where(audit.c.kind == "opt_out")).all())


def _opted_out(engine: Engine, address: str) -> bool:
    with read_only(engine) as c:
        found = c.execute(select(contact.c.opted_out_at).where(contact.c.address == address)).scalar()
    return found is not None


class Spool:
    """What the spool directory holds, read as an operator would: `*.json` files, `failed/`.
    (Not `arrears.spool`: the test reads the directory, not the code under test.)"""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def pending(self) -> list[Path]:
        return sorted(self.directory.glob("[!.]*.json"))

    def failed(self) -> int:
        return len(list((self.directory / "failed").glob("*.json")))


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_stop_posted_during_an_import_is_acknowledged_spooled_and_stored_once_the_lock_frees(
    sqlite_engine: Engine,
    sqlite_url: str,
    spool_dir: Path,
    providers: Any,
    sms_sandbox: Any,
    runner: LifecycleRunner,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Twilio does not post an inbound text again: answered 500 after SQLite's 30 s busy wait, the
    STOP was lost. Now it is answered empty TwiML within the store wait and kept in the spool; the
    drainer records it when the import ends; posted again, during an import or not, it is still one
    opt-out. No log line shows the number."""
    _import(sqlite_engine, tmp_path, account_record(account_id="A-1"))
    app = create_app(engine=sqlite_engine, sms_providers=providers, lifecycle=runner)
    form = {"From": US_PHONE, "To": "+15005550006", "Body": "STOP", "MessageSid": "SM" + "6" * 32}
    token = sms_sandbox.credentials["auth_token"]
    spool = Spool(spool_dir)
    caplog.set_level(logging.INFO, logger="arrears.webhooks")
    with TestClient(app) as client:
        with import_holding_the_lock(sqlite_url):
            started = time.monotonic()
            answer = _twilio_post(client, "/sms/twilio/inbound", form, token)
            took = time.monotonic() - started
            assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/xml")
            assert took < WAIT + 2, took  # within the store wait, far under Twilio's 15 s
            assert _opt_outs(sqlite_engine) == 0 and not _opted_out(sqlite_engine, US_PHONE)
            assert len(spool.pending()) == 1
            time.sleep(2 * WAIT)  # the drainer tries meanwhile, and waits for the lock too
            assert _opt_outs(sqlite_engine) == 0 and len(spool.pending()) == 1
        assert _until(lambda: _opt_outs(sqlite_engine) == 1 and not spool.pending())
        assert _opted_out(sqlite_engine, US_PHONE)

        assert _twilio_post(client, "/sms/twilio/inbound", form, token).status_code == 200  # stored now
        with import_holding_the_lock(sqlite_url):
            assert _twilio_post(client, "/sms/twilio/inbound", form, token).status_code == 200
            assert len(spool.pending()) == 1
        assert _until(lambda: not spool.pending())
    assert _opt_outs(sqlite_engine) == 1
    assert spool.failed() == 0
    lines = [r.getMessage() for r in caplog.records]
    assert any("kept in the spool (1 waiting)" in line for line in lines)
    assert any("callbacks stored" in line for line in lines)
    assert not any("2133734253" in line for line in lines)


def test_an_aliyun_unsubscribe_waits_in_the_spool_behind_which_later_callbacks_queue(
    sqlite_engine: Engine,
    sqlite_url: str,
    spool_dir: Path,
    providers: Any,
    sms_sandbox: Any,
    runner: LifecycleRunner,
    tmp_path: Path,
) -> None:
    """Aliyun's SmsUp with 退订, pushed during an import, is answered as Aliyun expects and kept;
    a second push of the array while it waits queues behind it; both stored: one opt-out."""
    _import(sqlite_engine, tmp_path, _cn(account_id="A-CN"))
    app = create_app(engine=sqlite_engine, sms_providers=providers, lifecycle=runner)
    token = sms_sandbox.credentials["callback_token"]
    stop = [_sms_up("退订", "2026-12-01 10:00:00", 21)]
    spool = Spool(spool_dir)
    with TestClient(app) as client:
        with import_holding_the_lock(sqlite_url):
            for _ in range(2):
                answer = _aliyun_post(client, "/sms/sandbox/inbound", stop, token)
                assert (answer.status_code, answer.json()) == (200, {"code": 0, "msg": "成功"})
            assert len(spool.pending()) == 2 and _opt_outs(sqlite_engine) == 0
        assert _until(lambda: not spool.pending())
    assert _opt_outs(sqlite_engine) == 1 and _opted_out(sqlite_engine, CN_PHONE)


def test_what_a_crash_left_in_the_spool_is_stored_at_start_up(
    sqlite_engine: Engine,
    sqlite_url: str,
    spool_dir: Path,
    providers: Any,
    sms_sandbox: Any,
    runner: LifecycleRunner,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A STOP spooled by a server that died before its drainer ran (no lifespan: no drainer) is
    shown by `arrears report` and stored by the next server as it starts, before any callback comes."""
    _import(sqlite_engine, tmp_path, account_record(account_id="A-1"))
    form = {"From": US_PHONE, "To": "+15005550006", "Body": "STOP", "MessageSid": "SM" + "9" * 32}
    token = sms_sandbox.credentials["auth_token"]
    dead = TestClient(create_app(engine=sqlite_engine, sms_providers=providers, lifecycle=runner))
    with import_holding_the_lock(sqlite_url):
        assert _twilio_post(dead, "/sms/twilio/inbound", form, token).status_code == 200
    assert len(Spool(spool_dir).pending()) == 1 and _opt_outs(sqlite_engine) == 0
    report = CliRunner().invoke(cli, ["report", "--database", sqlite_url, "--json"], catch_exceptions=False)
    assert json.loads(report.stdout)["webhook_spool"] == {
        "waiting": 1,
        "failed": 0,
        "directory": str(spool_dir),
    }
    told = CliRunner().invoke(cli, ["report", "--database", sqlite_url], catch_exceptions=False)
    assert "webhook spool: 1 callbacks acknowledged and waiting to be stored" in " ".join(told.stdout.split())

    caplog.set_level(logging.INFO, logger="arrears.webhooks")
    app = create_app(engine=sqlite_engine, sms_providers=providers, lifecycle=runner)
    with TestClient(app):
        assert _until(lambda: _opt_outs(sqlite_engine) == 1)
    assert Spool(spool_dir).pending() == []
    assert any("1 callbacks waiting to be stored" in r.getMessage() for r in caplog.records)


def test_a_spooled_callback_that_cannot_be_stored_is_set_aside_for_operators(
    sqlite_engine: Engine,
    spool_dir: Path,
    providers: Any,
    runner: LifecycleRunner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A spool file that is not a callback (damaged) is neither lost nor tried forever: moved to
    `failed/`, kept in the audit trail as `unreadable_callback` (numbers masked), logged as an error;
    the callbacks behind it are still stored."""
    spool = Spool(spool_dir)
    spool_dir.mkdir()
    damaged = spool_dir / "00000000000000000001-1.json"
    damaged.write_text(json.dumps({"kind": "sms", "items": [{"type": "Nothing", "sender": US_PHONE}]}))
    caplog.set_level(logging.INFO, logger="arrears.webhooks")
    with TestClient(create_app(engine=sqlite_engine, sms_providers=providers, lifecycle=runner)):
        assert _until(lambda: spool.failed() == 1)
    assert spool.pending() == [] and (spool_dir / "failed" / damaged.name).is_file()
    with read_only(sqlite_engine) as c:
        kept = c.execute(select(audit.c.data).where(audit.c.kind == "unreadable_callback")).scalars().all()
    assert len(kept) == 1 and "could not be stored" in kept[0]["reason"]
    assert "2133734253" not in json.dumps(kept)
    assert any(r.levelno == logging.ERROR and "set aside" in r.getMessage() for r in caplog.records)


def test_a_bounded_write_leaves_the_pooled_connection_its_usual_busy_wait(sqlite_engine: Engine) -> None:
    """The short wait is the webhook's alone: the connection goes back to the pool, and the next
    writer (a cycle's shard) waits SQLite's usual 30 s again."""
    from arrears.storage import bounded_writer

    def busy_timeout(engine: Engine) -> int:
        with engine.begin() as c:
            return int(c.exec_driver_sql("PRAGMA busy_timeout").scalar_one())

    with bounded_writer(sqlite_engine, WAIT) as writer:
        assert busy_timeout(writer) == pytest.approx(WAIT * 1000, abs=50)
    assert busy_timeout(sqlite_engine) == 30_000
