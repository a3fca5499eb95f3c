"""One hold of a kind in force on an account, kept so by the database.

Every placer read the account's holds in force and inserted the kinds it did not find. On SQLite a
write transaction holds the only write lock from its start, so that was enough; on PostgreSQL (READ
COMMITTED) two transactions placing one hold at the same instant (an agent's `hold place` and an
import, two deliveries of one webhook) both read "not held" and both inserted: the hold listed twice,
"placed" twice in the trail. Now a partial unique index (`uq_hold_active_kind`, migration 0026)
refuses the second and `place_holds` inserts ON CONFLICT DO NOTHING, saying which pairs it placed;
the migration lifts the twins a database already holds. On SQLite and PostgreSQL.
"""

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy.exc import IntegrityError

from arrears.storage import get_engine, migrate
from arrears.storage._common import place_holds
from arrears.storage.holds import place_hold
from arrears.storage.tables import audit, hold
from arrears.vocabulary import Hold
from tests.later_stage_helpers import at, events, import_rows, us_account

ACCOUNTS = ("A-1", "A-2")
AT = at("2026-12-02T10:00:00Z")


@pytest.fixture
def book(engine: Engine, tmp_path: Path) -> Engine:
    """A-1 and A-2, held by nothing."""
    import_rows(engine, tmp_path, [us_account(a) for a in ACCOUNTS], now=at("2026-12-01T12:00:00Z"))
    return engine


def _active(engine: Engine, account_id: str = "A-1") -> list[tuple[str, str]]:
    """The account's holds in force, as (kind, source), oldest first."""
    with engine.connect() as c:
        return [
            (h.kind, h.source)
            for h in c.execute(
                select(hold.c.kind, hold.c.source)
                .where(hold.c.account_id == account_id, hold.c.lifted_at.is_(None))
                .order_by(hold.c.id)
            )
        ]


def _waits_on_a_lock(engine: Engine, done: threading.Event) -> bool:
    """Whether another session of the database waits for a lock (PostgreSQL), within 10 s; on SQLite,
    whose second writer waits for the lock in its busy handler, whether `done` is still unset after 1 s."""
    if engine.dialect.name == "sqlite":
        return not done.wait(1)
    deadline = time.monotonic() + 10
    with engine.connect() as c:
        while time.monotonic() < deadline and not done.is_set():
            waiting = c.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
            if waiting:
                return True
            c.rollback()  # a fresh snapshot of the activity next time
            time.sleep(0.05)
    return False


def _in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, threading.Event, list[Any]]:
    """`work` run in a thread of its own: what it returned or raised lands in the list, then the event."""
    done, out = threading.Event(), []

    def run() -> None:
        try:
            out.append(work())
        except BaseException as error:  # reported by the test, not lost in the thread
            out.append(error)
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done, out


# -- two placers at the same instant ----------------------------------------------------------------


@pytest.mark.parametrize("first_ends", ["commit", "rollback"])
def test_two_transactions_placing_one_hold_at_once_place_it_once(book: Engine, first_ends: str) -> None:
    """An agent's transaction places A-1's dispute and has not committed; a webhook's places the same
    meanwhile. The second waits for the first: once it commits, the second places nothing and says so,
    and A-1 has one dispute in force. Had the first rolled back, the second places it."""
    agent = book.connect()
    agent.begin()
    try:
        assert place_holds(agent, [("A-1", Hold.DISPUTE, "by phone")], source="agent", at=AT) == {
            ("A-1", Hold.DISPUTE)
        }

        def webhook() -> set[tuple[str, Hold]]:
            with book.begin() as c:
                return place_holds(c, [("A-1", Hold.DISPUTE, "text")], source="webhook", at=AT)

        thread, done, out = _in_thread(webhook)
        assert _waits_on_a_lock(book, done), f"the second placer did not wait for the first: {out}"
        getattr(agent, first_ends)()
    finally:
        agent.close()
    thread.join(60)
    if first_ends == "commit":
        assert out == [set()]
        assert _active(book) == [("dispute", "agent")]
    else:
        assert out == [{("A-1", Hold.DISPUTE)}]
        assert _active(book) == [("dispute", "webhook")]


def test_two_agents_placing_one_hold_at_once_audit_it_once(book: Engine) -> None:
    """`arrears hold place A-1 dispute` by two agents at the same instant: the second is told nothing
    was placed (the CLI says it was in force already), and the trail says "placed" once, by the first."""
    first = book.connect()
    first.begin()
    try:
        assert place_hold(first, account_id="A-1", kind=Hold.DISPUTE, by="Ann", why="call", at=AT) == ["A-1"]

        def second() -> list[str]:
            with book.begin() as c:
                return place_hold(c, account_id="A-1", kind=Hold.DISPUTE, by="Bo", why="call", at=AT)

        thread, done, out = _in_thread(second)
        assert _waits_on_a_lock(book, done), f"the second placer did not wait for the first: {out}"
        first.commit()
    finally:
        first.close()
    thread.join(60)
    assert out == [[]]
    assert [(e.actor, e.data["action"]) for e in events(book, "A-1", "hold")] == [("Ann", "placed")]
    assert _active(book) == [("dispute", "agent")]


