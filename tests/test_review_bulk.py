"""The cycle writes the right-to-cure letters of the reviews it opens in bulk (issue 14): the same
letters, ids, contexts and audit events as writing them one review at a time, on a generated
portfolio, on SQLite and PostgreSQL; and the bulk write of letter rows keeps the rules of the one
by one write (a key written once, a letter blocked for want of an address written again in place)."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select, text, update

from arrears.clock import business_date
from arrears.importing import ADDRESS_COLUMNS, Kind, open_source
from arrears.settings import get_settings
from arrears.simulate import generate_portfolio, write_accounts_file
from arrears.storage import letters, reviews
from arrears.storage.importer import run_import
from arrears.storage.tables import account, audit, letter, review
from tests.factories import accounts_records, write_csv

INSTANT = datetime(2026, 12, 1, 1, tzinfo=UTC)
NO_ADDRESS = "no mailing address on file: import address_line1, city, state, postal_code"


@pytest.fixture
def cycle_db(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    return engine


def _written(c: Connection) -> tuple[list[Any], list[Any]]:
    """Every letter row (PDF and hash included) and every letter audit event, with their ids."""
    rows = list(c.execute(select(letter).order_by(letter.c.id)))
    events = [
        (r.id, r.account_id, r.at, r.detail, r.data)
        for r in c.execute(select(audit).where(audit.c.kind == "letter").order_by(audit.c.id))
    ]
    return rows, events


@contextmanager
def _undone(engine: Engine) -> Iterator[Connection]:
    """A transaction rolled back at the end, ids included: PostgreSQL does not give back the
    sequence values a rolled-back transaction took, so they are set back by hand."""
    with engine.connect() as c:
        sequences: list[tuple[str, Any, Any]] = []
        if c.dialect.name == "postgresql":
            for table in ("letter", "audit_event"):
                name = c.execute(text(f"SELECT pg_get_serial_sequence('{table}', 'id')")).scalar_one()
                last, called = c.execute(text(f"SELECT last_value, is_called FROM {name}")).one()
                sequences.append((name, last, called))
            c.commit()
        with c.begin() as t:
            yield c
            t.rollback()
        for name, last, called in sequences:
            c.execute(text("SELECT setval(:s, :v, :c)"), {"s": name, "v": last, "c": called})
        c.commit()


def _both(engine: Engine, write: Callable[[Connection, bool], int]) -> None:
    """`write(connection, in_bulk)` both ways from the same database: the same count and rows."""
    with _undone(engine) as c:
        n = write(c, True)
        in_bulk = _written(c)
    with _undone(engine) as c:
        assert write(c, False) == n
        one_by_one = _written(c)
    assert in_bulk == one_by_one


def _advanced(engine: Engine, tmp_path: Path) -> None:
    """400 generated accounts imported and advanced once (a quarter end in repossession review)."""
    from tasks.cycle import advance_shard, begin_cycle, plan_shards, refresh

    file = tmp_path / "portfolio.csv"
    write_accounts_file(generate_portfolio(400, seed=5, business_date=date(2026, 12, 1)), file)
    assert run_import(engine, open_source(file, Kind.ACCOUNTS), now=INSTANT).rejected == 0
    day = business_date(INSTANT, get_settings().lender_timezone)
    cycle_id = begin_cycle.fn(INSTANT, day).cycle_id
    refresh.fn(INSTANT, day, cycle_id)
    for shard in plan_shards.fn(100):
        advance_shard.fn(shard, INSTANT, day, cycle_id)


def _in_review_half_addressed(engine: Engine, tmp_path: Path) -> None:
    """`_advanced`, reviews opened, and the mailing address of every other account taken away, so
    that letters are rendered (pending) as well as blocked."""
    _advanced(engine, tmp_path)
    with engine.begin() as c:
        reviews.open_reviews(c, at=INSTANT)
        ids = c.execute(select(account.c.account_id).order_by(account.c.account_id)).scalars().all()
        c.execute(
            update(account).where(account.c.account_id.in_(ids[::2])).values(dict.fromkeys(ADDRESS_COLUMNS))
        )


def test_reviews_opened_are_one_per_waiting_account_in_account_order(
    cycle_db: Engine, tmp_path: Path
) -> None:
    """Every account in review gets one review, numbered in account order, opened at the cycle's
    instant or, for an account that entered review later, at its entry; each with its audit
    event; a second call opens none."""
    _advanced(cycle_db, tmp_path)
    with cycle_db.begin() as c:
        later = INSTANT + timedelta(hours=5)
        first = c.execute(
            select(account.c.account_id)
            .where(account.c.stage == "repossession_review")
            .order_by(account.c.account_id)
        ).scalar()
        c.execute(update(account).where(account.c.account_id == first).values(stage_since=later))
        opened = reviews.open_reviews(c, at=INSTANT)
        assert reviews.open_reviews(c, at=INSTANT) == []
        waiting = (
            c.execute(
                select(account.c.account_id)
                .where(account.c.stage == "repossession_review")
                .order_by(account.c.account_id)
            )
            .scalars()
            .all()
        )
        rows = c.execute(
            select(review.c.id, review.c.account_id, review.c.opened_at).order_by(review.c.id)
        ).all()
        events = c.execute(
            select(
                audit.c.account_id, audit.c.at, audit.c.detail, audit.c.data, audit.c.actor, audit.c.cycle_id
            )
            .where(audit.c.kind == "review")
            .order_by(audit.c.id)
        ).all()
    assert len(waiting) > 6 and opened == [r.id for r in rows]
    assert [r.account_id for r in rows] == waiting
    assert [r.opened_at for r in rows] == [later] + [INSTANT] * (len(rows) - 1)
    # The events the database writes from the review rows are what `event()` would have made.
    assert [tuple(e) for e in events] == [
        (
            r.account_id,
            r.opened_at,
            f"repossession review {r.id} opened",
            {"review_id": r.id},
            "arrears",
            None,
        )
        for r in rows
    ]


def test_cure_letters_in_bulk_are_those_written_one_by_one(cycle_db: Engine, tmp_path: Path) -> None:
    """Letters (blocked ones included), their ids, contexts and audit events are the same whether the
    reviews' letters are written in one call or one review at a time."""
    from tasks.letters import write_cure_letter, write_cure_letters
    from tasks.review import _may_need_notice

    _in_review_half_addressed(cycle_db, tmp_path)
    with cycle_db.connect() as c:
        states = [s for s in reviews.open_review_states(c) if _may_need_notice(s)]
        # Read a chunk at a time (the cycle's way, for its memory), the states are the same, in
        # the same order, across chunk boundaries.
        parts = list(reviews.open_review_state_chunks(c, size=7))
        # Each state is made from one row of the review and its account: the same as read alone.
        every = reviews.open_review_states(c)
        assert every and every == [reviews.review_state(c, s.review_id) for s in every]
    assert len(parts) > 2 and all(len(p) <= 7 for p in parts)
    assert [s for p in parts for s in p if _may_need_notice(s)] == states

    def write(c: Connection, in_bulk: bool) -> int:
        if in_bulk:
            return write_cure_letters(c, states, INSTANT)
        return sum(write_cure_letter(c, s, INSTANT) for s in states)

    _both(cycle_db, write)
    with _undone(cycle_db) as c:
        n = write_cure_letters(c, states, INSTANT)
        rows, events = _written(c)
        assert write_cure_letters(c, states, INSTANT) == 0  # once per key
        assert _written(c) == (rows, events)
    assert n > 5 and n == len(rows) == len(events)
    assert {row.status for row in rows} == {"pending", "blocked"}
    assert all(row.idempotency_key.endswith(f"-review-{row.review_id}-right-to-cure") for row in rows)
    # Rendered when sent: written with the context they will be rendered from, and no PDF yet.
    assert all(row.pdf is None and row.pdf_sha256 is None for row in rows)
    assert all(bool(row.context) == (row.status == "pending") for row in rows)


