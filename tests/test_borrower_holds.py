"""A hold about the borrower, not one loan, placed by a person covers every open account of theirs.

A bankruptcy's automatic stay stays every debt of the debtor (11 U.S.C. 362(a)), a death is the
person's, and so is active duty (SCRA). Before, `arrears hold place A-1 bankruptcy` held A-1 alone:
the borrower's second loan was still texted, and its repossession order stayed live ("repossession
after a bankruptcy filing", what regulators find most often). The bureau and a borrower's text
already placed these per borrower. A debt's hold (a dispute) stays on the account; lifting stays per
account (a discharge with one loan reaffirmed ends the stay for that loan only). End to end through
the CLI and a real database.
"""

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from typer.testing import CliRunner

from arrears.models import AgencyAssignment
from arrears.storage import get_engine
from arrears.storage._common import place_holds
from arrears.storage.holds import place_hold
from arrears.vocabulary import Exit, Hold
from deployments.cli import app
from tests.factories import account_record, write_csv
from tests.later_stage_helpers import account_t, at, events, put_in_review, rows

assignment_t = AgencyAssignment.__table__  # type: ignore[attr-defined]
CALIFORNIA = {"jurisdiction": "US-CA", "timezone": "America/Los_Angeles"}
ADDRESS = {"address_line1": "12 Elm Street", "city": "Fresno", "state": "CA", "postal_code": "93721"}


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _held(db: list[str], account_id: str) -> list[str]:
    out = _cli("hold", "list", account_id, "--json", *db)
    assert out.exit_code == 0, out.output
    return sorted(h["kind"] for h in json.loads(out.stdout))


@pytest.fixture
def book(tmp_path: Path, sqlite_url: str) -> list[str]:
    """Borrower B-1's loans A-1 and A-2 (open) and A-3 (closed), and borrower B-9's A-9 at the
    same number and address: the `--database` option of the commands."""
    records = [
        account_record(account_id=a, borrower_id=b, **ADDRESS)
        for a, b in (("A-1", "B-1"), ("A-2", "B-1"), ("A-3", "B-1"), ("A-9", "B-9"))
    ]
    imported = _cli(
        "import", "accounts", str(write_csv(tmp_path / "accounts.csv", records)), "--database", sqlite_url
    )
    assert imported.exit_code == 0, imported.output
    with get_engine(sqlite_url).begin() as c:
        c.execute(update(account_t).where(account_t.c.account_id == "A-3").values(stage=Exit.CLOSED.value))
    return ["--database", sqlite_url]


def test_which_holds_are_the_borrowers() -> None:
    """Bankruptcy, death and active duty are the person's; a dispute, a cease-contact request and a
    Breathing Space are a debt's; an SMS opt-out is the number's."""
    assert {h for h in Hold if h.of_borrower} == {Hold.BANKRUPTCY, Hold.DECEASED, Hold.MILITARY}


@pytest.mark.parametrize("kind", ["bankruptcy", "deceased", "military"])
def test_a_borrowers_hold_placed_on_one_loan_holds_every_open_loan_of_the_borrower(
    book: list[str], kind: str
) -> None:
    """Placed on A-1, the hold is on A-2 too, each audited as the agent's for the borrower, naming
    where it was recorded; the closed A-3 and the other borrower's A-9 (same number, same address)
    get nothing. Placing it again changes nothing."""
    placed = _cli("hold", "place", "A-1", kind, "--reason", "case 26-10001", "--agent", "Ana", *book)
    assert placed.exit_code == 0, placed.output
    assert placed.output.splitlines() == [
        f"A-1: {kind} hold placed",
        f"A-2: {kind} hold placed (the borrower's, recorded on A-1)",
    ]
    assert [_held(book, a) for a in ("A-1", "A-2", "A-3", "A-9")] == [[kind], [kind], [], []]
    (on_a2,) = json.loads(_cli("hold", "list", "A-2", "--json", *book).stdout)
    assert (on_a2["placed_by"], on_a2["reason"]) == ("Ana", "case 26-10001")

    timeline = {
        a: [(e["actor"], e["detail"]) for e in json.loads(_cli("show", a, "--json", *book).stdout)["timeline"]
            if e["kind"] == "hold"]
        for a in ("A-1", "A-2", "A-3", "A-9")
    }  # fmt: skip
    assert timeline == {
        "A-1": [("Ana", f"{kind} hold placed by Ana for the borrower (also on A-2): case 26-10001")],
        "A-2": [("Ana", f"{kind} hold placed by Ana for the borrower (recorded on A-1): case 26-10001")],
        "A-3": [],
        "A-9": [],
    }

    again = _cli("hold", "place", "A-2", kind, "--reason", "again", *book)
    assert again.output.splitlines() == [f"A-2: a {kind} hold is in force already: nothing changed"]
    assert [_held(book, a) for a in ("A-1", "A-2", "A-3", "A-9")] == [[kind], [kind], [], []]


def test_a_borrowers_hold_fills_in_the_open_loans_that_lack_it(book: list[str]) -> None:
    """The asked loan held already (a bankruptcy flag of its file), the borrower's other open loan
    is held all the same, and the output says both."""
    database = book[1]
    with get_engine(database).begin() as c:  # as an import's flag: that account alone
        place_holds(
            c, [("A-1", Hold.BANKRUPTCY, "flag in file")], source="import", at=at("2026-12-01T00:00:00Z")
        )
    placed = _cli("hold", "place", "A-1", "bankruptcy", "--reason", "confirmed by counsel", *book)
    assert placed.output.splitlines() == [
        "A-1: a bankruptcy hold is in force already",
        "A-2: bankruptcy hold placed (the borrower's, recorded on A-1)",
    ]
    assert [_held(book, a) for a in ("A-1", "A-2", "A-3", "A-9")] == [["bankruptcy"]] * 2 + [[], []]
    with get_engine(database).begin() as c:  # and the storage function says what it placed: nothing now
        assert (
            place_hold(
                c, account_id="A-2", kind=Hold.BANKRUPTCY, by="Bo", why="x", at=at("2026-12-02T00:00:00Z")
            )
            == []
        )


