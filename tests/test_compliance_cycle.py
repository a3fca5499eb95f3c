"""The compliance guard in the cycle (issue 4): caps counted from the message log in bulk, a late
opt-out blocking the send, the compliance report over a simulated month, and no number left
unmasked in the logs and artifacts of a cycle. Real databases (SQLite and PostgreSQL), real
importer, real sandbox SMS server."""

import json
import logging
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, insert, select, update
from typer.testing import CliRunner

from arrears.clock import business_date
from arrears.compliance.report import compliance_report
from arrears.importing import Kind, open_source
from arrears.models import AccountHold, ContactPoint, Message
from arrears.policy import DEFAULT_POLICY
from arrears.settings import get_settings
from arrears.simulate import generate_portfolio, simulate_payments, write_accounts_file, write_payments_file
from arrears.storage import cycle as store
from arrears.storage import outbox
from arrears.storage.importer import run_import
from tests.factories import account_record, write_csv

message = Message.__table__  # type: ignore[attr-defined]
hold = AccountHold.__table__  # type: ignore[attr-defined]
contact = ContactPoint.__table__  # type: ignore[attr-defined]

CN_NIGHT = datetime(2026, 12, 1, 16, 30, tzinfo=UTC)  # 00:30 in Shanghai
CN_MORNING = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai
CN_NOON = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)


def _cn(**kw: str) -> dict[str, str]:
    cn = {
        "borrower_name": "王芳",
        "phone": "13912345678",
        "timezone": "Asia/Shanghai",
        "jurisdiction": "CN",
        "currency": "CNY",
        "balance": "60000.00",
        "installment_amount": "3000.00",
        "past_due_amount": "3000.00",
        "oldest_due_date": "2026-11-26",  # 5 days past due on 1 December
    }
    return account_record(**(cn | kw))


def _import(
    engine: Engine, tmp_path: Path, records: list[dict[str, str]], *, now: datetime | None = None
) -> None:
    path = write_csv(tmp_path / f"accounts-{len(list(tmp_path.iterdir()))}.csv", records)
    summary = run_import(engine, open_source(path, Kind.ACCOUNTS), now=now)
    assert summary.rejected == 0, summary.first_rejections


@pytest.fixture
def cycle_db(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, sms_sandbox: Any) -> Engine:
    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    return engine


def _dispatch(instant: datetime, cycle_id: int | None = None) -> dict[str, int]:
    """The dispatch of the cycle, as the flow runs it, through the task bodies (no Prefect run)."""
    from tasks.dispatch import dispatch_batch, plan_dispatch
    from tasks.providers import sms_session

    counts: dict[str, int] = {}
    with sms_session():
        for batch in plan_dispatch.fn(instant, get_settings().dispatch_batch):
            for k, v in dispatch_batch.fn(batch, instant, cycle_id).items():
                counts[k] = counts.get(k, 0) + v
    return counts


def _advance(instant: datetime) -> int:
    """A daily cycle up to its dispatch (open, refresh, every shard), through the task bodies the
    `daily_cycle` flow calls, in the same order; the cycle's id."""
    from tasks.cycle import advance_shard, begin_cycle, plan_shards, refresh

    settings = get_settings()
    day = business_date(instant, settings.lender_timezone)
    cycle_id = begin_cycle.fn(instant, day).cycle_id
    assert cycle_id is not None
    refresh.fn(instant, day, cycle_id)
    for shard in plan_shards.fn(settings.shard_size):
        advance_shard.fn(shard, instant, day, cycle_id)
    return cycle_id


def _cycle(instant: datetime) -> dict[str, int]:
    """One daily cycle through the task bodies the `daily_cycle` flow calls, in the same order."""
    from tasks.cycle import close_cycle

    cycle_id = _advance(instant)
    counts = _dispatch(instant, cycle_id)
    close_cycle.fn(cycle_id, {})
    return counts


def _messages(engine: Engine) -> list[Any]:
    with engine.connect() as c:
        return list(c.execute(select(message).order_by(message.c.id)))


# --- caps from the message log, in bulk ------------------------------------------------------------


