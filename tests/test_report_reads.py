"""The cycle's report reads only what the cycle wrote (issue 14), and says exactly what the reading
of every audit row and every open review said before: over several simulated days of a generated
portfolio, with a cycle retried at its instant, real dispatch through the sandbox SMS server, on
SQLite and PostgreSQL. The reference readings below are the code this replaced, kept as the judge."""

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, select, update

from arrears.clock import business_date
from arrears.importing import Kind, open_source
from arrears.lifecycle import is_open
from arrears.settings import get_settings
from arrears.simulate import generate_portfolio, write_accounts_file
from arrears.storage import reviews
from arrears.storage.importer import run_import
from arrears.storage.reports import PortfolioReport, portfolio_report, trend
from arrears.storage.reports import _moves as moves_of
from arrears.storage.tables import account, audit, cycle_run, message, review
from arrears.storage.waiting import overdue_reviews, waiting_list
from arrears.vocabulary import Exit, Stage
from tests.factories import payment_record, write_csv

DAYS = [datetime(2026, 12, d, 1, tzinfo=UTC) for d in (1, 2, 3, 7)]


@pytest.fixture
def cycle_db(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, sms_sandbox: Any) -> Engine:
    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    return engine


def _dispatch(instant: datetime, cycle_id: int) -> None:
    from tasks.dispatch import dispatch_batch, plan_dispatch
    from tasks.providers import sms_session

    with sms_session():
        for batch in plan_dispatch.fn(instant, get_settings().dispatch_batch):
            dispatch_batch.fn(batch, instant, cycle_id)


def _attempt(instant: datetime, *, shards: int | None = None, dispatch: bool = True) -> int:
    """One attempt at the cycle of `instant` through the task bodies; `shards` cuts it short as a
    crash would (the row stays running, as the crash tests leave it)."""
    from tasks.cycle import advance_shard, begin_cycle, plan_shards, refresh

    day = business_date(instant, get_settings().lender_timezone)
    cycle_id = begin_cycle.fn(instant, day).cycle_id
    assert cycle_id is not None
    refresh.fn(instant, day, cycle_id)
    for shard in plan_shards.fn(40)[:shards]:
        advance_shard.fn(shard, instant, day, cycle_id)
    if dispatch:
        _dispatch(instant, cycle_id)
    return cycle_id


def _pay_some(engine: Engine, tmp_path: Path, instant: datetime, every: int) -> None:
    """Every `every`-th open account pays what it owes, so the next cycle cures some."""
    with engine.connect() as c:
        owing = c.execute(
            select(account.c.account_id, account.c.past_due_amount)
            .where(account.c.past_due_amount > 0)
            .order_by(account.c.account_id)
        ).all()
    records = [
        payment_record(
            account_id=a, amount=str(amount), received_at=(instant - timedelta(hours=3)).isoformat()
        )
        for a, amount in owing[::every]
    ]
    path = write_csv(tmp_path / f"payments-{instant:%d}.csv", records)
    assert run_import(engine, open_source(path, Kind.PAYMENTS)).rejected == 0


def test_report_figures_equal_the_row_by_row_reading(cycle_db: Engine, tmp_path: Path) -> None:
    """Stage and bucket counts, transitions, journeys and rates, messages and dispatch outcomes of
    each cycle, and the trend's dispatch outcomes, are those of the old row-by-row reading."""
    from tasks.cycle import close_cycle

    file = tmp_path / "portfolio.csv"
    write_accounts_file(generate_portfolio(240, seed=7, business_date=date(2026, 12, 1)), file)
    assert run_import(cycle_db, open_source(file, Kind.ACCOUNTS), now=DAYS[0]).rejected == 0
    compared = 0
    for index, instant in enumerate(DAYS):
        if index:
            _pay_some(cycle_db, tmp_path, instant, every=4 + index)
        if index == 1:  # a crashed attempt: the next one at the same instant finishes the cycle
            crashed = _attempt(instant, shards=2, dispatch=False)
            with cycle_db.begin() as c:
                c.execute(update(cycle_run).where(cycle_run.c.id == crashed).values(running=None))
        cycle_id = _attempt(instant)
        with cycle_db.connect() as c:
            report = portfolio_report(c, cycle_id=cycle_id)
            assert report.as_json() == _reference_report(c, cycle_id).as_json()
            attempts = _attempts(c, instant)
            assert journeys_of(c, attempts) == _reference_journeys(c, attempts)
            points = trend(c, current=report)
            assert [p.messages for p in points] == _reference_trend_messages(c, [p.as_of for p in points])
        compared += sum(n for row in report.transitions.values() for n in row.values())
        close_cycle.fn(cycle_id, {"report": report.as_json()})
    assert compared > 240  # the days moved accounts (more than once each, the first day)
    with cycle_db.connect() as c:
        last = portfolio_report(c, cycle_id=cycle_id)
    assert last.cure_rate and last.roll_rate is not None  # payments cured some: the rates were computed


