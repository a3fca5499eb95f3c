"""A borrower's hold a servicing file flags on one loan holds every open loan of the borrower.

A bankruptcy's automatic stay covers every debt (11 U.S.C. 362(a)), a death is the person's, active
duty the servicemember's. An agent's `hold place`, a borrower's text and the bureau already held every
open loan (tests/test_borrower_holds.py); an import held the flagged account alone, so a file
flagging bankruptcy on A-1 left the borrower's A-2 texted and its repossession order live. Now the
import holds A-2 too (source `import_borrower`), lifts it when the file flags the borrower nowhere
any more, never holds it again after a person lifted it, and never spreads a debt's hold, nor holds
a closed loan or another borrower at the same number and address. On SQLite and PostgreSQL.
"""

import itertools
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, update
from typer.testing import CliRunner

from arrears.models import AgencyAssignment, Message
from arrears.storage import borrower_holds
from arrears.storage.holds import lift_hold
from arrears.storage.importer import AccountCounts
from arrears.storage.tables import hold
from arrears.vocabulary import Exit, Hold
from deployments.cli import app
from tests.factories import account_record, write_csv
from tests.later_stage_helpers import account_t, at, day, events, import_rows, put_in_review, rows, us_account

assignment_t = AgencyAssignment.__table__  # type: ignore[attr-defined]
message_t = Message.__table__  # type: ignore[attr-defined]
CALIFORNIA = {"jurisdiction": "US-CA", "timezone": "America/Los_Angeles"}
PHONE = "(515) 281-4000"  # B-1's, and B-9's too: the same number and address, another borrower
BORROWER_KINDS = ["bankruptcy", "deceased", "military"]
_files = itertools.count()


def _book(
    engine: Engine, tmp_path: Path, flags: dict[str, str] | None = None, *, on: str, **more: Any
) -> Any:
    """An accounts file of B-1's A-1, A-2 and A-3 and B-9's A-9, with `flags` by account, imported `on`;
    its balances are new each time (a file like an earlier one would be refused: it sets them back)."""
    flags, balance = flags or {}, f"{18_000 + next(_files)}.00"
    records = [
        us_account(a, borrower_id=b, phone=PHONE, flags=flags.get(a, ""), balance=balance)
        for a, b in (("A-1", "B-1"), ("A-2", "B-1"), ("A-3", "B-1"), ("A-9", "B-9"))
    ]
    return import_rows(engine, tmp_path, records, now=at(on), **more)


@pytest.fixture
def book(engine: Engine, tmp_path: Path) -> Engine:
    """B-1's loans A-1, A-2 (open) and A-3 (closed), B-9's A-9 at the same number and address."""
    _book(engine, tmp_path, on="2026-11-30T12:00:00Z")
    with engine.begin() as c:
        c.execute(update(account_t).where(account_t.c.account_id == "A-3").values(stage=Exit.CLOSED.value))
    return engine


def _holds(engine: Engine, account_id: str, *, lifted: bool = False) -> list[tuple[str, str]]:
    """The account's holds in force (with `lifted`, every one), as (kind, source)."""
    query = select(hold.c.kind, hold.c.source).where(hold.c.account_id == account_id).order_by(hold.c.id)
    if not lifted:
        query = query.where(hold.c.lifted_at.is_(None))
    with engine.connect() as c:
        return [(h.kind, h.source) for h in c.execute(query)]


def _held(engine: Engine) -> dict[str, list[tuple[str, str]]]:
    return {a: _holds(engine, a) for a in ("A-1", "A-2", "A-3", "A-9")}


def _lift_by_agent(engine: Engine, account_id: str, kind: Hold, on: str) -> None:
    with engine.begin() as c:
        assert lift_hold(c, account_id=account_id, kind=kind, by="Bo", why="reaffirmed", at=at(on))


# -- placed on the borrower's other open loans -----------------------------------------------------