def test_load_shard_reads_each_borrowers_history_with_a_fixed_number_of_queries(
    engine: Engine, tmp_path: Path
) -> None:
    """The contact history of a shard is read in one query whatever its size: the statements issued
    by load_shard do not grow with the accounts, and each account gets its borrower's contacts
    (other loans included, stale and old ones left out)."""
    records = [
        _cn(account_id=f"A-{i}", borrower_id=f"B-{i // 2}", phone=f"1391234{i // 2:04d}") for i in range(20)
    ]
    _import(engine, tmp_path, records)
    with engine.begin() as c:
        owner = {"A-0": "reminder", "A-1": "reminder"}
        c.execute(
            update(store.account)
            .where(store.account.c.account_id.in_(owner))
            .values(stage="reminder", episode=1)
        )
        base = {
            "channel": "sms",
            "address": "+8613912340000",
            "template": "reminder",
            "params": {},
            "body": "x",
            "attempts": 0,
            "created_at": CN_MORNING,
            "sent_at": None,
        }
        c.execute(
            insert(message),
            [
                base
                | {
                    "idempotency_key": "k1",
                    "account_id": "A-1",
                    "stage": "reminder",
                    "episode": 1,
                    "status": "sent",
                    "not_before": CN_MORNING - timedelta(days=2),
                    "sent_at": CN_MORNING - timedelta(days=2),
                },
                base
                | {
                    "idempotency_key": "k2",
                    "account_id": "A-1",
                    "stage": "reminder",
                    "episode": 1,
                    "status": "sent",
                    "not_before": CN_MORNING - timedelta(days=30),
                    "sent_at": CN_MORNING - timedelta(days=30),
                },
                base
                | {
                    "idempotency_key": "k3",
                    "account_id": "A-0",
                    "stage": "reminder",
                    "episode": 1,
                    "status": "scheduled",
                    "not_before": CN_NOON,
                },
                base
                | {
                    "idempotency_key": "k4",
                    "account_id": "A-0",
                    "stage": "reminder",
                    "episode": 0,
                    "status": "scheduled",
                    "not_before": CN_NOON,
                },  # an earlier episode: stale
            ],
        )

    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(engine, "before_cursor_execute", count)
    try:
        with engine.connect() as c:
            store.load_shard(
                c,
                lo="A-0",
                hi="A-0",
                business_date=date(2026, 12, 2),
                lender="L",
                lender_timezone="Asia/Shanghai",
            )  # warm-up
            statements.clear()
            small = store.load_shard(
                c,
                lo="A-0",
                hi="A-10",
                business_date=date(2026, 12, 2),
                lender="L",
                lender_timezone="Asia/Shanghai",
            )
            few = len(statements)
            statements.clear()
            rows = store.load_shard(
                c,
                lo="A-0",
                hi=None,
                business_date=date(2026, 12, 2),
                lender="L",
                lender_timezone="Asia/Shanghai",
            )
            many = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert few == many and len(rows) == 20 > len(small)
    history = {r.view.account_id: r.facts.history for r in rows}
    assert history["A-0"] == history["A-1"]  # one borrower, one history
    assert sorted((h.account_id, h.in_flight) for h in history["A-0"]) == [("A-0", True), ("A-1", False)]
    assert history["A-2"] == ()
    assert all(r.facts.context is not None and r.facts.address for r in rows)


def test_load_shard_names_the_outbox_keys_of_the_stage_episode_each_account_is_in(
    engine: Engine, tmp_path: Path
) -> None:
    """The messages an account already has in the outbox for its stage and episode, whatever
    their status, are named so that the rules do not decide them again; those of an earlier
    episode or another stage are not, nor another account's."""
    _import(engine, tmp_path, [_cn(account_id=f"A-{i}", borrower_id=f"B-{i}") for i in range(3)])
    with engine.begin() as c:
        c.execute(update(store.account).values(stage="reminder", episode=2))
        base = {"channel": "sms", "address": "+8613912340000", "template": "reminder", "params": {}}
        base |= {"body": "x", "attempts": 0, "created_at": CN_MORNING, "not_before": CN_MORNING}
        c.execute(
            insert(message),
            [
                base
                | {"idempotency_key": key, "account_id": account, "stage": stage, "episode": episode}
                | {"status": status}
                for key, account, stage, episode, status in (
                    ("A-0:reminder:2:day-1", "A-0", "reminder", 2, "sent"),
                    ("A-0:reminder:2:day-5", "A-0", "reminder", 2, "blocked"),
                    ("A-0:reminder:1:day-5", "A-0", "reminder", 1, "sent"),  # an earlier episode
                    ("A-1:negotiation:2:ask-0", "A-1", "negotiation", 2, "scheduled"),  # another stage
                )
            ],
        )
    with engine.connect() as c:
        rows = store.load_shard(
            c, lo="A-0", hi=None, business_date=date(2026, 12, 2), lender="L", lender_timezone="Asia/Shanghai"
        )
    assert {r.view.account_id: r.facts.decided for r in rows} == {
        "A-0": frozenset({"A-0:reminder:2:day-1", "A-0:reminder:2:day-5"}),
        "A-1": frozenset(),
        "A-2": frozenset(),
    }