def test_the_database_refuses_a_second_hold_of_a_kind_in_force(book: Engine) -> None:
    """Whatever writes it: a second dispute in force on A-1 is refused. A lifted one is not counted."""
    row = {"account_id": "A-1", "kind": "dispute", "source": "agent", "placed_at": AT, "lifted_at": None}
    with book.begin() as c:
        c.execute(hold.insert(), [row | {"lifted_at": AT}, row])
    with pytest.raises(IntegrityError), book.begin() as c:
        c.execute(hold.insert(), [row | {"source": "webhook"}])
    assert _active(book) == [("dispute", "agent")]


@pytest.mark.postgres
def test_an_import_flagging_a_hold_an_agent_places_meanwhile_finds_it_placed(
    postgres_url: str, tmp_path: Path
) -> None:
    """The import reads A-1 not held, and its insert of the file's dispute waits for the agent's
    transaction; refused once that commits, the import stores the chunk again (as for an account
    another import inserted first), finds the agent's hold and places none of its own."""
    engine = get_engine(postgres_url)
    import_rows(engine, tmp_path, [us_account(a) for a in ACCOUNTS], now=at("2026-12-01T12:00:00Z"))
    agent = engine.connect()
    agent.begin()
    try:
        assert place_hold(agent, account_id="A-1", kind=Hold.DISPUTE, by="Ann", why="call", at=AT) == ["A-1"]
        flagged = [
            us_account("A-1", flags="dispute", balance="18000.00"),
            us_account("A-2", balance="18000.00"),
        ]
        thread, done, out = _in_thread(lambda: import_rows(engine, tmp_path, flagged, now=AT))
        assert _waits_on_a_lock(engine, done), f"the import did not wait for the agent: {out}"
        agent.commit()
    finally:
        agent.close()
    thread.join(120)
    assert not isinstance(out[0], BaseException), out[0]
    assert (out[0].counts.updated, out[0].counts.holds_placed) == (2, 0)
    assert _active(engine) == [("dispute", "agent")]
    assert [(e.actor, e.data["action"]) for e in events(engine, "A-1", "hold")] == [("Ann", "placed")]


# -- what placing did before, still so ----------------------------------------------------------------


def test_a_lifted_hold_can_be_placed_again(book: Engine) -> None:
    with book.begin() as c:
        assert place_holds(c, [("A-1", Hold.DISPUTE, "call")], source="agent", at=AT) == {
            ("A-1", Hold.DISPUTE)
        }
        c.execute(update(hold).where(hold.c.account_id == "A-1").values(lifted_at=AT))
        assert place_holds(c, [("A-1", Hold.DISPUTE, "again")], source="webhook", at=AT) == {
            ("A-1", Hold.DISPUTE)
        }
    assert _active(book) == [("dispute", "webhook")]


def test_two_kinds_on_one_account_and_one_pair_asked_twice(book: Engine) -> None:
    """Both kinds are placed; the pair asked twice once, with the reason first given; one in force
    already is not placed again, on A-1 alone."""
    with book.begin() as c:
        assert place_holds(c, [("A-2", Hold.DISPUTE, "call")], source="agent", at=AT) == {
            ("A-2", Hold.DISPUTE)
        }
        wanted = [
            ("A-1", Hold.DISPUTE, "first"),
            ("A-1", Hold.CEASE_CONTACT, "letter"),
            ("A-1", Hold.DISPUTE, "second"),
            ("A-2", Hold.DISPUTE, "again"),
        ]
        assert place_holds(c, wanted, source="webhook", at=AT) == {
            ("A-1", Hold.DISPUTE),
            ("A-1", Hold.CEASE_CONTACT),
        }
        reasons = dict(c.execute(select(hold.c.kind, hold.c.reason).where(hold.c.account_id == "A-1")).all())
    assert reasons == {"dispute": "first", "cease_contact": "letter"}
    assert sorted(_active(book)) == [("cease_contact", "webhook"), ("dispute", "webhook")]
    assert _active(book, "A-2") == [("dispute", "agent")]


def test_a_reason_is_stored_whole(book: Engine) -> None:
    """The reasons reach PostgreSQL as one array: of unbounded text, not cut to a column's length."""
    why = "the borrower wrote that the debt is not theirs: " + "x" * 200
    with book.begin() as c:
        assert place_holds(c, [("A-1", Hold.DISPUTE, why)], source="webhook", at=AT) == {
            ("A-1", Hold.DISPUTE)
        }
        assert c.execute(select(hold.c.reason, hold.c.placed_at)).one() == (why, AT)