@pytest.mark.parametrize("kind", BORROWER_KINDS)
def test_a_borrowers_flag_on_one_loan_holds_the_borrowers_other_open_loan(
    book: Engine, tmp_path: Path, kind: str
) -> None:
    """Flagged on A-1, the hold is on A-2 too, by a source of its own, naming A-1 and where the flag
    is; audited once, counted apart from the file's own flags. The closed A-3 and B-9's A-9 (same
    number, same address) get nothing. The same file again changes nothing."""
    summary = _book(book, tmp_path, {"A-1": kind}, on="2026-12-01T12:00:00Z")
    assert _held(book) == {
        "A-1": [(kind, "import")],
        "A-2": [(kind, "import_borrower")],
        "A-3": [],
        "A-9": [],
    }
    counts = summary.counts
    assert (counts.holds_placed, counts.borrower_holds_placed, counts.borrower_holds_lifted) == (1, 1, 0)

    with book.connect() as c:
        (on_a2,) = c.execute(select(hold).where(hold.c.account_id == "A-2")).all()
    flag = f"flag in {summary.file.name} line 2"
    assert on_a2.reason == f"{kind} flagged on A-1 ({flag})"
    assert on_a2.placed_at == at("2026-12-01T12:00:00Z")
    (placed,) = events(book, "A-2", "hold")
    assert (placed.actor, placed.detail) == (
        "import",
        f"{kind} hold placed by import for the borrower: {on_a2.reason}",
    )
    assert placed.data == {
        "hold": kind,
        "action": "placed",
        "source": "import_borrower",
        "reason": on_a2.reason,
        "file": summary.file.name,
        "recorded_on": "A-1",
    }
    assert events(book, "A-3", "hold") == events(book, "A-9", "hold") == []

    again = _book(book, tmp_path, {"A-1": kind}, on="2026-12-02T12:00:00Z")
    assert (again.counts.holds_placed, again.counts.borrower_holds_placed) == (0, 0)
    assert _holds(book, "A-2", lifted=True) == [(kind, "import_borrower")]


@pytest.mark.parametrize("kind", ["dispute", "cease_contact", "breathing_space"])
def test_a_debts_flag_holds_its_own_account_alone(book: Engine, tmp_path: Path, kind: str) -> None:
    summary = _book(book, tmp_path, {"A-1": kind}, on="2026-12-01T12:00:00Z")
    assert _held(book) == {"A-1": [(kind, "import")], "A-2": [], "A-3": [], "A-9": []}
    assert summary.counts.borrower_holds_placed == 0


def test_a_loan_the_borrower_takes_later_is_held_by_the_flag_in_force(book: Engine, tmp_path: Path) -> None:
    """A-1 flagged since December 1st; B-1's new loan A-4, in the next file, is held too."""
    _book(book, tmp_path, {"A-1": "bankruptcy"}, on="2026-12-01T12:00:00Z")
    new = us_account("A-4", borrower_id="B-1", phone=PHONE)
    summary = import_rows(book, tmp_path, [new], now=at("2026-12-02T12:00:00Z"))
    assert summary.counts.borrower_holds_placed == 1
    assert _holds(book, "A-4") == [("bankruptcy", "import_borrower")]


def test_a_borrower_flagged_on_two_loans_is_named_by_the_first(book: Engine, tmp_path: Path) -> None:
    """Flagged on A-1 and A-2, the borrower holds neither twice; the open loan left is held once, by A-1."""
    with book.begin() as c:
        c.execute(update(account_t).where(account_t.c.account_id == "A-3").values(stage="reminder"))
    summary = _book(book, tmp_path, {"A-1": "military", "A-2": "military"}, on="2026-12-01T12:00:00Z")
    assert (summary.counts.holds_placed, summary.counts.borrower_holds_placed) == (2, 1)
    assert _held(book) == {
        "A-1": [("military", "import")],
        "A-2": [("military", "import")],
        "A-3": [("military", "import_borrower")],
        "A-9": [],
    }
    assert events(book, "A-3", "hold")[0].data["recorded_on"] == "A-1"