def test_prepare_reviews_reads_states_only_where_a_notice_may_be_owed(
    cycle_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cycle's step reads the states of the reviews in jurisdictions that may owe a
    right-to-cure letter only, and writes the same letters (ids, contexts, events) as writing them for
    every open review; the reviews it names for a run are every open review, in order."""
    from arrears.review import notice_owed
    from tasks.letters import write_cure_letters
    from tasks.review import _may_need_notice, _profile, prepare_reviews

    _in_review_half_addressed(cycle_db, tmp_path)
    with _undone(cycle_db) as c:
        every = reviews.open_review_states(c)
        expected_count = write_cure_letters(c, [s for s in every if _may_need_notice(s)], INSTANT)
        expected = _written(c)
    read: list[Any] = []
    chunks = reviews.open_review_state_chunks

    def spied(*args: Any, **kwargs: Any) -> Iterator[list[Any]]:
        for part in chunks(*args, **kwargs):
            read.extend(part)
            yield part

    monkeypatch.setattr(reviews, "open_review_state_chunks", spied)
    prepared = prepare_reviews.fn(INSTANT)
    with cycle_db.connect() as c:
        assert (prepared.notices, _written(c)) == (expected_count, expected)
    assert expected_count > 5
    owing = {s.jurisdiction for s in every if notice_owed(s.jurisdiction, rules=_profile(s.jurisdiction))}
    assert read and {s.jurisdiction for s in read} < {s.jurisdiction for s in every}
    assert [s.review_id for s in read] == [
        s.review_id for s in every if s.jurisdiction in {r.jurisdiction for r in read}
    ]
    assert {s.jurisdiction for s in read} <= owing
    assert prepared.without_run == tuple((s.review_id, s.account_id) for s in every)
    assert prepared.with_run == ()


def test_prepare_reviews_names_no_run_when_none_will_be_started(cycle_db: Engine, tmp_path: Path) -> None:
    """Without a review deployment served the cycle starts no run: the reviews are still opened,
    closed and notified, and none is named for a run."""
    from tasks.review import prepare_reviews

    _in_review_half_addressed(cycle_db, tmp_path)
    prepared = prepare_reviews.fn(INSTANT, name_runs=False)
    with cycle_db.connect() as c:
        waiting = reviews.open_review_runs(c)
    assert prepared.notices > 5 and len(waiting) > 5
    assert prepared.without_run == () == prepared.with_run


def test_the_collector_is_paused_while_reviews_are_prepared(
    cycle_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first cycle opens reviews for a quarter of a portfolio and builds their states and letters
    in the cycle's own process: the collector is off while they are opened and on again after."""
    import gc

    from tasks.review import prepare_reviews

    seen: list[bool] = []
    open_reviews = reviews.open_reviews
    monkeypatch.setattr(
        reviews, "open_reviews", lambda c, **kw: seen.append(gc.isenabled()) or open_reviews(c, **kw)
    )
    assert gc.isenabled()
    prepare_reviews.fn(INSTANT, name_runs=False)
    assert seen == [False]
    assert gc.isenabled()


def test_add_letters_keeps_the_rules_of_one_letter_at_a_time(engine: Engine, tmp_path: Path) -> None:
    """A batch of letter rows with a key given twice, a key written before, and a letter blocked
    for want of an address written again in place: the rows, ids and events of one at a time."""
    file = write_csv(tmp_path / "accounts.csv", accounts_records(3, prefix="ACC"))
    assert run_import(engine, open_source(file, Kind.ACCOUNTS), now=INSTANT).rejected == 0
    with engine.begin() as c:
        letters.add_letters(
            c,
            [
                letters.NewLetter("k-0", "ACC-0000000", None, "notice_of_sale", INSTANT, blocked=NO_ADDRESS),
                letters.NewLetter("k-1", "ACC-0000001", None, "notice_of_sale", INSTANT, blocked=NO_ADDRESS),
                letters.NewLetter("k-2", "ACC-0000002", None, "notice_of_sale", INSTANT, template="a.j2"),
            ],
        )
    later = INSTANT + timedelta(days=1)
    batch = [
        letters.NewLetter(
            "k-0",
            "ACC-0000000",
            None,
            "notice_of_sale",
            later,
            template="b.j2",
            replaces=(NO_ADDRESS,),
        ),
        letters.NewLetter(
            "k-1", "ACC-0000001", None, "notice_of_sale", later, blocked=NO_ADDRESS, replaces=(NO_ADDRESS,)
        ),
        letters.NewLetter("k-2", "ACC-0000002", None, "notice_of_sale", later, template="c.j2"),
        letters.NewLetter("k-3", "ACC-0000000", None, "collection_notice", later, blocked=NO_ADDRESS),
        letters.NewLetter(
            "k-3",
            "ACC-0000000",
            None,
            "collection_notice",
            later,
            template="d.j2",
            replaces=(NO_ADDRESS,),
        ),
        letters.NewLetter("k-4", "ACC-0000001", 7, "right_to_cure", later, blocked="content:x: y"),
    ]

    def write(c: Connection, in_bulk: bool) -> int:
        if in_bulk:
            return len(letters.add_letters(c, batch))
        return sum(len(letters.add_letters(c, [one])) for one in batch)

    _both(engine, write)
    with _undone(engine) as c:
        written = letters.add_letters(c, batch)
        rows = {r.idempotency_key: r for r in _written(c)[0]}
    assert written == [rows["k-0"].id, rows["k-3"].id, rows["k-3"].id, rows["k-4"].id]
    assert (
        rows["k-0"].status == "pending" and rows["k-0"].template == "b.j2" and rows["k-0"].id < rows["k-2"].id
    )
    assert rows["k-1"].status == "blocked" and rows["k-2"].template == "a.j2"  # still blocked; written before
    assert rows["k-3"].status == "pending" and rows["k-4"].reason == "content:x: y"