def test_transitions_are_summed_from_the_shards_counts_and_counted_when_one_is_not(
    cycle_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each shard records its transition counts with its transitions; the report sums them without
    reading the transition rows, and counts the rows when some transition was not counted."""
    from arrears.storage import reports
    from arrears.storage.cycle import MOVES

    file = tmp_path / "portfolio.csv"
    write_accounts_file(generate_portfolio(240, seed=5, business_date=date(2026, 12, 1)), file)
    assert run_import(cycle_db, open_source(file, Kind.ACCOUNTS), now=DAYS[0]).rejected == 0
    cycle_id = _attempt(DAYS[0], dispatch=False)
    with cycle_db.connect() as c:
        expected = moves_of(c, [cycle_id])
        assert expected[1] == _reference_journeys(c, [cycle_id])
        counts = c.execute(select(audit.c.id).where(audit.c.kind == MOVES)).scalars().all()
    assert len(counts) > 1 and sum(expected[0].values()) > 240  # several shards, accounts moved

    def rows_read(*args: object) -> None:
        raise AssertionError("the transition rows were read")

    with monkeypatch.context() as patched, cycle_db.connect() as c:
        patched.setattr(reports, "_counted_moves", rows_read)
        assert moves_of(c, [cycle_id]) == expected
    # A transition of the cycle that no shard counted (the audit trail is append-only: one more row).
    moved = {"account_id": "NOT-COUNTED", "at": DAYS[0], "kind": "transition", "cycle_id": cycle_id}
    with cycle_db.begin() as c:
        c.execute(audit.insert(), [moved | {"detail": "reminder → negotiation", "data": _STEP}])
    with cycle_db.connect() as c:
        moves, journeys = moves_of(c, [cycle_id])
        assert moves == expected[0] + Counter({("reminder", "negotiation"): 1})
        assert journeys == _reference_journeys(c, [cycle_id]) != expected[1]


_STEP = {"from": "reminder", "to": "negotiation", "reason": "a step no shard counted"}


def test_message_outcomes_are_summed_from_their_counts_and_read_when_one_is_not(
    cycle_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every writer of a cycle's message events counts them in the same transaction; the report's
    dispatch outcomes and the compliance report's deferrals and blocks by rule sum those counts
    without reading the events, and read the events when one of them was not counted."""
    from arrears.storage import compliance, reports
    from arrears.storage.message_counts import COUNTS

    file = tmp_path / "portfolio.csv"
    write_accounts_file(generate_portfolio(240, seed=5, business_date=date(2026, 12, 1)), file)
    assert run_import(cycle_db, open_source(file, Kind.ACCOUNTS), now=DAYS[0]).rejected == 0
    cycle_id = _attempt(DAYS[0])
    period = (DAYS[0], DAYS[0] + timedelta(microseconds=1))
    with cycle_db.connect() as c:
        dispatched = _reference_dispatched(c, [cycle_id])
        held_back = _reference_held_back(c, cycle_id, *period)
        counts = c.execute(select(audit.c.id).where(audit.c.kind == COUNTS)).scalars().all()
    # Several shards and batches counted; dispatch sent, and both steps held some messages back.
    assert len(counts) > 2 and dispatched[0]["sent"] > 100
    assert held_back[0] and held_back[1]

    def rows_read(*args: object) -> None:
        raise AssertionError("the message events were read")

    with monkeypatch.context() as patched, cycle_db.connect() as c:
        patched.setattr(reports, "_counted_dispatched", rows_read)
        patched.setattr(compliance, "_read_held_back", rows_read)
        assert reports._dispatched(c, [cycle_id]) == dispatched
        assert compliance.held_back_by_rule(c, *period, cycle_id) == held_back
        # Of a period before the cycle's instant: none of its counts.
        assert compliance.held_back_by_rule(c, DAYS[0] - timedelta(days=1), DAYS[0], cycle_id) == ({}, {})
    # A message event of the cycle that no count holds (the audit trail is append-only: one more row).
    blocked = {"when": "send", "status": "blocked", "reason": "hold:dispute", "rule": "hold:dispute"}
    uncounted = {"account_id": "NOT-COUNTED", "at": DAYS[0], "kind": "message", "cycle_id": cycle_id}
    with cycle_db.begin() as c:
        c.execute(audit.insert(), [uncounted | {"detail": "blocked by hand", "data": blocked}])
    with cycle_db.connect() as c:
        assert reports._dispatched(c, [cycle_id]) == _reference_dispatched(c, [cycle_id]) != dispatched
        assert compliance.held_back_by_rule(c, *period, cycle_id) == _reference_held_back(
            c, cycle_id, *period
        )
        assert (
            _reference_held_back(c, cycle_id, *period)[1]["hold:dispute"]
            == held_back[1].get("hold:dispute", 0) + 1
        )


def test_overdue_reviews_are_those_the_whole_waiting_list_names(cycle_db: Engine, tmp_path: Path) -> None:
    """The reviews waiting for their reviewer past the deadline, read from the old ones only, are
    those (in the same order) that filtering the whole waiting list finds."""
    file = tmp_path / "portfolio.csv"
    write_accounts_file(generate_portfolio(300, seed=11, business_date=date(2026, 12, 1)), file)
    assert run_import(cycle_db, open_source(file, Kind.ACCOUNTS), now=DAYS[0]).rejected == 0
    _attempt(DAYS[0], dispatch=False)
    with cycle_db.begin() as c:
        opened = reviews.open_reviews(c, at=DAYS[0])
        assert len(opened) > 20
        # Cure deadlines spread around the report's deadline (some exactly on it), others none.
        for k, review_id in enumerate(opened):
            if k % 3:
                when = DAYS[0] + timedelta(hours=12 * (k % 17))
                c.execute(update(review).where(review.c.id == review_id).values(cure_deadline=when))
    now, deadline = DAYS[0] + timedelta(days=6), timedelta(days=3)
    with cycle_db.connect() as c:
        expected = [
            w.account_id
            for w in waiting_list(c, now=now)
            if w.what == "review" and w.waits_for == "reviewer" and now - w.since > deadline
        ]
        assert overdue_reviews(c, now=now, deadline=deadline) == expected
    assert 0 < len(expected) < len(opened)


# -- the readings this replaced ------------------------------------------------------------------------


def _reference_dispatched(connection: Connection, cycle_ids: list[int]) -> tuple[Counter[str], Counter[str]]:
    statuses: Counter[str] = Counter()
    blocked: Counter[str] = Counter()
    for (data,) in connection.execute(
        select(audit.c.data).where(audit.c.cycle_id.in_(cycle_ids), audit.c.kind == "message")
    ):
        if data.get("when") != "send":
            continue
        statuses[data["status"]] += 1
        if data["status"] == "blocked":
            blocked[data.get("reason") or "unknown"] += 1
    return statuses, blocked


def _reference_held_back(
    connection: Connection, cycle_id: int, start: datetime, end: datetime
) -> tuple[dict[str, int], dict[str, int]]:
    deferrals: Counter[str] = Counter()
    blocks: Counter[str] = Counter()
    for at, data in connection.execute(
        select(audit.c.at, audit.c.data).where(audit.c.cycle_id == cycle_id, audit.c.kind == "message")
    ):
        rule = data.get("rule") or data.get("reason")
        if not start <= at < end:
            continue
        if data.get("status") == "blocked":
            blocks[rule or "unknown"] += 1
        elif data.get("status") == "scheduled" and rule:
            deferrals[rule] += 1
    return dict(deferrals), dict(blocks)


def _attempts(connection: Connection, as_of: datetime) -> list[int]:
    return list(connection.execute(select(cycle_run.c.id).where(cycle_run.c.as_of == as_of)).scalars())


def _reference_trend_messages(connection: Connection, instants: list[datetime]) -> list[dict[str, int]]:
    return [
        dict(sorted(_reference_dispatched(connection, _attempts(connection, i))[0].items())) for i in instants
    ]


def journeys_of(connection: Connection, attempts: list[int]) -> Counter[tuple[str, str]]:
    return moves_of(connection, attempts)[1]


def _reference_journeys(connection: Connection, attempts: list[int]) -> Counter[tuple[str, str]]:
    journeys: dict[str, tuple[str, str]] = {}
    for account_id, data in connection.execute(
        select(audit.c.account_id, audit.c.data)
        .where(audit.c.cycle_id.in_(attempts), audit.c.kind == "transition")
        .order_by(audit.c.id)
    ):
        journeys[account_id] = (journeys.get(account_id, (data["from"], ""))[0], data["to"])
    return Counter(journeys.values())


def _reference_report(connection: Connection, cycle_id: int) -> PortfolioReport:
    as_of = connection.execute(select(cycle_run.c.as_of).where(cycle_run.c.id == cycle_id)).scalar()
    report = PortfolioReport(cycle_id=cycle_id, as_of=as_of)
    for stage, bucket, n in connection.execute(
        select(account.c.stage, account.c.bucket, func.count()).group_by(account.c.stage, account.c.bucket)
    ):
        report.by_stage_bucket.setdefault(stage, {})[bucket] = n
    assert as_of is not None
    attempts = _attempts(connection, as_of)
    sent, blocked = _reference_dispatched(connection, attempts)
    report.dispatched, report.dispatch_blocked_by_reason = (
        dict(sorted(sent.items())),
        dict(sorted(blocked.items())),
    )
    moves: Counter[tuple[str, str]] = Counter()
    journeys: dict[str, tuple[str, str]] = {}
    for account_id, data in connection.execute(
        select(audit.c.account_id, audit.c.data)
        .where(audit.c.cycle_id.in_(attempts), audit.c.kind == "transition")
        .order_by(audit.c.id)
    ):
        moves[(data["from"], data["to"])] += 1
        journeys[account_id] = (journeys.get(account_id, (data["from"], ""))[0], data["to"])
    for (src, dst), n in sorted(moves.items()):
        report.transitions.setdefault(src, {})[dst] = n
    for status, reason, n in connection.execute(
        select(message.c.status, message.c.reason, func.count())
        .where(message.c.created_at == as_of)
        .group_by(message.c.status, message.c.reason)
    ):
        report.messages[status] = report.messages.get(status, 0) + n
        if status == "blocked":
            report.blocked_by_reason[reason or "unknown"] = (
                report.blocked_by_reason.get(reason or "unknown", 0) + n
            )
        elif status == "scheduled" and reason:
            report.deferred_by_reason[reason] = report.deferred_by_reason.get(reason, 0) + n
    open_now = sum(n for stage, b in report.by_stage_bucket.items() if is_open(stage) for n in b.values())
    was_open = [(before, after) for before, after in journeys.values() if is_open(before)]
    newly = sum(1 for before, after in journeys.values() if not is_open(before) and is_open(after))
    left = sum(1 for _, after in was_open if not is_open(after))
    base = open_now - newly + left
    if base > 0:
        report.roll_rate = round(
            sum(1 for b, a in was_open if is_open(a) and Stage(a).rank > Stage(b).rank) / base, 4
        )
        report.cure_rate = round(sum(1 for _, a in was_open if a in (Exit.CURED, Exit.PAID_OFF)) / base, 4)
    return report