# -- lifted with the flag, never by the loan's own row --------------------------------------------


def test_the_borrowers_hold_stays_while_the_flag_does_and_goes_with_it(book: Engine, tmp_path: Path) -> None:
    """A-2's own row never carries the flag: the next file, still flagging A-1, leaves A-2 held. The
    file after it drops A-1's flag: A-1's hold and A-2's are lifted, A-2's audited as the borrower's."""
    _book(book, tmp_path, {"A-1": "bankruptcy"}, on="2026-12-01T12:00:00Z")
    kept = _book(book, tmp_path, {"A-1": "bankruptcy"}, on="2026-12-02T12:00:00Z")
    assert (kept.counts.holds_lifted, kept.counts.borrower_holds_lifted) == (0, 0)
    assert _holds(book, "A-2") == [("bankruptcy", "import_borrower")]

    dropped = _book(book, tmp_path, on="2026-12-03T12:00:00Z")
    assert (dropped.counts.holds_lifted, dropped.counts.borrower_holds_lifted) == (1, 1)
    assert _held(book) == {"A-1": [], "A-2": [], "A-3": [], "A-9": []}
    lifted = events(book, "A-2", "hold")[-1]
    assert lifted.at == at("2026-12-03T12:00:00Z")
    assert lifted.detail == (
        "bankruptcy hold lifted by import for the borrower: no account of the borrower is flagged "
        "bankruptcy any more"
    )
    assert (lifted.data["action"], lifted.data["source"], lifted.data["file"]) == (
        "lifted",
        "import_borrower",
        dropped.file.name,
    )


def test_a_file_without_flags_says_nothing_of_the_borrowers_hold(book: Engine, tmp_path: Path) -> None:
    _book(book, tmp_path, {"A-1": "deceased"}, on="2026-12-01T12:00:00Z")
    no_flags = [{k: v for k, v in us_account("A-1", borrower_id="B-1", phone=PHONE).items() if k != "flags"}]
    summary = import_rows(book, tmp_path, no_flags, now=at("2026-12-02T12:00:00Z"))
    assert (summary.counts.holds_lifted, summary.counts.borrower_holds_lifted) == (0, 0)
    assert _holds(book, "A-2") == [("deceased", "import_borrower")]


def test_the_loans_own_flag_outlives_the_borrowers_hold(book: Engine, tmp_path: Path) -> None:
    """Held for A-1's flag, A-2 then gets its own flag: the file's hold is placed beside the
    borrower's. The file drops A-1's flag and keeps A-2's: A-2 stays held by its own, and A-1,
    which the file says is no longer bankrupt, is not held again by A-2's."""
    _book(book, tmp_path, {"A-1": "bankruptcy"}, on="2026-12-01T12:00:00Z")
    both = _book(book, tmp_path, {"A-1": "bankruptcy", "A-2": "bankruptcy"}, on="2026-12-02T12:00:00Z")
    assert both.counts.holds_placed == 1
    assert _holds(book, "A-2") == [("bankruptcy", "import_borrower"), ("bankruptcy", "import")]

    moved = _book(book, tmp_path, {"A-2": "bankruptcy"}, on="2026-12-03T12:00:00Z")
    assert (moved.counts.borrower_holds_placed, moved.counts.borrower_holds_lifted) == (0, 0)
    assert _held(book) == {
        "A-1": [],
        "A-2": [("bankruptcy", "import_borrower"), ("bankruptcy", "import")],
        "A-3": [],
        "A-9": [],
    }
    gone = _book(book, tmp_path, on="2026-12-04T12:00:00Z")
    assert (gone.counts.holds_lifted, gone.counts.borrower_holds_lifted) == (1, 1)
    assert _held(book) == {"A-1": [], "A-2": [], "A-3": [], "A-9": []}


# -- a person's lift stands -----------------------------------------------------------------------