@pytest.mark.parametrize("kind", ["dispute", "cease_contact", "breathing_space"])
def test_a_debts_hold_stays_on_its_account(book: list[str], kind: str) -> None:
    """A dispute, a cease-contact request or a Breathing Space is of the debt it names: A-2 is not held."""
    placed = _cli("hold", "place", "A-1", kind, "--reason", "by phone", *book)
    assert placed.output.splitlines() == [f"A-1: {kind} hold placed"]
    assert [_held(book, a) for a in ("A-1", "A-2", "A-3", "A-9")] == [[kind], [], [], []]
    (placed_event,) = events(get_engine(book[1]), "A-1", "hold")
    assert placed_event.detail == f"{kind} hold placed by agent: by phone"
    assert "recorded_on" not in placed_event.data


def test_lifting_a_borrowers_hold_on_one_loan_leaves_the_others_held(book: list[str]) -> None:
    """A discharge with A-2 reaffirmed: the stay ends for A-2 alone, A-1 stays held."""
    assert _cli("hold", "place", "A-1", "bankruptcy", "--reason", "chapter 7", *book).exit_code == 0
    lifted = _cli("hold", "lift", "A-2", "bankruptcy", "--reason", "reaffirmed", "--agent", "Bo", *book)
    assert lifted.output.splitlines() == ["A-2: bankruptcy hold lifted"]
    assert [_held(book, a) for a in ("A-1", "A-2")] == [["bankruptcy"], []]
    last = events(get_engine(book[1]), "A-2", "hold")[-1]
    assert last.detail.startswith("bankruptcy hold lifted by Bo: reaffirmed (placed by agent on ")


def test_the_help_says_whose_hold_goes_where() -> None:
    """`hold place --help` names the borrower's holds and the debt's; `hold lift --help` says it
    lifts one account's."""
    place = " ".join(_cli("hold", "place", "--help").output.split())
    assert "every open account of the account's borrower" in place and "this account only" in place
    lift = " ".join(_cli("hold", "lift", "--help").output.split())
    assert "On this account alone, a borrower's hold too" in lift


# -- a repossession order on the borrower's other loan ------------------------------------------------


def test_a_bankruptcy_placed_on_one_loan_calls_off_the_repossession_of_the_other(
    mail_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """B-R's loan A-R2 has an approved repossession order the agency holds; the bankruptcy an agent
    records on A-R1 calls it off at the agency at once, with the hold as reason."""
    from tasks.agency import push_assignments
    from tasks.review import decide_review, prepare_reviews

    for account_id in ("A-R1", "A-R2"):
        put_in_review(mail_db, tmp_path, account_id, borrower_id="B-R", **CALIFORNIA)
    prepare_reviews.fn(at("2026-12-01T17:00:00Z"))
    decided = decide_review(
        mail_db, account_id="A-R2", decision="repossess", reviewer="Ana", reason="no contact",
        at=at("2026-12-02T17:00:00Z"),
    )  # fmt: skip
    assert decided.order_id is not None
    assert push_assignments.fn()["assignments_sent"] == 1
    assert rows(mail_db, assignment_t, "A-R2")[0].status == "assigned"

    placed = _cli(
        "hold", "place", "A-R1", "bankruptcy", "--reason", "chapter 13 filed", "--agent", "Ana",
        "--as-of", "2026-12-03T18:00:00Z", "--database", db_url,
    )  # fmt: skip
    assert placed.exit_code == 0, placed.output
    assert "A-R2: bankruptcy hold placed (the borrower's, recorded on A-R1)" in placed.output
    assert rows(mail_db, assignment_t, "A-R2")[0].status == "cancelled"  # called off at the agency
    called_off = events(mail_db, "A-R2", "vendor_order")[-1].data
    assert (called_off["action"], called_off["reason"]) == ("cancelled", "hold:bankruptcy")


# -- the send-time check -------------------------------------------------------------------------------


def test_the_send_time_check_refuses_a_text_to_the_borrowers_other_loan(
    engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sms_sandbox: Any
) -> None:
    """The cycle wrote a text for each of B-1's loans and one for B-9's; the bankruptcy recorded on
    A-1 before the dispatch blocks both of B-1's at send time, and B-9's goes."""
    from arrears.models import Message
    from arrears.settings import get_settings
    from tests.test_compliance_cycle import CN_NOON, _advance, _cn, _dispatch, _import

    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    message = Message.__table__  # type: ignore[attr-defined]
    _import(
        engine,
        tmp_path,
        [_cn(account_id="A-1", borrower_id="B-1"), _cn(account_id="A-2", borrower_id="B-1"),
         _cn(account_id="A-9", borrower_id="B-9", phone="13912349999")],
    )  # fmt: skip
    cycle_id = _advance(CN_NOON)
    placed = _cli(
        "hold", "place", "A-1", "bankruptcy", "--reason", "chapter 7", "--as-of", CN_NOON.isoformat(),
        "--database", db_url,
    )  # fmt: skip
    assert placed.exit_code == 0, placed.output
    _dispatch(CN_NOON, cycle_id)
    with engine.connect() as c:
        sent = {r.account_id: (r.status, r.reason) for r in c.execute(select(message))}
    assert sent == {
        "A-1": ("blocked", "hold:bankruptcy"),
        "A-2": ("blocked", "hold:bankruptcy"),
        "A-9": ("sent", None),
    }
