"""The outbox's exactly-once guarantees (DESIGN §5, §4): leases, lookups after a crash, delivery
reports in any order, quarantine retries, idempotency keys and caps. Real SQLite databases and the
sandbox SMS server in its own process."""

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from arrears.clock import business_date, parse_instant
from arrears.models import Message, utcnow
from arrears.settings import get_settings
from arrears.storage import outbox
from arrears.storage.tables import early_report
from integrations.providers import build_provider
from tests.later_stage_helpers import import_rows, refresh_later, rows, us_account

message_t = Message.__table__  # type: ignore[attr-defined]
LEASE = timedelta(minutes=10)
DUE = "2026-12-01T16:00:00Z"  # 10:00 in Chicago: a reminder due at once


@pytest.fixture
def db(sqlite_engine: Engine, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, sms_sandbox: Any) -> Engine:
    """The SQLite database the tasks open, sending through the real sandbox SMS server."""
    monkeypatch.setenv("ARREARS_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    return sqlite_engine


def _advance(as_of: str, lo: str = "A", hi: str | None = None) -> dict[str, int]:
    """The cycle's refresh and advance for the accounts from `lo`: their messages written."""
    from tasks.cycle import Shard, advance_shard
    from tasks.database import engine

    refresh_later(engine(), as_of)
    instant = parse_instant(as_of)
    day = business_date(instant, get_settings().lender_timezone)
    return advance_shard.fn(Shard(0, lo, hi), instant, day, None)


def _dispatch(as_of: str, *, account_id: str | None = None, owner: str | None = None) -> dict[str, int]:
    """One dispatch batch over the whole outbox (or one account's rows), as a run sends it."""
    from tasks.providers import sms_config, sms_session
    from tasks.sending import Batch, send_batch

    with sms_session():
        return send_batch(
            Batch(0, 0, None, account_id, owner), parse_instant(as_of), None, sms_config()
        ).counts


def _provider(sandbox: Any) -> Any:
    return build_provider("sms", "sandbox", sandbox.base_url, dict(sandbox.credentials))


def _lease(engine: Engine, as_of: str, *, owner: str, wall: datetime, until: datetime) -> list[Any]:
    """A run's lease of every due row, taken at `wall` until `until`, and the rows as it loaded them."""
    with engine.begin() as c:
        claimed = outbox.claim_batch(
            c, lo=0, hi=None, now=parse_instant(as_of), wall=wall, lease_until=until, owner=owner
        )
        return outbox.load_batch(c, claimed, now=parse_instant(as_of))


def _installation(engine: Engine) -> str:
    from arrears.storage.installation import installation_id

    with engine.begin() as c:
        return installation_id(c)


def test_single_account_path_never_takes_a_live_runs_lease_that_ran_out(
    db: Engine, tmp_path: Path, sms_sandbox: Any
) -> None:
    """A cycle batch still sending after its ten-minute lease ran out (a slow, rate-limited
    provider) keeps its rows: a reply's single-account run meanwhile neither looks them up nor
    sends them, so the batch's own send is the only one."""
    from tasks.sending import request_of

    import_rows(db, tmp_path, [us_account("A-L1")])
    _advance(DUE)
    now = utcnow()
    [row] = _lease(
        db, DUE, owner="cycle-7:run", wall=now - timedelta(minutes=11), until=now - timedelta(minutes=1)
    )

    counts = _dispatch(DUE, account_id="A-L1")  # the webhook's account_lifecycle, mid-batch
    assert counts.get("sent", 0) + counts.get("delivered", 0) == 0
    assert len(sms_sandbox.messages()) == 0

    with _provider(sms_sandbox) as provider:  # the cycle's batch reaches the row's round
        provider.send_batch([request_of(row, _installation(db))])
    assert len(sms_sandbox.messages()) == 1


def test_rows_of_a_dead_run_handed_over_go_to_the_single_account_path_after_a_lookup(
    db: Engine, tmp_path: Path, sms_sandbox: Any
) -> None:
    """Once a run holding the lock handed a dead run's rows over, the single-account path takes
    them, looks each up first, and records the one the dead run sent as sent, sending nothing."""
    from tasks.sending import request_of

    import_rows(db, tmp_path, [us_account("A-L2")])
    _advance(DUE)
    now = utcnow()
    [row] = _lease(db, DUE, owner="cycle-3:dead", wall=now - timedelta(minutes=11), until=now + LEASE)
    with _provider(sms_sandbox) as provider:  # the dead run's send, never recorded
        provider.send_batch([request_of(row, _installation(db))])
    with db.begin() as c:  # the next cycle or dispatch, under the run lock
        assert outbox.expire_dead_leases(c, owner="cycle-4:alive") == 1

    counts = _dispatch(DUE, account_id="A-L2")
    assert counts.get("sent", 0) + counts.get("delivered", 0) == 1
    assert len(sms_sandbox.messages()) == 1
    [recorded] = rows(db, message_t, "A-L2")
    assert recorded.status in ("sent", "delivered") and recorded.lease_until is None


def test_quarantine_retry_right_after_the_cycle_sends_the_message_the_cycle_left(
    db: Engine, tmp_path: Path, sms_sandbox: Any
) -> None:
    """A due message of an account in quarantine is left by the cycle's batch untried; the
    operator's retry minutes later (its single-account path) sends it, not the next run."""
    from arrears.storage import quarantine
    from arrears.storage.quarantine import What

    import_rows(db, tmp_path, [us_account("A-Q1"), us_account("A-Q2")])
    _advance(DUE)
    with db.begin() as c:
        entry = quarantine.put(
            c,
            what=What.ACCOUNT,
            ref="A-Q1",
            account_id="A-Q1",
            step="advance",
            error_type="E",
            error="bad data",
            at=parse_instant(DUE),
        )
    counts = _dispatch(DUE, owner="cycle-1:run")  # the cycle sends the other account's message only
    assert counts.get("sent", 0) + counts.get("delivered", 0) == 1
    with db.begin() as c:  # `arrears quarantine retry`: released, then the account's own path
        assert quarantine.release(c, entry, at=utcnow())
    counts = _dispatch(DUE, account_id="A-Q1")
    assert counts.get("sent", 0) + counts.get("delivered", 0) == 1
    [sent] = rows(db, message_t, "A-Q1")
    assert sent.status in ("sent", "delivered") and len(sms_sandbox.messages()) == 2


def test_another_databases_send_of_the_same_key_is_never_taken_for_ours(
    db: Engine, tmp_path: Path, sms_sandbox: Any
) -> None:
    """Two databases (a copy is another installation, DESIGN §3) text the same account through one
    provider account: after a crash, ours looks up its own message and finds it unsent, never the
    other database's send of the same account, stage and episode; so ours is sent."""
    from arrears.storage import get_engine, migrate
    from tasks.sending import request_of

    other = get_engine(f"sqlite:///{tmp_path / 'other.db'}")
    migrate(other)
    for engine in (other, db):
        import_rows(engine, tmp_path, [us_account("A-I1")])
    _advance(DUE)  # ours
    [ours] = rows(db, message_t, "A-I1")
    with db.begin() as c:  # the other database's row, with the same key: it sends it
        theirs = c.execute(select(message_t).where(message_t.c.id == ours.id)).one()
    with _provider(sms_sandbox) as provider:
        provider.send_batch([request_of(theirs, _installation(other))])
    now = utcnow()
    _lease(db, DUE, owner="cycle-1:dead", wall=now, until=now + LEASE)  # ours: killed before the call
    with db.begin() as c:
        outbox.expire_dead_leases(c, owner="cycle-2:alive")

    _dispatch(DUE, owner="cycle-2:alive")
    assert len(sms_sandbox.messages()) == 2


def test_batch_that_raises_after_the_provider_accepted_is_looked_up_by_its_retry(
    db: Engine, tmp_path: Path, sms_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose outcomes could not be written after the provider took its sends (the
    database gone for a moment) loses nothing and sends nothing twice: its task's retry finds
    each send at the provider and records it sent."""
    import_rows(db, tmp_path, [us_account("A-R1"), us_account("A-R2")])
    _advance(DUE)
    real = outbox.record_outcomes

    def lost(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(outbox, "record_outcomes", lost)
    with pytest.raises(RuntimeError):
        _dispatch(DUE, owner="cycle-1:run")
    assert len(sms_sandbox.messages()) == 2
    monkeypatch.setattr(outbox, "record_outcomes", real)

    counts = _dispatch(DUE, owner="cycle-1:run")  # the task's retry, the same run's lease
    assert counts.get("sent", 0) + counts.get("delivered", 0) == 2
    assert len(sms_sandbox.messages()) == 2
    for account_id in ("A-R1", "A-R2"):
        [row] = rows(db, message_t, account_id)
        assert row.status in ("sent", "delivered") and row.lease_until is None


def test_receipts_before_a_crashed_send_is_found_apply_once_it_is_recorded(
    db: Engine, tmp_path: Path, sms_sandbox: Any
) -> None:
    """Receipts of a send a killed run never recorded (delivered twice, then a late `sent`) are
    kept, and applied once the lookup records the send: delivered, counted once."""
    from arrears.storage.delivery_reports import StatusReport, apply_delivery_reports
    from arrears.vocabulary import MessageStatus
    from tasks.sending import request_of

    import_rows(db, tmp_path, [us_account("A-E1")])
    _advance(DUE)
    now = utcnow()
    [row] = _lease(db, DUE, owner="cycle-1:dead", wall=now, until=now + LEASE)
    with _provider(sms_sandbox) as provider:
        [sent] = provider.send_batch([request_of(row, _installation(db))])
    at = parse_instant(DUE)
    reports = [
        StatusReport(sent.provider_id, MessageStatus.DELIVERED, at),
        StatusReport(sent.provider_id, MessageStatus.DELIVERED, at),
        StatusReport(sent.provider_id, MessageStatus.SENT, at),
    ]
    for report in reports:
        with db.begin() as c:
            applied = apply_delivery_reports(c, provider="sandbox", reports=[report])
            assert applied.changed == []
    with db.begin() as c:
        outbox.expire_dead_leases(c, owner="cycle-2:alive")

    _dispatch(DUE, owner="cycle-2:alive")
    [recorded] = rows(db, message_t, "A-E1")
    assert (recorded.status, recorded.provider_id) == ("delivered", sent.provider_id)
    assert len(sms_sandbox.messages()) == 1
    with db.connect() as c:  # applied (or overtaken by the lookup's own status), then forgotten
        assert c.execute(select(early_report)).all() == []


def test_send_a_crashed_run_made_through_a_real_provider_is_recorded_when_it_went(
    db: Engine, tmp_path: Path, sms_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a provider whose texts reach phones, every send is recorded at the hour it went,
    whatever the run's `--as-of`: one a killed run made, found by its rerun as of a morning long
    past, is recorded at the wall clock, not at that morning."""
    import json

    from tasks.dispatch import reconcile_in_doubt
    from tasks.providers import sms_session
    from tasks.sending import request_of

    monkeypatch.setenv("ARREARS_SMS_PROVIDER", "twilio")  # the Twilio shape, served by the sandbox
    monkeypatch.setenv("ARREARS_SMS_CREDENTIALS", json.dumps(dict(sms_sandbox.credentials)))
    get_settings.cache_clear()
    import_rows(db, tmp_path, [us_account("A-W1")])
    _advance(DUE)
    before = utcnow()
    [row] = _lease(db, DUE, owner="cycle-1:dead", wall=before, until=before + LEASE)
    with sms_session() as provider:
        assert not provider.info.simulated
        provider.send_batch([request_of(row, _installation(db))])
        counts = reconcile_in_doubt.fn(parse_instant(DUE), None, "cycle-2:alive")
    assert counts["found_sent"] == 1
    [recorded] = rows(db, message_t, "A-W1")
    assert recorded.status in ("sent", "delivered")
    assert before - timedelta(seconds=5) <= recorded.sent_at <= utcnow()