def test_a_person_lifting_the_borrowers_hold_on_a_loan_is_not_undone_by_the_next_file(
    book: Engine, tmp_path: Path
) -> None:
    """A discharge with A-2 reaffirmed: an agent lifts A-2's hold while the file goes on flagging
    A-1; the next files hold A-2 no more. Once the file has stopped flagging the borrower, a new
    flag is a new hold, and holds A-2 again."""
    _book(book, tmp_path, {"A-1": "bankruptcy"}, on="2026-12-01T12:00:00Z")
    _lift_by_agent(book, "A-2", Hold.BANKRUPTCY, on="2026-12-02T09:00:00Z")
    for on in ("2026-12-02T12:00:00Z", "2026-12-03T12:00:00Z"):
        summary = _book(book, tmp_path, {"A-1": "bankruptcy"}, on=on)
        assert summary.counts.borrower_holds_placed == 0
        assert _holds(book, "A-2") == []
    assert _holds(book, "A-1") == [("bankruptcy", "import")]

    _book(book, tmp_path, on="2026-12-04T12:00:00Z")  # the flag gone: the borrower's hold is over
    again = _book(book, tmp_path, {"A-1": "bankruptcy"}, on="2026-12-10T12:00:00Z")
    assert again.counts.borrower_holds_placed == 1
    assert _holds(book, "A-2") == [("bankruptcy", "import_borrower")]


def test_a_person_lifting_the_loans_hold_of_another_source_also_stands(book: Engine, tmp_path: Path) -> None:
    """The file flags A-2 too, then drops A-2's flag alone: the file says A-2 is not held, and the
    borrower's flag on A-1 does not hold it again."""
    _book(book, tmp_path, {"A-1": "bankruptcy", "A-2": "bankruptcy"}, on="2026-12-01T12:00:00Z")
    summary = _book(book, tmp_path, {"A-1": "bankruptcy"}, on="2026-12-02T12:00:00Z")
    assert (summary.counts.holds_lifted, summary.counts.borrower_holds_placed) == (1, 0)
    assert _holds(book, "A-2") == []


# -- bulk: a few statements, whatever the number of borrowers -------------------------------------


def test_the_statements_do_not_grow_with_the_borrowers(engine: Engine) -> None:
    """Ten times the borrowers flagged, held and lifted: the same number of statements."""
    from arrears.storage.importer import upsert_accounts
    from tests.factories import account_row

    def statements(borrowers: int, flag: str, on: str) -> tuple[int, AccountCounts]:
        rows = [
            account_row(line=n, account_id=f"A-{borrowers}-{b}-{loan}", borrower_id=f"B-{borrowers}-{b}",
                        flags=flag if loan == 1 else "")
            for n, (b, loan) in enumerate(((b, loan) for b in range(borrowers) for loan in (1, 2, 3)), 2)
        ]  # fmt: skip
        counts = AccountCounts()
        seen: list[str] = []
        with engine.begin() as c:
            upsert_accounts(rows, connection=c, now=at(on), origin="accounts.csv")
            event.listen(c, "before_cursor_execute", lambda *a: seen.append(a[2]))
            borrower_holds.spread(c, counts, file="accounts.csv", now=at(on))
        return len(seen), counts

    counted = {
        borrowers: (statements(borrowers, "bankruptcy", f"2026-12-0{day}T12:00:00Z"),
                    statements(borrowers, "", f"2026-12-0{day + 1}T12:00:00Z"))
        for borrowers, day in ((3, 1), (30, 3))
    }  # fmt: skip
    (few_placing, few_placed), (few_lifting, few_lifted) = counted[3]
    (many_placing, many_placed), (many_lifting, many_lifted) = counted[30]
    assert (few_placed.borrower_holds_placed, many_placed.borrower_holds_placed) == (6, 60)
    assert (few_lifted.borrower_holds_lifted, many_lifted.borrower_holds_lifted) == (6, 60)
    assert few_placing == many_placing <= 6
    assert few_lifting == many_lifting <= 6