def _aged_outbox(engine: Engine, tmp_path: Path) -> dict[str, int]:
    """Three accounts in their sixth reminder episode, two of them one borrower's, each with 30
    messages of its past episodes delivered long ago, and around them the rows the caps and the
    keys must tell apart (see the names); the outbox ids by idempotency key."""
    _import(
        engine,
        tmp_path,
        [
            _cn(account_id="A-0", borrower_id="B-0"),
            _cn(account_id="A-1", borrower_id="B-0"),
            _cn(account_id="A-2", borrower_id="B-2", phone="13912349999"),
        ],
    )
    base = {"channel": "sms", "address": "+8613912345678", "template": "reminder", "params": {}}
    base |= {"body": "x", "attempts": 1, "stage": "reminder"}
    rows = [
        base
        | {"idempotency_key": f"{a}:reminder:{1 + n // 6}:old-{n}", "account_id": a, "episode": 1 + n // 6}
        | {"status": "delivered", "not_before": (at := CN_MORNING - timedelta(days=200 - n)), "sent_at": at}
        for a in ("A-0", "A-1", "A-2")
        for n in range(30)
    ]
    named = {
        # key: (account, episode, status, sent days before CN_MORNING (None: unsent))
        "A-0:old-episode-sent-yesterday": ("A-0", 5, "delivered", 1),
        "A-0:old-episode-scheduled": ("A-0", 5, "scheduled", None),  # stale: refused when due
        "A-0:sent-20-days-ago": ("A-0", 6, "delivered", 20),
        "A-0:blocked": ("A-0", 6, "blocked", None),
        "A-0:in-flight": ("A-0", 6, "scheduled", None),
        "A-0:in-flight-sent-at-recorded": ("A-0", 6, "scheduled", 2),
        "A-1:sent-today": ("A-1", 6, "sent", 0),
    }
    rows += [
        base
        | {"idempotency_key": key, "account_id": a, "episode": episode, "status": status}
        | {"not_before": CN_MORNING - timedelta(days=days or 0), "sent_at": None}
        | ({} if days is None else {"sent_at": CN_MORNING - timedelta(days=days)})
        for key, (a, episode, status, days) in named.items()
    ]
    with engine.begin() as c:
        c.execute(update(store.account).values(stage="reminder", episode=6))
        c.execute(insert(message), rows)
        return {key: id_ for key, id_ in c.execute(select(message.c.idempotency_key, message.c.id))}


def test_caps_and_outbox_keys_leave_out_an_accounts_old_episodes(engine: Engine, tmp_path: Path) -> None:
    """With years of messages an account, the caps still count the borrower's sends of the last
    days (of any episode and any of its loans) and what is in flight in the episode each account
    is in, each once; the advance skips the keys of that episode alone, whatever their status."""
    from arrears.storage.history import contact_history

    ids = _aged_outbox(engine, tmp_path)
    keys = {v: k for k, v in ids.items()}
    with engine.connect() as c:
        rows = store.load_shard(
            c, lo="A-0", hi=None, business_date=date(2026, 12, 2), lender="L", lender_timezone="Asia/Shanghai"
        )
        batch = contact_history(
            c,
            borrowers=["B-0"],
            since=CN_MORNING - DEFAULT_POLICY.longest_cap_window(),
            exclude=[ids["A-0:in-flight"]],
        )
    history = {
        r.view.account_id: sorted((keys[h.message_id], h.in_flight) for h in r.facts.history) for r in rows
    }
    borrower = [
        ("A-0:in-flight", True),
        ("A-0:in-flight-sent-at-recorded", True),
        ("A-0:old-episode-sent-yesterday", False),
        ("A-1:sent-today", False),
    ]
    assert history == {"A-0": borrower, "A-1": borrower, "A-2": []}
    assert {r.view.account_id: r.facts.decided for r in rows} == {
        "A-0": {"A-0:sent-20-days-ago", "A-0:blocked", "A-0:in-flight", "A-0:in-flight-sent-at-recorded"},
        "A-1": {"A-1:sent-today"},
        "A-2": frozenset(),
    }
    assert sorted(keys[h.message_id] for h in batch["B-0"]) == [
        k for k, _ in borrower if k != "A-0:in-flight"
    ]


def test_caps_and_outbox_keys_are_read_without_visiting_an_accounts_old_messages(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """Every shard of the advance and every dispatch batch reads its accounts' sends of the last
    days, in-flight messages and outbox keys of the current episode. Indexed by account alone,
    each read visited every message the account ever had (with 30 old ones an account, the
    advance's load of a shard cost 2.6 times what it did with none): each goes from the account
    straight to the rows it wants, by (account, episode, stage) or (account, sent_at), never by
    status (`ix_message_due` is every scheduled row of the outbox)."""
    from arrears.storage.history import contact_history

    ids = _aged_outbox(sqlite_engine, tmp_path)
    sent: list[tuple[str, Any]] = []
    event.listen(sqlite_engine, "before_cursor_execute", lambda *args: sent.append((args[2], args[3])))
    with sqlite_engine.connect() as c:
        store.load_shard(
            c, lo="A-0", hi=None, business_date=date(2026, 12, 2), lender="L", lender_timezone="Asia/Shanghai"
        )
        contact_history(c, borrowers=["B-0", "B-2"], since=CN_MORNING, exclude=[ids["A-0:in-flight"]])
        reads = [(q, p) for q, p in sent if "FROM message" in q or "JOIN message" in q]
        plans = [[r[3] for r in c.exec_driver_sql("EXPLAIN QUERY PLAN " + q, p)] for q, p in reads]
    steps = [step for plan in plans for step in plan if step.startswith(("SEARCH message", "SCAN message"))]
    assert len(reads) == 3 and len(steps) == 5, plans  # the keys; the shard's history, the batch's
    wanted = (
        "SEARCH message USING INDEX ix_message_account_episode (account_id=? AND episode=? AND stage=?)",
        "SEARCH message USING INDEX ix_message_account_sent (account_id=? AND sent_at>?)",
    )
    assert all(step in wanted for step in steps), plans


def test_dispatch_counts_caps_from_the_log_and_from_its_own_batch(cycle_db: Engine, tmp_path: Path) -> None:
    """Four loans of one borrower all due a reminder at noon: three texts go, the fourth waits a
    week (`cap:sms-borrower-7d`); a second account of another borrower already texted today waits a day."""
    _import(
        cycle_db,
        tmp_path,
        [_cn(account_id=f"A-{i}", borrower_id="B-1") for i in range(4)]
        + [_cn(account_id="A-9", borrower_id="B-9", phone="13912349999")],
    )
    _cycle(CN_NOON)
    by_account = {m.account_id: m for m in _messages(cycle_db)}
    statuses = sorted((m.account_id, m.status, m.reason) for m in by_account.values())
    assert statuses == [
        ("A-0", "sent", None),
        ("A-1", "sent", None),
        ("A-2", "sent", None),
        ("A-3", "scheduled", "cap:sms-borrower-7d"),
        ("A-9", "sent", None),
    ]
    assert by_account["A-3"].not_before == CN_NOON + timedelta(days=7)

    # The next day's cycle decides the new cadence reminder of A-9 against the log: 1 a day per account.
    with cycle_db.begin() as c:
        c.execute(
            update(message).where(message.c.account_id == "A-9").values(sent_at=CN_NOON + timedelta(hours=5))
        )
    _import(
        cycle_db,
        tmp_path,
        [_cn(account_id="A-9", borrower_id="B-9", phone="13912349999", oldest_due_date="2026-11-23")],
    )  # now at day 10 of the cadence
    _cycle(CN_NOON + timedelta(days=1))
    nine = [m for m in _messages(cycle_db) if m.account_id == "A-9"]
    assert [(m.status, m.reason) for m in nine][-1] == ("scheduled", "cap:sms-account-1d")
    assert nine[-1].not_before == CN_NOON + timedelta(days=1, hours=5)


def test_sends_are_stored_at_exactly_their_instant(cycle_db: Engine, tmp_path: Path) -> None:
    """A send is recorded at the dispatch's instant in the stored form of every instant, so the
    cycle's own re-check, over [as_of, as_of + 1 µs), finds each of its sends."""
    _import(
        cycle_db,
        tmp_path,
        [_cn(account_id=f"A-{i}", borrower_id=f"B-{i}", phone=f"1391234{i:04d}") for i in range(3)],
    )
    assert _cycle(CN_NOON) == {"sent": 3}
    with cycle_db.connect() as c:
        report = compliance_report(
            c, start=CN_NOON, end=CN_NOON + timedelta(microseconds=1), policy=DEFAULT_POLICY
        )
        late = compliance_report(c, start=CN_NOON + timedelta(microseconds=1), policy=DEFAULT_POLICY)
    assert (report.sent_checked, report.violations, late.sent_checked) == (3, [], 0)


@pytest.mark.parametrize(("how", "reason"), [("number", "opt_out"), ("hold", "hold:sms_opt_out")])
def test_opt_out_between_scheduling_and_sending_blocks_the_send(
    cycle_db: Engine, tmp_path: Path, sms_sandbox: Any, how: str, reason: str
) -> None:
    """A STOP recorded after the message was scheduled for the morning (on the number, or as the
    webhook's sms_opt_out hold) blocks it at send time; the provider receives nothing."""
    _import(cycle_db, tmp_path, [_cn(account_id="A-CN")])
    _cycle(CN_NIGHT)
    [scheduled] = _messages(cycle_db)
    assert (scheduled.status, scheduled.reason) == ("scheduled", "hours:CN")
    with cycle_db.begin() as c:
        if how == "number":
            c.execute(update(contact).values(opted_out_at=CN_NIGHT + timedelta(hours=1)))
        else:
            c.execute(
                insert(hold).values(
                    account_id="A-CN",
                    kind="sms_opt_out",
                    source="webhook",
                    placed_at=CN_NIGHT + timedelta(hours=1),
                )
            )
    assert _dispatch(CN_MORNING) == {"blocked": 1}
    [blocked] = _messages(cycle_db)
    assert (blocked.status, blocked.reason) == ("blocked", reason)
    assert sms_sandbox.messages() == []


def test_a_leased_batch_brings_each_rows_history_without_the_batch(cycle_db: Engine, tmp_path: Path) -> None:
    """Leased rows carry their borrower's sent messages, never the rows of the batch itself."""
    _import(cycle_db, tmp_path, [_cn(account_id=f"A-{i}", borrower_id="B-1") for i in range(2)])
    _cycle(CN_NIGHT)  # both deferred to the morning
    with cycle_db.begin() as c:
        first = c.execute(select(message.c.id).order_by(message.c.id)).scalars().first()
        c.execute(update(message).where(message.c.id == first).values(status="sent", sent_at=CN_NIGHT))
        claimed = outbox.claim_batch(
            c, lo=0, hi=None, now=CN_MORNING, wall=CN_MORNING, lease_until=CN_MORNING + timedelta(minutes=5)
        )
        rows = outbox.load_batch(c, claimed, now=CN_MORNING)
    assert len(rows) == 1 and [h.message_id for h in rows[0].history] == [first]
    assert rows[0].history[0].in_flight is False


# --- the report ---------------------------------------------------------------------------------------


def test_report_lists_every_kind_of_violation_it_is_shown(cycle_db: Engine, tmp_path: Path) -> None:
    """Sends doctored after the fact (at night, under a hold, twice in a day, with a threat) are each
    found by the re-check, and the command exits 1 listing them with numbers masked."""
    import deployments.cli.compliance  # noqa: F401  (registers `compliance` until deployments/cli imports it)
    from deployments.cli import app

    _import(cycle_db, tmp_path, [_cn(account_id="A-CN")], now=CN_NOON - timedelta(days=3))
    _cycle(CN_NOON)
    with cycle_db.connect() as c:
        assert compliance_report(c, policy=DEFAULT_POLICY).violations == []
    night = CN_NOON + timedelta(hours=12)  # 00:00 in Shanghai
    with cycle_db.begin() as c:
        [sent] = c.execute(select(message)).all()
        c.execute(update(message).values(sent_at=night, body=sent.body + "否则后果自负。"))
        copy = {k: v for k, v in sent._mapping.items() if k != "id"}
        c.execute(insert(message).values(**{**copy, "idempotency_key": "again", "sent_at": night}))
        c.execute(
            insert(hold).values(account_id="A-CN", kind="dispute", placed_at=night - timedelta(hours=1))
        )
        c.execute(update(contact).values(opted_out_at=night - timedelta(minutes=5)))
    with cycle_db.connect() as c:
        found = compliance_report(c, policy=DEFAULT_POLICY)
    rules = sorted({v.rule for v in found.violations})
    assert rules == ["cap:sms-account-1d", "content:threat", "hold:dispute", "hours:CN", "opt_out"]

    result = CliRunner().invoke(app, ["compliance", "report", "--json", "--database", str(cycle_db.url)])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["sent_checked"] == 2 and set(data["violations_by_rule"]) == set(rules)
    assert "13912345678" not in result.output and "+86*******5678" in result.output


def _period(instant: datetime, cycle_id: int) -> dict[str, Any]:
    """The cycle's own compliance period, as its report reads it."""
    end = instant + timedelta(microseconds=1)
    lender = get_settings().lender_name
    return {"start": instant, "end": end, "policy": DEFAULT_POLICY, "lender": lender, "cycle_id": cycle_id}


def _cycle_report(engine: Engine, instant: datetime, cycle_id: int) -> tuple[Any, Any]:
    """(the re-checks the cycle's batches recorded, the cycle's compliance report made from them)."""
    from arrears.compliance.report import recorded_checks

    with engine.connect() as c:
        checked = recorded_checks(c, cycle_id)
        return checked, compliance_report(c, **_period(instant, cycle_id), checked=checked)


def _threaten(engine: Engine, account_id: str) -> None:
    """Alter a sent body after the fact: a threat the content rule finds."""
    with engine.begin() as c:
        c.execute(
            update(message)
            .where(message.c.account_id == account_id)
            .values(body=message.c.body + "否则后果自负。")
        )


def test_cycle_report_takes_each_batchs_recheck_and_recounts_the_caps_across_batches(
    cycle_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A send-time check that lets everything go (the fault the re-check exists to find), in batches
    of two: each batch's recorded re-check finds the dispute placed after the cycle decided; the
    borrower cap that four loans broke across two batches is found by the report's recount; the
    report says exactly what re-checking every send of the cycle says."""
    import tasks.sending

    monkeypatch.setenv("ARREARS_DISPATCH_BATCH", "2")
    get_settings.cache_clear()
    monkeypatch.setattr(tasks.sending, "_refusal", lambda *args, **kwargs: None)
    _import(
        cycle_db,
        tmp_path,
        [_cn(account_id=f"A-{i}", borrower_id="B-1") for i in range(4)]
        + [_cn(account_id="A-9", borrower_id="B-9", phone="13912349999")],
    )
    cycle_id = _advance(CN_NOON)
    with cycle_db.begin() as c:
        c.execute(
            insert(hold).values(account_id="A-9", kind="dispute", placed_at=CN_NOON - timedelta(minutes=1))
        )
    assert _dispatch(CN_NOON, cycle_id) == {"sent": 5}

    checked, report = _cycle_report(cycle_db, CN_NOON, cycle_id)
    with cycle_db.connect() as c:
        rescan = compliance_report(c, **_period(CN_NOON, cycle_id))
    assert checked is not None and checked.sent_checked == 5
    assert [(v.account_id, v.rule) for v in checked.violations] == [("A-9", "hold:dispute")]
    capped = {(v.account_id, v.rule) for v in report.violations if v.rule.startswith("cap:")}
    assert {a for a, _ in capped} == {"A-0", "A-1", "A-2", "A-3"} and ("A-3", "cap:sms-borrower-7d") in capped
    assert report.as_json() == rescan.as_json() and report.sent_checked == 5


@pytest.mark.parametrize(("lost", "found"), [(False, []), (True, ["content:threat"])])
def test_cycle_report_rechecks_every_send_when_a_batchs_recheck_is_missing(
    cycle_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lost: bool, found: list[str]
) -> None:
    """The cycle's report is what its batches found as they sent: a body altered afterwards is the
    period report's to find. A batch whose re-check was not recorded (it failed, or its process
    was killed between the two writes) leaves the count short, and the report then re-checks
    every send of the cycle itself, and finds it."""
    import tasks.sending
    from arrears.compliance.report import recheck_sends
    from arrears.storage.compliance import CHECK
    from arrears.storage.tables import audit

    monkeypatch.setenv("ARREARS_DISPATCH_BATCH", "1")
    get_settings.cache_clear()
    calls: list[int] = []

    def second_lost(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if lost and len(calls) == 2:
            raise RuntimeError("killed")
        return recheck_sends(*args, **kwargs)

    monkeypatch.setattr(tasks.sending, "recheck_sends", second_lost)
    records = [_cn(account_id=f"A-{i}", borrower_id=f"B-{i}", phone=f"1391234{i:04d}") for i in range(3)]
    _import(cycle_db, tmp_path, records)
    assert _cycle(CN_NOON) == {"sent": 3}
    with cycle_db.connect() as c:
        cycle_id = c.execute(select(audit.c.cycle_id).where(audit.c.kind == CHECK)).scalars().first()
    assert cycle_id is not None
    _threaten(cycle_db, "A-1")
    checked, report = _cycle_report(cycle_db, CN_NOON, cycle_id)
    assert checked is not None and checked.sent_checked == (2 if lost else 3)
    assert report.sent_checked == 3 and [v.rule for v in report.violations] == found


def test_cycle_report_takes_the_rechecks_of_every_attempt_at_its_instant(
    cycle_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cycle killed after its first batch and run again (a second cycle row at the same instant)
    is one cycle: its report counts the re-checks both attempts recorded, and needs no rescan
    (a body altered afterwards is left to the period report)."""
    from arrears.storage.tables import cycle_run
    from tasks.cycle import begin_cycle
    from tasks.dispatch import dispatch_batch, plan_dispatch
    from tasks.providers import sms_session

    monkeypatch.setenv("ARREARS_DISPATCH_BATCH", "1")
    get_settings.cache_clear()
    records = [_cn(account_id=f"A-{i}", borrower_id=f"B-{i}", phone=f"1391234{i:04d}") for i in range(3)]
    _import(cycle_db, tmp_path, records)
    first = _advance(CN_NOON)
    with sms_session():
        dispatch_batch.fn(plan_dispatch.fn(CN_NOON, 1)[0], CN_NOON, first)  # then killed
    with cycle_db.begin() as c:
        c.execute(update(cycle_run).where(cycle_run.c.id == first).values(running=None))
    again = begin_cycle.fn(CN_NOON, business_date(CN_NOON, get_settings().lender_timezone)).cycle_id
    assert again is not None and again != first
    assert _dispatch(CN_NOON, again) == {"sent": 2}
    _threaten(cycle_db, "A-2")
    checked, report = _cycle_report(cycle_db, CN_NOON, again)
    assert checked is not None and checked.sent_checked == 3
    assert (report.sent_checked, report.violations) == (3, [])


@pytest.mark.slow
def test_simulated_month_has_zero_violations_and_some_deferrals(cycle_db: Engine, tmp_path: Path) -> None:
    """Thirty simulated days of `arrears demo` (portfolio, payments, daily cycle, dispatch every
    three hours) on a small book: the compliance report re-checks every send, finds no violation,
    and counts deferrals and blocks by rule."""
    import deployments.cli.compliance  # noqa: F401
    from deployments.cli import app
    from deployments.cli.demo import _seed_profiles, _states

    settings = get_settings()
    start = datetime(2026, 12, 1, 13, 30, tzinfo=UTC)  # 21:30 Shanghai, 07:30 Chicago, 05:30 Los Angeles
    day0 = business_date(start, settings.lender_timezone)
    portfolio = list(generate_portfolio(150, seed=7, business_date=day0))
    write_accounts_file(portfolio, tmp_path / "accounts.csv")
    run_import(cycle_db, open_source(tmp_path / "accounts.csv", Kind.ACCOUNTS), now=start - timedelta(days=1))
    _seed_profiles(cycle_db, portfolio)
    for d in range(30):
        instant = start + timedelta(days=d)
        if d:
            payments = tmp_path / f"payments-{d}.csv"
            write_payments_file(
                simulate_payments(
                    _states(cycle_db, portfolio),
                    day=business_date(instant, settings.lender_timezone) - timedelta(days=1),
                    seed=7,
                ),
                payments,
            )
            run_import(cycle_db, open_source(payments, Kind.PAYMENTS), now=instant)
        _cycle(instant)
        for h in range(3, 24, 3):
            _dispatch(instant + timedelta(hours=h))

    with cycle_db.connect() as c:
        report = compliance_report(c, policy=DEFAULT_POLICY, lender=settings.lender_name)
    assert report.violations == []
    assert report.sent_checked > 100
    assert sum(report.deferrals.values()) > 0 and any(r.startswith("hours:") for r in report.deferrals)
    assert any(r.startswith("hold:") for r in report.blocks)

    result = CliRunner().invoke(
        app,
        [
            "compliance",
            "report",
            "--json",
            "--from",
            "2026-12-01",
            "--to",
            "2026-12-31",
            "--database",
            str(cycle_db.url),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["violations"] == [] and data["deferrals"] > 0 and data["sent_checked"] > 0


# --- privacy -------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("prefect_harness")
def test_no_number_is_left_unmasked_in_the_logs_artifacts_or_parameters_of_a_cycle(
    cycle_db: Engine, tmp_path: Path, sms_sandbox: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A demo cycle whose provider refuses one number logs that number masked; no number of the
    book appears whole in the captured logs, the run's logs on the server, its artifacts (the
    compliance artifact among them) or its parameters."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogHandler

    from flows.daily_cycle import daily_cycle

    book = list(generate_portfolio(12, seed=5, business_date=date(2026, 12, 1)))
    write_accounts_file(book, tmp_path / "book.csv")
    run_import(cycle_db, open_source(tmp_path / "book.csv", Kind.ACCOUNTS))
    refused = next(
        r.phone
        for r in book
        if r.jurisdiction == "CN"
        and 1 <= r.days_past_due(date(2026, 12, 1)) < 45
        and not r.flags
        and r.timezone == "Asia/Shanghai"
    )
    sms_sandbox.set_faults(invalid_numbers="^" + refused.replace("+", r"\+") + "$")
    prefect_logger = logging.getLogger("prefect")  # Prefect's loggers do not propagate to the root
    prefect_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level("INFO"):
            state = daily_cycle(as_of="2026-12-01T04:00:00Z", return_state=True)
    finally:
        prefect_logger.removeHandler(caplog.handler)
    assert state.is_completed()
    for logger in [
        logging.getLogger(),
        *(v for v in logging.root.manager.loggerDict.values() if isinstance(v, logging.Logger)),
    ]:
        for handler in logger.handlers:
            if isinstance(handler, APILogHandler):
                handler.flush()  # run logs reach the server in batches
    run_id = state.state_details.flow_run_id
    from arrears.masking import mask_phone

    with get_client(sync_client=True) as client:
        for _ in range(50):
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
            if any(mask_phone(refused) in log.message for log in logs):
                break
            time.sleep(0.2)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
        parameters = client.read_flow_run(run_id).parameters
    server_logs = "\n".join(log.message for log in logs)
    texts = {
        "captured logs": caplog.text,
        "server logs": server_logs,
        "artifacts": "\n".join(json.dumps(a.data, default=str, ensure_ascii=False) for a in artifacts),
        "parameters": json.dumps(parameters),
    }
    assert logs and {"compliance", "messages-by-status"} <= {a.key for a in artifacts}
    assert mask_phone(refused) in server_logs and mask_phone(refused) in caplog.text  # the refusal was logged
    for row in book:
        for number in filter(None, (row.phone, row.alt_phone)):
            national = number[3:] if number.startswith("+86") else number[2:]
            for where, text in texts.items():
                assert number not in text and national not in text, (where, mask_phone(number))


def test_an_offer_and_a_return_from_review_are_dated_on_the_lenders_business_date(
    engine: Engine, tmp_path: Path
) -> None:
    """A plan offered by the cycle of 1 December at 00:30 in Shanghai (30 November in UTC) was
    offered on the lender's 1 December: it counts as declined 14 days later, on 15 December, not
    on the 14th; a reviewer's return to negotiation at the same instant is dated 1 December too."""
    from arrears.lifecycle import advance
    from arrears.models import Plan, Review

    _import(engine, tmp_path, [_cn(account_id="A-1", oldest_due_date="2026-11-01")])
    at = datetime(2026, 11, 30, 16, 30, tzinfo=UTC)  # 00:30 on 1 December in Shanghai
    with engine.begin() as c:
        c.execute(
            update(store.account).values(stage="restructuring", stage_since=at, episode=1, days_past_due=30)
        )
        plans = Plan.__table__  # type: ignore[attr-defined]
        c.execute(
            insert(plans).values(
                account_id="A-1", kind="instalment", status="offered", terms={}, created_at=at, updated_at=at
            )
        )
        reviews = Review.__table__  # type: ignore[attr-defined]
        c.execute(insert(reviews).values(account_id="A-1", opened_at=at, decision="negotiate", decided_at=at))

    def moves(day: date) -> list[str]:
        with engine.connect() as c:
            (row,) = store.load_shard(
                c, lo="A-1", hi=None, business_date=day, lender="L", lender_timezone="Asia/Shanghai"
            )
        assert row.facts.plan is not None and row.facts.plan.since == date(2026, 12, 1)
        assert row.facts.returned_from_review == date(2026, 12, 1)
        decision = advance(
            row.view, row.facts, DEFAULT_POLICY, datetime(day.year, day.month, day.day, 1, tzinfo=UTC)
        )
        return [step.reason for step in decision.steps][:1]  # the walk may go on from review

    assert moves(date(2026, 12, 14)) == []
    assert moves(date(2026, 12, 15)) == ["offer unanswered, counted as declined"]


def test_the_weekly_ask_counts_a_week_on_the_lenders_calendar_for_a_borrower_west_of_the_lender(
    engine: Engine, tmp_path: Path
) -> None:
    """The cycle of 1 December, 09:00 in Shanghai, put a Los Angeles borrower into negotiation (30
    November in Los Angeles). The stage's days were counted from the borrower's date to the
    lender's business date, so the second ask went out on 7 December, six days after the first;
    it goes out on 8 December, a week after, as it does for a borrower in Shanghai."""
    from arrears.lifecycle import advance

    _import(engine, tmp_path, [account_record(account_id="A-1", oldest_due_date="2026-11-01")])
    entered = datetime(2026, 12, 1, 1, tzinfo=UTC)  # 09:00 in Shanghai, 17:00 on 30 November in LA
    with engine.begin() as c:
        c.execute(update(store.account).values(stage="negotiation", stage_since=entered, episode=1))

    def asks(day: date) -> list[str]:
        with engine.connect() as c:
            (row,) = store.load_shard(
                c, lo="A-1", hi=None, business_date=day, lender="L", lender_timezone="Asia/Shanghai"
            )
        at = datetime(day.year, day.month, day.day, 1, tzinfo=UTC)
        return [m.key for m in advance(row.view, row.facts, DEFAULT_POLICY, at).messages]

    assert asks(date(2026, 12, 7)) == ["A-1:negotiation:1:ask-0"]
    assert asks(date(2026, 12, 8)) == ["A-1:negotiation:1:ask-1"]


# --- the send time counts: a live run checks at the wall clock ----------------------------------------

CN_LATE_RUN = datetime(2026, 12, 2, 13, 59, tzinfo=UTC)  # 21:59 in Shanghai, a minute before the night


def _live_batches(engine: Engine, tmp_path: Path, accounts: int) -> None:
    """Messages scheduled for the morning by a night cycle, due by the late run."""
    records = [
        _cn(account_id=f"A-{i}", borrower_id=f"B-{i}", phone=f"1391234{i:04d}") for i in range(accounts)
    ]
    _import(engine, tmp_path, records)
    _cycle(CN_NIGHT)
    assert {(m.status, m.reason) for m in _messages(engine)} == {("scheduled", "hours:CN")}


class _SlowProvider:
    """The configured provider, one message a round, the wall clock moving a minute a round."""

    def __init__(self, inner: Any, clock: list[datetime]) -> None:
        self.inner, self.clock = inner, clock

    @property
    def info(self) -> Any:
        from dataclasses import replace

        return replace(self.inner.info, batch_size=1)

    def send_batch(self, requests: Any) -> Any:
        results = self.inner.send_batch(requests)
        self.clock[0] += timedelta(minutes=1)
        return results

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _dispatch_live(instant: datetime, live: bool) -> dict[str, int]:
    from tasks.dispatch import dispatch_batch, plan_dispatch
    from tasks.providers import sms_session

    counts: dict[str, int] = {}
    with sms_session():
        for batch in plan_dispatch.fn(instant, get_settings().dispatch_batch):
            for k, v in dispatch_batch.fn(batch, instant, None, live).items():
                counts[k] = counts.get(k, 0) + v
    return counts


def test_a_live_dispatch_checks_the_window_at_the_wall_clock_not_at_its_runs_instant(
    cycle_db: Engine, tmp_path: Path, sms_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compliance.md: "for SMS and email, the send time counts". A run started at 21:59 in Shanghai
    whose batch goes at 22:01 (behind the advance, or other batches) defers the text to the
    morning, where it was checked, and sent, at the run's instant. A run as of a given instant (a
    replayed day) still checks and records at that instant."""
    import tasks.sending as sending

    _live_batches(cycle_db, tmp_path, 1)
    monkeypatch.setattr(sending, "utcnow", lambda: CN_LATE_RUN + timedelta(minutes=2))
    assert _dispatch_live(CN_LATE_RUN, live=True) == {"scheduled": 1}
    [waiting] = _messages(cycle_db)
    assert (waiting.status, waiting.reason) == ("scheduled", "hours:CN")
    assert waiting.not_before == CN_MORNING + timedelta(days=1)
    assert sms_sandbox.messages() == []

    assert _dispatch_live(CN_MORNING + timedelta(days=1), live=False) == {"sent": 1}
    [sent] = _messages(cycle_db)
    assert sent.sent_at == CN_MORNING + timedelta(days=1)


def test_a_live_batch_checks_its_rounds_again_once_the_clock_has_moved(
    cycle_db: Engine, tmp_path: Path, sms_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider slow enough (a rate limit, one message a minute here) carries a live batch past
    the end of the window: the rounds after it are checked again at the wall clock and deferred,
    and each send is recorded at its own round's instant."""
    import tasks.sending as sending

    _live_batches(cycle_db, tmp_path, 3)
    clock = [CN_LATE_RUN - timedelta(minutes=1)]  # the batch starts at 21:58
    monkeypatch.setattr(sending, "utcnow", lambda: clock[0])
    monkeypatch.setattr(sending, "SEND_ROUND", 1)
    real = sending.sms_for
    monkeypatch.setattr(sending, "sms_for", lambda config: _SlowProvider(real(config), clock))
    assert _dispatch_live(CN_LATE_RUN - timedelta(minutes=1), live=True) == {"sent": 2, "scheduled": 1}
    first, second, third = _messages(cycle_db)
    assert (first.status, first.sent_at) == ("sent", CN_LATE_RUN - timedelta(minutes=1))
    assert (second.status, second.sent_at) == ("sent", CN_LATE_RUN)
    assert (third.status, third.reason, third.not_before) == (
        "scheduled",
        "hours:CN",
        CN_MORNING + timedelta(days=1),
    )
    assert len(sms_sandbox.messages()) == 2


class _RealProvider(_SlowProvider):
    """The sandbox, declared as a provider whose texts reach phones (as Twilio's and Aliyun's do)."""

    @property
    def info(self) -> Any:
        from dataclasses import replace

        return replace(self.inner.info, simulated=False)

    def send_batch(self, requests: Any) -> Any:
        return self.inner.send_batch(requests)


def test_a_run_as_of_a_past_instant_checks_a_real_providers_texts_at_the_wall_clock(
    cycle_db: Engine, tmp_path: Path, sms_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missed morning's dispatch run late, as of the morning (`--as-of`), through a provider
    whose texts reach phones: they would reach borrowers at 22:01 in Shanghai, so they are checked
    then, and deferred to the next morning, not checked at 09:00 and sent at night. Once the
    morning comes they go, recorded at the instant they went, not at the run's."""
    import tasks.sending as sending

    _live_batches(cycle_db, tmp_path, 1)
    clock = [CN_LATE_RUN + timedelta(minutes=2)]
    monkeypatch.setattr(sending, "utcnow", lambda: clock[0])
    real = sending.sms_for
    monkeypatch.setattr(sending, "sms_for", lambda config: _RealProvider(real(config), clock))
    assert _dispatch_live(CN_MORNING, live=False) == {"scheduled": 1}
    [waiting] = _messages(cycle_db)
    assert (waiting.status, waiting.reason) == ("scheduled", "hours:CN")
    assert waiting.not_before == CN_MORNING + timedelta(days=1)
    assert sms_sandbox.messages() == []

    clock[0] = CN_MORNING + timedelta(days=1, minutes=5)
    assert _dispatch_live(CN_MORNING + timedelta(days=1), live=False) == {"sent": 1}
    [sent] = _messages(cycle_db)
    assert sent.sent_at == CN_MORNING + timedelta(days=1, minutes=5)
