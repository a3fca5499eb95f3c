"""Isolation (DESIGN §4): one account or one inbound message that fails is quarantined with its
error and the rest of the shard, refresh and cycle goes on; replies from a number several
borrowers share are never attributed by guess; operators list and retry the quarantine."""

import json
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update
from typer.testing import CliRunner

from arrears.clock import business_date, parse_instant
from arrears.models import Message, Quarantine
from arrears.settings import get_settings
from tests.later_stage_helpers import (
    account,
    account_t,
    events,
    import_rows,
    promise_t,
    refresh_later,
    reply,
    rows,
    us_account,
)

quarantine_t = Quarantine.__table__  # type: ignore[attr-defined]
message_t = Message.__table__  # type: ignore[attr-defined]
SHARED = "(515) 281-7777"  # one phone, two borrowers
SHARED_E164 = "+15152817777"


@pytest.fixture
def later_db(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    return engine


def _entries(engine: Engine) -> list[Any]:
    with engine.connect() as c:
        return list(c.execute(select(quarantine_t).order_by(quarantine_t.c.id)).all())


def _poison_timezone(engine: Engine, account_id: str) -> None:
    """A servicing feed that wrote a time zone no database knows, past the importer's checks."""
    with engine.begin() as c:
        c.execute(
            update(account_t).where(account_t.c.account_id == account_id).values(timezone="Mars/Olympus")
        )


def engine_of_settings() -> Engine:
    from tasks.database import engine

    return engine()


def _advance(as_of: str) -> dict[str, int]:
    from tasks.cycle import Shard, advance_shard

    refresh_later(engine_of_settings(), as_of)  # days past due first, as the cycle does
    instant = parse_instant(as_of)
    day = business_date(instant, get_settings().lender_timezone)
    return advance_shard.fn(Shard(0, "A", None), instant, day, 7)


# -- one account in a shard ------------------------------------------------------------------------


def test_shard_with_one_failing_account_writes_the_others_and_quarantines_it(
    later_db: Engine, tmp_path: Path
) -> None:
    """An account whose decision raises is quarantined with its error; the shard's other accounts
    move and get their messages, and the next run skips the quarantined one."""
    import_rows(later_db, tmp_path, [us_account(a) for a in ("A-S1", "A-S2", "A-S3")])
    _poison_timezone(later_db, "A-S2")
    counts = _advance("2026-12-01T16:00:00Z")
    assert (counts["accounts"], counts["quarantined"]) == (2, 1)
    assert [account(later_db, a).stage for a in ("A-S1", "A-S2", "A-S3")] == ["reminder", "cured", "reminder"]
    (entry,) = _entries(later_db)
    assert (entry.what, entry.ref, entry.account_id, entry.step, entry.resolved, entry.cycle_id) == (
        "account",
        "A-S2",
        "A-S2",
        "advance",
        False,
        7,
    )
    assert "Mars/Olympus" in entry.error and entry.error_type
    again = _advance("2026-12-02T16:00:00Z")
    assert (again["accounts"], again["quarantined"]) == (2, 0)
    assert len(_entries(later_db)) == 1


# -- one inbound message in the refresh ------------------------------------------------------------


def _raise_for(word: str, real: Callable[[str], Any]) -> Callable[[str], Any]:
    def read(text: str) -> Any:
        if word in text:
            raise RuntimeError(f"cannot read {text!r} from +15152810000")
        return real(text)

    return read


def test_reply_that_raises_is_quarantined_and_the_other_replies_are_read(
    later_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply whose reading raises is quarantined by its callback, masked, and left unread; another
    borrower's promise in the same refresh is recorded, and the next refresh does not trip on it."""
    import tasks.promises

    monkeypatch.setattr(tasks.promises, "read_promise", _raise_for("POISON", tasks.promises.read_promise))
    import_rows(later_db, tmp_path, [us_account("A-R1"), us_account("A-R2")])
    reply(later_db, "A-R1", "PAY 100 2026-12-05 POISON", "2026-12-02T17:00:00Z")
    reply(later_db, "A-R2", "PAY 412.50 2026-12-05", "2026-12-02T17:00:00Z")
    counts = refresh_later(later_db, "2026-12-03T16:00:00Z")
    assert (counts["replies_read"], counts["promises_from_replies"], counts["replies_quarantined"]) == (
        1,
        1,
        1,
    )
    assert [p.amount for p in rows(later_db, promise_t, "A-R2")] == [Decimal("412.50")]
    assert rows(later_db, promise_t, "A-R1") == []
    (entry,) = _entries(later_db)
    (evidence,) = events(later_db, "A-R1", "reply")
    assert (entry.what, entry.ref, entry.account_id, entry.step) == (
        "inbound",
        evidence.data["callback_id"],
        "A-R1",
        "replies",
    )
    assert "+15152810000" not in entry.error and "0000" in entry.error
    assert refresh_later(later_db, "2026-12-04T16:00:00Z")["replies_quarantined"] == 0
    assert len(_entries(later_db)) == 1


# -- a number several borrowers share --------------------------------------------------------------


def _shared_phone(engine: Engine, tmp_path: Path) -> None:
    """Two borrowers on one phone; the second already promised 412.50 by 10 December."""
    import_rows(
        engine,
        tmp_path,
        [
            us_account("A-F1", borrower_id="B-F1", phone=SHARED),
            us_account("A-F2", borrower_id="B-F2", borrower_name="Lee Whitfield", phone=SHARED),
        ],
    )
    with engine.begin() as c:
        c.execute(
            insert(promise_t).values(
                account_id="A-F2",
                amount=Decimal("412.50"),
                due_date=date(2026, 12, 10),
                status="pending",
                source="agent",
                created_at=parse_instant("2026-12-01T17:00:00Z"),
            )
        )


def _text_from_shared(engine: Engine, text: str) -> Any:
    from tasks.inbound import record_inbound_sms

    return record_inbound_sms(
        engine,
        address=SHARED_E164,
        text=text,
        at=parse_instant("2026-12-02T17:00:00Z"),
        provider="sandbox",
        callback_id="cb-shared-1",
    )


def test_reply_from_a_shared_number_is_not_attributed_by_guess(later_db: Engine, tmp_path: Path) -> None:
    """A promise from a number two open accounts share writes no promise to either, leaves the other
    borrower's promise pending, runs no lifecycle, and is set aside for an agent as `ambiguous sender`."""
    _shared_phone(later_db, tmp_path)
    result = _text_from_shared(later_db, "PAY 50 2026-12-20")
    assert result.lifecycle_accounts == ()
    refresh_later(later_db, "2026-12-03T16:00:00Z")
    assert rows(later_db, promise_t, "A-F1") == []
    assert [(p.status, p.amount) for p in rows(later_db, promise_t, "A-F2")] == [
        ("pending", Decimal("412.50"))
    ]
    for a in ("A-F1", "A-F2"):
        (note,) = events(later_db, a, "unattributed_reply")
        assert "not attributed" in note.detail and SHARED_E164 not in note.detail
    (entry,) = _entries(later_db)
    assert (entry.what, entry.ref, entry.account_id, entry.error_type) == (
        "inbound",
        "cb-shared-1",
        None,
        "ambiguous sender",
    )


def test_reply_from_a_shared_number_goes_to_the_account_we_texted(later_db: Engine, tmp_path: Path) -> None:
    """When only one of the accounts sharing the number was texted there lately, the reply answers it:
    the promise is that account's, and the other borrower's promise is untouched."""
    _shared_phone(later_db, tmp_path)
    at = parse_instant("2026-12-01T18:00:00Z")
    with later_db.begin() as c:
        c.execute(
            insert(message_t).values(
                idempotency_key="k-F1",
                account_id="A-F1",
                channel="sms",
                address=SHARED_E164,
                template="reminder",
                params={},
                body="Reminder",
                stage="reminder",
                episode=1,
                not_before=at,
                status="sent",
                attempts=1,
                created_at=at,
                sent_at=at,
            )
        )
        c.execute(update(account_t).values(stage="reminder"))
    result = _text_from_shared(later_db, "PAY 50 2026-12-20")
    assert result.lifecycle_accounts == ("A-F1",)
    refresh_later(later_db, "2026-12-03T16:00:00Z")
    assert [(p.status, p.amount) for p in rows(later_db, promise_t, "A-F1")] == [("pending", Decimal("50"))]
    assert [p.status for p in rows(later_db, promise_t, "A-F2")] == ["pending"]
    assert _entries(later_db) == []


# -- the operators' commands and the counts, under the cycle ---------------------------------------


def _cli(*args: str) -> Any:
    from deployments.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.mark.usefixtures("prefect_harness", "sms_sandbox")
def test_cycle_counts_the_quarantine_and_the_operator_retries_it(
    later_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """A cycle with one poisoned account finishes, its summary and report count the quarantined account,
    `quarantine list` shows it, a retry while it is still broken leaves it open (exit 1), and a retry
    after the data is fixed advances it and resolves the entry."""
    import_rows(later_db, tmp_path, [us_account("A-C1"), us_account("A-C2")])
    _poison_timezone(later_db, "A-C2")
    cycle = _cli("cycle", "--as-of", "2026-12-01T16:00:00Z", "--database", db_url)
    assert cycle.exit_code == 0, cycle.output
    assert "quarantined in this cycle: 1" in cycle.output
    report = json.loads(_cli("report", "--json", "--database", db_url).stdout)
    assert report["quarantine"] == {
        "open": {"account": 1, "inbound": 0, "message": 0},
        "open_total": 1,
        "this_cycle": 1,
    }
    listed = json.loads(_cli("quarantine", "list", "--json", "--database", db_url).stdout)
    assert [(e["what"], e["ref"], e["step"], e["resolved"]) for e in listed] == [
        ("account", "A-C2", "advance", False)
    ]
    entry_id = str(listed[0]["id"])

    still = _cli("quarantine", "retry", entry_id, "--as-of", "2026-12-01T16:00:00Z", "--database", db_url)
    assert still.exit_code == 1 and "still in quarantine" in still.output
    (entry,) = _entries(later_db)
    assert (entry.resolved, entry.retried_at is not None) == (False, True)

    with later_db.begin() as c:
        c.execute(
            update(account_t).where(account_t.c.account_id == "A-C2").values(timezone="America/Chicago")
        )
    fixed = _cli("quarantine", "retry", "--all", "--as-of", "2026-12-01T16:00:00Z", "--database", db_url)
    assert fixed.exit_code == 0, fixed.output
    assert f"{entry_id}: resolved" in fixed.output
    assert account(later_db, "A-C2").stage == "reminder"
    assert json.loads(_cli("quarantine", "list", "--json", "--database", db_url).stdout) == []


def test_retry_needs_one_entry_or_all(later_db: Engine, db_url: str) -> None:
    """`quarantine retry` without an ID or --all (or with both) is a usage error that changes nothing."""
    from deployments.cli._common import CliError

    for args in ((), ("1", "--all")):
        result = CliRunner().invoke(
            __import__("deployments.cli", fromlist=["app"]).app,
            ["quarantine", "retry", *args, "--database", db_url],
        )
        assert isinstance(result.exception, CliError) and result.exception.exit_code == 2


@pytest.mark.usefixtures("prefect_harness", "sms_sandbox")
def test_message_whose_check_raises_is_quarantined_and_the_batch_sends_the_rest(
    later_db: Engine, tmp_path: Path
) -> None:
    """In a dispatch batch, a message whose send-time check raises is quarantined (its lease let go)
    and stays scheduled, the other borrower's message is sent, and the next dispatch skips it."""
    from flows.daily_cycle import dispatch_outbox

    import_rows(later_db, tmp_path, [us_account("A-D1"), us_account("A-D2")])
    _advance("2026-12-01T16:00:00Z")  # 10:00 in Chicago: both reminders due now
    _poison_timezone(later_db, "A-D2")
    counts = dispatch_outbox(as_of="2026-12-01T16:05:00Z")
    assert (counts.get("sent", 0) + counts.get("delivered", 0), counts["quarantined"]) == (1, 1)
    (poisoned,) = rows(later_db, message_t, "A-D2")
    assert (poisoned.status, poisoned.lease_until) == ("scheduled", None)
    (entry,) = _entries(later_db)
    assert (entry.what, entry.ref, entry.account_id, entry.step) == (
        "message",
        str(poisoned.id),
        "A-D2",
        "dispatch",
    )
    assert "quarantined" not in dispatch_outbox(as_of="2026-12-01T16:10:00Z")