# -- what the hold stops: the cycle's texts, a repossession order ------------------------------------


@pytest.mark.usefixtures("prefect_harness")
def test_a_cycle_texts_nothing_to_the_loan_the_borrowers_flag_holds(mail_db: Engine, tmp_path: Path) -> None:
    """Before, B-1's A-2 (and A-3) was texted the day its file flagged B-1 bankrupt on A-1: now the
    cycle writes no text to any of B-1's loans, and B-9's A-9 at the same number is texted."""
    _book(mail_db, tmp_path, {"A-1": "bankruptcy"}, on="2026-12-01T15:00:00Z")
    day(mail_db, "2026-12-01T16:00:00Z")
    with mail_db.connect() as c:
        texted = [tuple(m) for m in c.execute(select(message_t.c.account_id, message_t.c.status))]
    assert texted == [("A-9", "sent")]


def test_the_file_calls_off_the_repossession_of_the_borrowers_other_loan(
    mail_db: Engine, tmp_path: Path
) -> None:
    """B-R's loan A-R2 has an approved repossession order the agency holds; the file flagging B-R
    bankrupt on A-R1 calls it off in its own transaction, with the hold as reason."""
    from tasks.agency import call_off_overtaken, push_assignments
    from tasks.review import decide_review, prepare_reviews

    for account_id in ("A-R1", "A-R2"):
        put_in_review(mail_db, tmp_path, account_id, borrower_id="B-R", phone=PHONE, **CALIFORNIA)
    prepare_reviews.fn(at("2026-12-01T17:00:00Z"))
    decided = decide_review(
        mail_db, account_id="A-R2", decision="repossess", reviewer="Ana", reason="no contact",
        at=at("2026-12-02T17:00:00Z"),
    )  # fmt: skip
    assert decided.order_id is not None
    assert push_assignments.fn()["assignments_sent"] == 1

    flagged = us_account(
        "A-R1", borrower_id="B-R", phone=PHONE, flags="bankruptcy", past_due_amount="825.00",
        oldest_due_date="2026-10-01", **CALIFORNIA,
    )  # fmt: skip
    summary = import_rows(mail_db, tmp_path, [flagged], now=at("2026-12-03T18:00:00Z"))
    assert (summary.counts.borrower_holds_placed, summary.vendor_orders_cancelled) == (1, 1)
    called_off = events(mail_db, "A-R2", "vendor_order")[-1].data
    assert (called_off["action"], called_off["reason"]) == ("cancelled", "hold:bankruptcy")
    call_off_overtaken()  # as `arrears import accounts` does once the file is stored
    assert rows(mail_db, assignment_t, "A-R2")[0].status == "cancelled"


# -- the CLI -----------------------------------------------------------------------------------------


def test_the_import_says_how_many_loans_the_borrowers_flag_held(tmp_path: Path, sqlite_url: str) -> None:
    records = [
        account_record(account_id=a, borrower_id="B-1", flags=f)
        for a, f in (("A-1", "bankruptcy"), ("A-2", ""))
    ]
    path = write_csv(tmp_path / "accounts.csv", records)
    out = CliRunner().invoke(app, ["import", "accounts", str(path), "--database", sqlite_url, "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert (summary["holds_placed"], summary["borrower_holds_placed"], summary["borrower_holds_lifted"]) == (
        1,
        1,
        0,
    )
    listed = CliRunner().invoke(app, ["hold", "list", "A-2", "--json", "--database", sqlite_url])
    (on_a2,) = json.loads(listed.stdout)
    assert (on_a2["kind"], on_a2["placed_by"]) == ("bankruptcy", "import_borrower")
    assert on_a2["reason"] == "bankruptcy flagged on A-1 (flag in accounts.csv line 2)"
    assert isinstance(datetime.fromisoformat(on_a2["placed_at"]), datetime)