def test_a_borrowers_hold_an_import_spread_is_in_force_for_the_placers(book: Engine) -> None:
    """The index leaves the import's borrower holds out (the file's own flag is placed beside one);
    every other placer still finds A-1 held by it, and places nothing beside it."""
    with book.begin() as c:
        c.execute(
            hold.insert(),
            [{"account_id": "A-1", "kind": "bankruptcy", "source": "import_borrower", "placed_at": AT}],
        )
        assert place_holds(c, [("A-1", Hold.BANKRUPTCY, "bureau")], source="bureau", at=AT) == set()
        c.execute(
            hold.insert(), [{"account_id": "A-1", "kind": "bankruptcy", "source": "import", "placed_at": AT}]
        )
    assert _active(book) == [("bankruptcy", "import_borrower"), ("bankruptcy", "import")]


# -- the migration --------------------------------------------------------------------------------------


@pytest.fixture
def at_0025(db_url: str, tmp_path: Path) -> Engine:
    """A database as arrears left it before 0026, with A-1 and A-2."""
    engine = get_engine(db_url)
    if engine.dialect.name == "postgresql":  # the test's database comes at head: start it afresh
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    migrate(engine, "0025")
    import_rows(engine, tmp_path, [us_account(a) for a in ACCOUNTS], now=at("2026-12-01T12:00:00Z"))
    return engine


def _ids(c: Connection, rows: list[dict[str, Any]]) -> list[int]:
    return [int(c.execute(hold.insert().values(r).returning(hold.c.id)).scalar_one()) for r in rows]


def test_the_migration_lifts_the_holds_placed_twice_and_keeps_the_first(at_0025: Engine) -> None:
    """A-1's dispute in force twice, the later row placed first: that one stays. A-2's twice at one
    instant: the lower id stays. Each other is lifted at the migration's instant, its reason kept, and
    audited naming the one kept. A lifted dispute, another kind, and a borrower's hold beside the
    file's own stay as they were. Then the database refuses a twin."""

    def h(account_id: str, kind: str, source: str, placed: str, **more: Any) -> dict[str, Any]:
        return {"account_id": account_id, "kind": kind, "source": source, "placed_at": at(placed)} | more

    with at_0025.begin() as c:
        agent, imported, lifted, cease, tie_first, tie_second, borrowers, files = _ids(
            c,
            [
                h("A-1", "dispute", "agent", "2026-12-02T10:00:00Z", reason="call"),
                h("A-1", "dispute", "import", "2026-12-02T09:00:00Z", reason="flag in f.csv line 2"),
                h("A-1", "dispute", "agent", "2026-12-01T08:00:00Z", lifted_at=at("2026-12-01T08:30:00Z")),
                h("A-1", "cease_contact", "webhook", "2026-12-02T10:00:00Z"),
                h("A-2", "dispute", "agent", "2026-12-02T10:00:00Z", reason="call"),
                h("A-2", "dispute", "webhook", "2026-12-02T10:00:00Z", reason="text"),
                h("A-2", "bankruptcy", "import_borrower", "2026-12-01T12:00:00Z"),
                h("A-2", "bankruptcy", "import", "2026-12-02T12:00:00Z"),
            ],
        )
    before = datetime.now(UTC)
    migrate(at_0025)
    after = datetime.now(UTC)
    with at_0025.connect() as c:
        found = {r.id: r for r in c.execute(select(hold)).all()}
        trail = c.execute(
            select(audit.c.account_id, audit.c.at, audit.c.actor, audit.c.data).where(audit.c.kind == "hold")
        ).all()
    in_force = sorted(i for i, r in found.items() if r.lifted_at is None)
    assert in_force == sorted([imported, cease, tie_first, borrowers, files])
    for twin in (agent, tie_second):
        assert found[twin].lifted_at is not None and before <= found[twin].lifted_at <= after
    assert (found[agent].reason, found[tie_second].reason) == ("call", "text")
    assert found[lifted].lifted_at == at("2026-12-01T08:30:00Z")
    assert sorted(
        (e.account_id, e.actor, e.data["action"], e.data["source"], e.data["kept"]) for e in trail
    ) == [
        ("A-1", "arrears", "lifted", "agent", imported),
        ("A-2", "arrears", "lifted", "webhook", tie_first),
    ]
    assert all(e.at == found[agent].lifted_at for e in trail)
    with at_0025.begin() as c:
        assert place_holds(c, [("A-1", Hold.DISPUTE, "again")], source="agent", at=AT) == set()
    with pytest.raises(IntegrityError), at_0025.begin() as c:
        c.execute(hold.insert().values(h("A-2", "dispute", "agent", "2026-12-03T10:00:00Z")))


def test_the_migration_changes_nothing_in_a_database_without_twins(at_0025: Engine) -> None:
    with at_0025.begin() as c:
        c.execute(
            hold.insert(), [{"account_id": "A-1", "kind": "dispute", "source": "agent", "placed_at": AT}]
        )
    migrate(at_0025)
    assert _active(at_0025) == [("dispute", "agent")]
    assert events(at_0025, "A-1", "hold") == []
