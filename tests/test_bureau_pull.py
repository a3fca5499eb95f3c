"""Bureau pulls in the cycle: one per account entering negotiation (its ability), a skip trace for
the unreachable (new numbers), bankruptcy or death reported by the bureau placing a hold."""

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from arrears.models import AccountHold, BureauRecord
from tests.later_stage_helpers import (
    account,
    account_t,
    at,
    contact_t,
    events,
    import_rows,
    us_account,
)

bureau_t = BureauRecord.__table__  # type: ignore[attr-defined]
hold_t = AccountHold.__table__  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def _bureau_process() -> Iterator[Any]:
    from integrations.bureau.sandbox import start_bureau_sandbox

    with start_bureau_sandbox() as handle:
        yield handle


@pytest.fixture
def later_db(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, _bureau_process: Any) -> Engine:
    from arrears.settings import get_settings

    _bureau_process.reset()
    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    monkeypatch.setenv("ARREARS_BUREAU_PROVIDER", "sandbox")
    monkeypatch.setenv("ARREARS_BUREAU_BASE_URL", _bureau_process.base_url)
    monkeypatch.setenv("ARREARS_BUREAU_CREDENTIALS", json.dumps(dict(_bureau_process.credentials)))
    get_settings.cache_clear()
    return engine


def _stage(engine: Engine, account_id: str, stage: str, **values: Any) -> None:
    with engine.begin() as c:
        c.execute(
            update(account_t)
            .where(account_t.c.account_id == account_id)
            .values(stage=stage, episode=2, **values)
        )


def _pulls(engine: Engine, account_id: str) -> list[Any]:
    with engine.connect() as c:
        return list(
            c.execute(select(bureau_t).where(bureau_t.c.account_id == account_id, bureau_t.c.kind == "pull"))
        )


def _ours(engine: Engine) -> str:
    """How this database's pull keys begin: with its installation id."""
    from arrears.storage.installation import stored_installation_id

    with engine.connect() as c:
        return f"{stored_installation_id(c)}-"


def _pull(as_of: str, cycle_id: int | None = None, limit: int = 1_000) -> dict[str, int]:
    from prefect.logging import disable_run_logger

    from tasks.bureau_pull import pull_bureau_profiles

    with disable_run_logger():
        return pull_bureau_profiles.fn(at(as_of), cycle_id, limit=limit)


def test_entering_negotiation_pulls_once_with_its_purpose_and_sets_ability(
    later_db: Engine, tmp_path: Path
) -> None:
    """An account in negotiation is pulled once an episode, for FCRA 604(a)(3)(A); its ability comes
    from the profile, and the numbers the profile lists are not collected (that is a skip trace's job)."""
    import_rows(
        later_db,
        tmp_path,
        [us_account("A-B1", phone="(515) 281-1000"), us_account("A-B2", phone="(515) 281-1001")],
    )
    _stage(later_db, "A-B1", "negotiation")
    _stage(later_db, "A-B2", "cured", past_due_amount=Decimal(0))
    assert _pull("2026-12-16T01:00:00Z")["bureau_pulls"] == 1
    assert _pull("2026-12-17T01:00:00Z")["bureau_pulls"] == 0
    [record] = _pulls(later_db, "A-B1")
    assert (record.purpose, record.score_band, record.payload["idempotency_key"]) == (
        "604(a)(3)(A)",
        "B",
        f"{_ours(later_db)}pull-A-B1-2",
    )
    assert account(later_db, "A-B1").ability == pytest.approx(0.9)
    assert _pulls(later_db, "A-B2") == []  # not in collection: no permissible purpose
    assert events(later_db, "A-B1", "bureau")[0].detail.startswith("bureau pull (604(a)(3)(A)): band B")
    with later_db.connect() as c:
        assert c.execute(select(contact_t).where(contact_t.c.source == "bureau")).all() == []


def test_many_pulls_run_in_a_process_of_their_own_and_store_the_same(
    later_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From OWN_PROCESS_FROM pulls on, the pulls run in a spawned process (their threads off the
    cycle's GIL) and are stored as here: one record per pull under its key, the ability set, the
    event written, nothing pulled twice."""
    import os

    from tasks import bureau_pull, workers

    import_rows(
        later_db,
        tmp_path,
        [us_account("A-P1", phone="(515) 281-1010"), us_account("A-P2", phone="(515) 281-1011")],
    )
    _stage(later_db, "A-P1", "negotiation")
    _stage(later_db, "A-P2", "negotiation")
    pids: list[int] = []

    def spied(function: Any, *args: Any) -> Any:
        pids.append(os.getpid())
        return workers.in_own_process(function, *args)

    monkeypatch.setattr(bureau_pull, "OWN_PROCESS_FROM", 2)
    monkeypatch.setattr(bureau_pull, "in_own_process", spied)
    counts = _pull("2026-12-16T01:00:00Z")
    assert pids == [os.getpid()]
    assert (counts["bureau_pulls"], counts["bureau_failed"]) == (2, 0)
    for account_id in ("A-P1", "A-P2"):
        [record] = _pulls(later_db, account_id)
        assert record.payload["idempotency_key"] == f"{_ours(later_db)}pull-{account_id}-2"
        assert account(later_db, account_id).ability is not None
        [event] = events(later_db, account_id, "bureau")
        assert event.detail.startswith(f"bureau pull (604(a)(3)(A)): band {record.score_band}")
    assert _pull("2026-12-17T01:00:00Z")["bureau_pulls"] == 0


def test_a_cycle_rerun_after_a_crash_pulls_only_what_is_left_of_its_days_pulls(
    later_db: Engine, tmp_path: Path
) -> None:
    """The pulls a cycle may make are a business day's: killed after its pulls and rerun, at the same
    instant or later that day, the cycle does not make a second day's worth of inquiries (each one
    billed, and seen by other lenders). The next day has its own."""
    from datetime import date

    from arrears.storage import cycle_runs

    ids = [f"A-D{n}" for n in range(1, 7)]
    import_rows(later_db, tmp_path, [us_account(a) for a in ids])
    for account_id in ids:
        _stage(later_db, account_id, "negotiation")

    def cycle(as_of: str, day: date) -> int:
        with later_db.begin() as c:
            cycle_runs.close_crashed_cycles(c, now=at(as_of))  # the killed run's row, as the rerun does
            return cycle_runs.start_cycle(c, as_of=at(as_of), business_date=day)

    killed = cycle("2026-12-16T01:00:00Z", date(2026, 12, 16))
    assert _pull("2026-12-16T01:00:00Z", killed, limit=4)["bureau_pulls"] == 4
    rerun = cycle("2026-12-16T01:00:00Z", date(2026, 12, 16))
    assert _pull("2026-12-16T01:00:00Z", rerun, limit=4)["bureau_pulls"] == 0
    with later_db.begin() as c:
        cycle_runs.finish_cycle(c, cycle_id=rerun, finished_at=at("2026-12-16T02:00:00Z"), stats={})
    later = cycle("2026-12-16T06:00:00Z", date(2026, 12, 16))
    assert _pull("2026-12-16T06:00:00Z", later, limit=5)["bureau_pulls"] == 1  # five a day: one left
    with later_db.begin() as c:
        cycle_runs.finish_cycle(c, cycle_id=later, finished_at=at("2026-12-16T07:00:00Z"), stats={})
    tomorrow = cycle("2026-12-17T01:00:00Z", date(2026, 12, 17))
    assert _pull("2026-12-17T01:00:00Z", tomorrow, limit=4)["bureau_pulls"] == 1  # the last one due
    assert sum(len(_pulls(later_db, a)) for a in ids) == 6


def test_unreachable_account_is_skip_traced_and_gets_unverified_numbers(
    later_db: Engine, tmp_path: Path
) -> None:
    """An account with no working number is skip-traced; mobile numbers found with enough
    confidence are added as unverified, non-primary bureau contact points."""
    import_rows(later_db, tmp_path, [us_account("A-B3", phone="(515) 281-1006")])
    _stage(later_db, "A-B3", "reminder", segment="unreachable")
    with later_db.begin() as c:
        c.execute(update(contact_t).where(contact_t.c.address == "+15152811006").values(valid=False))
    counts = _pull("2026-12-02T01:00:00Z")
    assert (counts["skip_traces"], counts["numbers_found"]) == (1, 3)
    with later_db.connect() as c:
        found = c.execute(select(contact_t).where(contact_t.c.source == "bureau")).all()
    assert sorted((f.verified, f.is_primary, f.valid) for f in found) == [(False, False, True)] * 3
    assert _pulls(later_db, "A-B3")[0].payload["idempotency_key"] == f"{_ours(later_db)}skip-A-B3-2"


def test_no_pull_and_no_skip_trace_while_a_hold_stops_collection(later_db: Engine, tmp_path: Path) -> None:
    """A hold stops all collection (DESIGN §2): no bureau inquiry for collection is made under a
    dispute, and no skip trace looks for numbers to reach a borrower who asked for no contact;
    once the dispute is lifted the account is pulled."""
    import_rows(
        later_db,
        tmp_path,
        [
            us_account("A-B9", phone="(515) 281-1000", flags="dispute"),
            us_account("A-B10", phone="(515) 281-1006", flags="cease_contact"),
        ],
    )
    _stage(later_db, "A-B9", "negotiation")
    _stage(later_db, "A-B10", "reminder", segment="unreachable")
    with later_db.begin() as c:
        c.execute(update(contact_t).where(contact_t.c.address == "+15152811006").values(valid=False))
    counts = _pull("2026-12-16T01:00:00Z")
    assert (counts["bureau_pulls"], counts["skip_traces"]) == (0, 0)
    assert _pulls(later_db, "A-B9") == _pulls(later_db, "A-B10") == []
    with later_db.begin() as c:
        c.execute(
            update(hold_t).where(hold_t.c.account_id == "A-B9").values(lifted_at=at("2026-12-16T02:00:00Z"))
        )
    assert _pull("2026-12-17T01:00:00Z")["bureau_pulls"] == 1


def test_two_databases_pulling_through_one_bureau_account_each_get_their_own_report(
    later_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pull's key carries the installation id (DESIGN §3): another database's A-B11 (another
    lender's borrower) is pulled for itself, not refused as a reused key pull after pull; a pull
    recorded under the key of before is not made again."""
    from arrears.settings import get_settings
    from arrears.storage import get_engine, migrate

    import_rows(later_db, tmp_path, [us_account("A-B11", phone="(515) 281-1000")])
    _stage(later_db, "A-B11", "negotiation")
    assert _pull("2026-12-16T01:00:00Z")["bureau_pulls"] == 1
    assert _pulls(later_db, "A-B11")[0].idempotency_key == f"{_ours(later_db)}pull-A-B11-2"
    other = f"sqlite:///{tmp_path / 'other.db'}"
    migrate(get_engine(other))
    monkeypatch.setenv("ARREARS_DATABASE_URL", other)
    get_settings.cache_clear()
    import_rows(
        get_engine(other), tmp_path, [us_account("A-B11", phone="(515) 281-1001", borrower_name="Lee Chen")]
    )
    _stage(get_engine(other), "A-B11", "negotiation")
    assert _pull("2026-12-16T01:00:00Z")["bureau_pulls"] == 1
    with get_engine(other).begin() as c:  # a pull recorded before keys carried the installation id
        c.execute(update(bureau_t).values(idempotency_key="pull-A-B11-2"))
    assert _pull("2026-12-17T01:00:00Z")["bureau_pulls"] == 0


def test_a_skip_traced_number_is_loaded_as_unconfirmed(later_db: Engine, tmp_path: Path) -> None:
    """The cycle reads a number skip tracing found as unconfirmed (it may be a third party's), so the
    rules never tell it of the debt; the borrower's own number is confirmed."""
    from datetime import date

    from arrears.storage.cycle import load_shard

    import_rows(later_db, tmp_path, [us_account("A-B7", phone="(515) 281-1006"), us_account("A-B8")])
    _stage(later_db, "A-B7", "reminder", segment="unreachable")
    with later_db.begin() as c:
        c.execute(update(contact_t).where(contact_t.c.address == "+15152811006").values(valid=False))
    _pull("2026-12-02T01:00:00Z")
    with later_db.connect() as c:
        rows = load_shard(
            c, lo="A-B7", hi=None, business_date=date(2026, 12, 2), lender="L", lender_timezone="UTC"
        )
    [traced, own] = [(r.facts.address is not None, r.facts.address_verified) for r in rows]
    assert (traced, own) == ((True, False), (True, True))


def test_an_agent_confirms_a_skip_traced_number_and_the_cycle_then_texts_it(
    later_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """`arrears contact confirm`: once a person has the borrower's word that a number skip tracing
    found is theirs, the cycle reads it as confirmed (the rules may tell it of the debt), with who
    and why in the audit trail; a number that is not the borrower's is refused without showing it."""
    from datetime import date

    from typer.testing import CliRunner

    from arrears.storage.cycle import load_shard
    from deployments.cli import app

    import_rows(later_db, tmp_path, [us_account("A-B9", phone="(515) 281-1009")])
    _stage(later_db, "A-B9", "reminder", segment="unreachable")
    with later_db.begin() as c:
        c.execute(update(contact_t).where(contact_t.c.address == "+15152811009").values(valid=False))
    _pull("2026-12-02T01:00:00Z")
    with later_db.connect() as c:
        traced = (
            c.execute(
                select(contact_t.c.address).where(
                    contact_t.c.borrower_id == "B-A-B9", contact_t.c.verified.is_(False)
                )
            )
            .scalars()
            .first()
        )
    assert traced is not None

    def confirm(number: str) -> Any:
        args = ["contact", "confirm", "A-B9", number, "--reason", "borrower on the phone", "--agent", "kim"]
        return CliRunner().invoke(app, [*args, "--as-of", "2026-12-02T15:00:00Z", "--database", db_url])

    def loaded() -> tuple[str | None, bool]:
        with later_db.connect() as c:
            [row] = load_shard(
                c, lo="A-B9", hi="A-B9~", business_date=date(2026, 12, 3), lender="L", lender_timezone="UTC"
            )
        return row.facts.address, row.facts.address_verified

    assert loaded() == (traced, False)
    stranger = confirm("+1 515 281 7777")
    assert stranger.exit_code == 1 and "is not one of the borrower's numbers" in str(stranger.exception)
    assert "2817777" not in str(stranger.exception)  # masked
    done = confirm(traced)
    assert done.exit_code == 0, (done.output, done.exception)
    assert "confirmed the borrower's" in done.output and traced not in done.output
    assert loaded() == (traced, True)
    [confirmed] = [e for e in events(later_db, "A-B9", "contact") if e.data.get("action") == "confirmed"]
    assert confirmed.actor == "kim" and confirmed.detail.endswith("by kim: borrower on the phone")
    again = confirm(traced)
    assert again.exit_code == 0 and "confirmed already" in again.output


def test_bankruptcy_reported_by_the_bureau_places_a_hold(later_db: Engine, tmp_path: Path) -> None:
    """A bankruptcy (or death) in the profile places the matching hold, once, with the report as
    its reason: the same answer again is a duplicate, and a later pull of the account (its skip
    trace) that reports the bankruptcy again finds the hold active and places none."""
    from dataclasses import replace

    from arrears.storage.bureau_pulls import Pulled, pull_subjects, record_pulls

    import_rows(later_db, tmp_path, [us_account("A-B4")])
    _stage(later_db, "A-B4", "negotiation")
    answers = []
    with later_db.begin() as c:
        [subject] = [s for s in pull_subjects(c) if s.account_id == "A-B4"]
        trace = replace(subject, reason="skip_trace")
        for asked, report in ((subject, "R-1"), (subject, "R-1"), (trace, "R-2")):
            answers += record_pulls(
                c,
                [
                    Pulled(
                        asked,
                        purpose="604(a)(3)(A)",
                        report_id=report,
                        score_band="C",
                        income_estimate=None,
                        phones=[],
                        bankruptcy_chapter=13,
                        bankrupt=True,
                        deceased=False,
                    )
                ],
                at=at("2026-12-16T01:00:00Z"),
            )
    assert [a["holds"] for a in answers] == [["bankruptcy"], [], []]
    assert [a.get("duplicate", False) for a in answers] == [False, True, False]
    with later_db.connect() as c:
        holds = c.execute(
            select(hold_t).where(hold_t.c.account_id == "A-B4", hold_t.c.lifted_at.is_(None))
        ).all()
    assert [(h.kind, h.source, h.reason) for h in holds] == [
        ("bankruptcy", "bureau", "bureau report R-1: chapter 13")
    ]


def test_a_bankruptcy_or_death_the_bureau_reports_holds_every_open_loan_of_the_borrower(
    later_db: Engine, tmp_path: Path
) -> None:
    """A bankruptcy is the consumer's, not one loan's (the automatic stay stays every debt, 11 U.S.C.
    362), and a death ends them all: reported on one account's pull, the hold goes on each open
    account of the borrower, each with its audit event, and none on a loan already paid off."""
    from arrears.storage.bureau_pulls import Pulled, pull_subjects, record_pulls

    loans = [us_account(a, borrower_id="B-TWO", phone="(515) 281-0042") for a in ("A-T1", "A-T2", "A-T3")]
    import_rows(later_db, tmp_path, loans)
    _stage(later_db, "A-T1", "negotiation")
    _stage(later_db, "A-T3", "paid_off")
    with later_db.begin() as c:
        [subject] = [s for s in pull_subjects(c) if s.account_id == "A-T1"]
        pulled = Pulled(subject, "604(a)(3)(A)", "R-9", "C", None, [], 7, True, True)
        [answer] = record_pulls(c, [pulled], at=at("2026-12-16T01:00:00Z"))
    assert sorted(answer["holds"]) == ["bankruptcy", "deceased"]
    with later_db.connect() as c:
        held = c.execute(select(hold_t.c.account_id, hold_t.c.kind).where(hold_t.c.lifted_at.is_(None))).all()
    assert sorted(held) == [(a, k) for a in ("A-T1", "A-T2") for k in ("bankruptcy", "deceased")]
    [told] = [e for e in events(later_db, "A-T2", "hold") if e.data["hold"] == "bankruptcy"]
    assert told.detail == "bankruptcy hold placed: bureau report R-9 on account A-T1's borrower"


def test_a_number_skip_tracing_finds_that_opted_out_under_another_borrower_stays_opted_out(
    later_db: Engine, tmp_path: Path
) -> None:
    """An opt-out is the number's: a skip trace that finds, for one borrower, a number that texted
    STOP while no borrower held it stores it opted out, so no confirmation by an agent makes it
    texted again. One that texted STOP as another borrower's is that borrower's: not added at all."""
    from dataclasses import replace

    from arrears.storage.bureau_pulls import Pulled, pull_subjects, record_pulls
    from arrears.storage.inbound import Inbound, record_opt_out

    import_rows(later_db, tmp_path, [us_account("A-B5", phone="(515) 281-1005"), us_account("A-B6")])
    _stage(later_db, "A-B6", "negotiation")
    stop = at("2026-12-10T15:00:00Z")
    with later_db.begin() as c:
        record_opt_out(
            c,
            inbound=Inbound(
                address="+15152811005",
                text="STOP",
                at=stop,
                provider="sandbox",
                callback_id="cb-5",
                keyword="STOP",
            ),
        )
        unheld = Inbound(
            address="+15152811077",
            text="Stop",
            at=stop,
            provider="sandbox",
            callback_id="cb-7",
            keyword="STOP",
        )
        record_opt_out(c, inbound=unheld)
        [subject] = [s for s in pull_subjects(c) if s.account_id == "A-B6"]
        record_pulls(
            c,
            [
                Pulled(
                    replace(subject, reason="skip_trace"),
                    purpose="604(a)(3)(A)",
                    report_id="R-6",
                    score_band="C",
                    income_estimate=None,
                    phones=[
                        ("+15152811005", 0.9, "mobile"),
                        ("+15152811066", 0.9, "mobile"),
                        ("+15152811077", 0.9, "mobile"),
                    ],
                    bankruptcy_chapter=None,
                    bankrupt=False,
                    deceased=False,
                )
            ],
            at=at("2026-12-16T01:00:00Z"),
        )
    with later_db.connect() as c:
        found = c.execute(
            select(contact_t.c.address, contact_t.c.opted_out_at).where(
                contact_t.c.borrower_id == "B-A-B6", contact_t.c.verified.is_(False)
            )
        ).all()
    assert sorted(found) == [("+15152811066", None), ("+15152811077", stop)]


def test_subjects_are_read_a_chunk_at_a_time_until_the_limit_is_found(
    later_db: Engine, tmp_path: Path
) -> None:
    """The subjects asked for are the first `limit` due in account order, whatever the chunk size,
    and reading stops at the chunk that completes them: after a first cycle half a portfolio is in
    negotiation, and a thousand pulls must not hold every candidate."""
    from sqlalchemy import event

    from arrears.storage.bureau_pulls import Pulled, pull_subjects, record_pulls

    ids = [f"A-L{n:02d}" for n in range(1, 13)]
    import_rows(later_db, tmp_path, [us_account(a) for a in ids])
    for account_id in ids:
        _stage(later_db, account_id, "negotiation")
    with later_db.begin() as c:
        for subject in pull_subjects(c, limit=100):
            if subject.account_id in ("A-L02", "A-L05"):  # pulled this episode already
                record_pulls(
                    c,
                    [
                        Pulled(
                            subject,
                            purpose="604(a)(3)(A)",
                            report_id=f"R-{subject.account_id}",
                            score_band="B",
                            income_estimate=None,
                            phones=[],
                            bankruptcy_chapter=None,
                            bankrupt=False,
                            deceased=False,
                        )
                    ],
                    at=at("2026-12-16T01:00:00Z"),
                )
    reads: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM bureau_record" in statement:
            reads.append(statement)

    due = [a for a in ids if a not in ("A-L02", "A-L05")]
    event.listen(later_db, "before_cursor_execute", seen)
    try:
        with later_db.connect() as c:
            every = pull_subjects(c, limit=100, chunk=3)
            assert len(reads) == 4  # twelve candidates, three a chunk
            reads.clear()
            first = pull_subjects(c, limit=4, chunk=3)
            assert len(reads) == 2  # A-L01..A-L06 hold the first four due
            assert pull_subjects(c, limit=4, chunk=1_000) == first
    finally:
        event.remove(later_db, "before_cursor_execute", seen)
    assert [s.account_id for s in every] == due
    assert first == every[:4]
    assert {s.phone for s in every} == {f"+1515281{us_account(a)['phone'][-4:]}" for a in due}
    assert {s.key for s in every} == {f"{_ours(later_db)}pull-{a}-2" for a in due}


def test_a_block_of_pulls_stores_what_storing_them_one_by_one_does(later_db: Engine, tmp_path: Path) -> None:
    """The cycle stores a block of answers in a few statements (`record_pulls`): what it leaves is
    what storing them one after the other leaves, a later pull of the block seeing what an earlier
    one stored: an account pulled twice (its second ability reads the first), one pull twice (the
    second a duplicate), two skip traces of one borrower finding the same number (added once),
    a bankruptcy and a death reported for accounts of one block."""
    from arrears.storage.bureau_pulls import Pulled, PullSubject, record_pulls
    from arrears.storage.tables import audit

    import_rows(
        later_db,
        tmp_path,
        [
            us_account("A-Q1", borrower_id="B-Q1"),
            us_account("A-Q2", borrower_id="B-Q", phone="(515) 281-7777"),
            us_account("A-Q3", borrower_id="B-Q", phone="(515) 281-7777"),
        ],
    )

    def pulled(account_id: str, borrower_id: str, reason: str, report: str, **found: Any) -> Pulled:
        subject = PullSubject(
            account_id, borrower_id, 2, reason, "Dana", None, "USD", Decimal("18450"), Decimal("412.50"), None
        )
        what = {"income_estimate": None, "phones": [], "bankruptcy_chapter": None, "bankrupt": False}
        return Pulled(
            subject, "604(a)(3)(A)", report, **(what | {"score_band": "C", "deceased": False} | found)
        )

    ability = pulled("A-Q1", "B-Q1", "ability", "R-1", score_band="B", income_estimate=Decimal("60000"))
    block = [
        ability,
        pulled("A-Q1", "B-Q1", "skip_trace", "R-2", phones=[("+15152810001", 0.9, "mobile")], bankrupt=True),
        ability,
        pulled(
            "A-Q2",
            "B-Q",
            "skip_trace",
            "R-3",
            phones=[("+15152810002", 0.8, "mobile"), ("+15152810003", 0.2, "mobile")],
            bankruptcy_chapter=7,
            bankrupt=True,
        ),
        pulled(
            "A-Q3",
            "B-Q",
            "skip_trace",
            "R-4",
            phones=[("+15152810002", 0.8, "unknown"), ("+15152810004", 0.9, "landline")],
            deceased=True,
        ),
    ]
    when = at("2026-12-16T01:00:00Z")

    def stored(c: Any) -> dict[str, Any]:
        def table(t: Any) -> list[dict[str, Any]]:  # every row but its id and update time, in order
            rows = c.execute(select(t).order_by(*t.primary_key.columns)).mappings().all()
            return [{k: v for k, v in r.items() if k not in ("id", "updated_at")} for r in rows]

        return {
            "bureau": table(bureau_t),
            "contacts": [r for r in table(contact_t) if r["source"] == "bureau"],
            "holds": table(hold_t),
            "accounts": table(account_t),
            "events": [r for r in table(audit) if r["kind"] in ("bureau", "hold")],
        }

    with later_db.connect() as c:
        with c.begin() as one_by_one:
            answers = [record_pulls(c, [p], at=when)[0] for p in block]
            expected = stored(c)
            one_by_one.rollback()
        with c.begin() as together:
            assert record_pulls(c, block, at=when) == answers
            assert stored(c) == expected
            together.rollback()
    assert [a.get("duplicate", False) for a in answers] == [False, False, True, False, False]
    assert [a["numbers_found"] for a in answers] == [0, 1, 0, 1, 0]
    assert [a["holds"] for a in answers] == [[], ["bankruptcy"], [], ["bankruptcy"], ["deceased"]]
    first = answers[0]["ability"]
    assert f"ability {first:.2f} → " in expected["events"][1]["detail"]  # the skip trace's reads it


def _trace(account_id: str, borrower_id: str, *phones: tuple[str, float, str]) -> Any:
    """A skip trace's answer for the account, finding `phones` (number, confidence, line type)."""
    from arrears.storage.bureau_pulls import Pulled, PullSubject

    subject = PullSubject(
        account_id,
        borrower_id,
        2,
        "skip_trace",
        "Dana",
        None,
        "USD",
        Decimal("18450"),
        Decimal("412.50"),
        None,
    )
    return Pulled(subject, "604(a)(3)(A)", f"R-{account_id}", "C", None, phones, None, False, False)


def test_a_number_skip_tracing_finds_that_another_borrower_holds_is_not_added(
    later_db: Engine, tmp_path: Path
) -> None:
    """A number the bureau links to the traced borrower that another borrower holds is a third
    party's to this one: it is not added (the trace's event says so), so that borrower's texts from
    it (a dispute here) are theirs alone and place no hold on the traced borrower's account."""
    from arrears.storage.bureau_pulls import record_pulls
    from tasks.inbound import record_inbound_sms

    import_rows(
        later_db,
        tmp_path,
        [us_account("A-T1", phone="(515) 281-1006"), us_account("A-T2", phone="(515) 281-2222")],
    )
    with later_db.begin() as c:
        [answer] = record_pulls(
            c,
            [_trace("A-T1", "B-A-T1", ("+15152812222", 0.9, "mobile"), ("+15152813333", 0.9, "mobile"))],
            at=at("2026-12-16T01:00:00Z"),
        )
    assert answer["numbers_found"] == 1
    with later_db.connect() as c:
        held = c.execute(
            select(contact_t.c.address).where(contact_t.c.borrower_id == "B-A-T1").order_by(contact_t.c.id)
        ).scalars()
        assert list(held) == ["+15152811006", "+15152813333"]
    [traced] = events(later_db, "A-T1", "bureau")
    assert traced.detail.endswith("; 1 new number found (unverified); not added: 1 held by another borrower")
    record_inbound_sms(
        later_db,
        address="+15152812222",
        text="I dispute this, not my loan",
        at=at("2026-12-16T15:00:00Z"),
        provider="sandbox",
        callback_id="cb-dispute",
    )
    with later_db.connect() as c:
        holds = c.execute(
            select(hold_t.c.account_id, hold_t.c.kind).where(hold_t.c.lifted_at.is_(None))
        ).all()
    assert holds == [("A-T2", "dispute")]


def test_what_a_skip_trace_finds_that_is_no_phone_number_is_not_added(
    later_db: Engine, tmp_path: Path
) -> None:
    """The bureau's numbers are stored in E.164 as the borrowers' are (one written with spaces is
    the same number as the one a reply comes from); what is no valid number (a vendor's garbage,
    too few digits, an extension) is not added, and the trace's event counts it."""
    from arrears.storage.bureau_pulls import record_pulls

    import_rows(later_db, tmp_path, [us_account("A-T3", phone="(515) 281-1006")])
    with later_db.begin() as c:
        [answer] = record_pulls(
            c,
            [
                _trace(
                    "A-T3",
                    "B-A-T3",
                    ("+1 515 281 4444", 0.9, "mobile"),
                    ("n/a", 0.9, "mobile"),
                    ("+1555", 0.9, "unknown"),
                    ("+1 515 281 5555 ext. 12", 0.9, "mobile"),
                    ("+15152811006", 0.9, "mobile"),  # the borrower's own, written as stored
                )
            ],
            at=at("2026-12-16T01:00:00Z"),
        )
    assert answer["numbers_found"] == 1
    with later_db.connect() as c:
        found = c.execute(select(contact_t.c.address).where(contact_t.c.source == "bureau")).scalars()
        assert list(found) == ["+15152814444"]
    [traced] = events(later_db, "A-T3", "bureau")
    assert traced.detail.endswith("not added: 3 not a valid phone number")


def test_a_bureau_that_keeps_failing_is_not_asked_for_the_rest_of_the_cycle(
    later_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _bureau_process: Any
) -> None:
    """Once GIVE_UP_AFTER pulls in a row have failed (each after its retries), the bureau is taken
    for down: the other pulls are not made, each spending its retries on it, but counted as
    waiting, and the next cycle, the bureau back, pulls every one of them."""
    from arrears.settings import get_settings
    from tasks import bureau_pull

    ids = [f"A-W{n:02d}" for n in range(12)]
    import_rows(later_db, tmp_path, [us_account(a) for a in ids])
    for account_id in ids:
        _stage(later_db, account_id, "negotiation")
    monkeypatch.setattr(bureau_pull, "GIVE_UP_AFTER", 3, raising=False)
    monkeypatch.setenv("ARREARS_BUREAU_CONCURRENCY", "1")  # one at a time: the count is exact
    get_settings.cache_clear()
    _bureau_process.set_faults(http_503=1_000, retry_after=0)
    counts = _pull("2026-12-16T01:00:00Z")
    assert _bureau_process.stats()["counters"]["requests.pull"] == 3 * 4  # three pulls, four attempts each
    assert (counts["bureau_failed"], counts.get("bureau_waiting"), counts["bureau_pulls"]) == (3, 9, 0)
    _bureau_process.set_faults()
    counts = _pull("2026-12-17T01:00:00Z")
    assert (counts["bureau_pulls"], counts["bureau_failed"], counts["bureau_waiting"]) == (12, 0, 0)


def test_a_bureau_refusing_our_credentials_leaves_the_pulls_waiting_and_fails_nothing(
    later_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _bureau_process: Any
) -> None:
    """Wrong credentials (a rotated API key): every pull would be refused alike. They wait for the
    next cycle, counted, and the step returns; it raised, and failed the cycle after its dispatch.
    Once the key is right the next cycle pulls every one of them."""
    from arrears.settings import get_settings

    ids = [f"A-K{n}" for n in range(3)]
    import_rows(later_db, tmp_path, [us_account(a) for a in ids])
    for account_id in ids:
        _stage(later_db, account_id, "negotiation")
    wrong = dict(_bureau_process.credentials) | {"api_key": "rotated-away"}
    monkeypatch.setenv("ARREARS_BUREAU_CREDENTIALS", json.dumps(wrong))
    get_settings.cache_clear()
    counts = _pull("2026-12-16T01:00:00Z")
    assert (counts["bureau_pulls"], counts["bureau_waiting"]) == (0, 3)
    monkeypatch.setenv("ARREARS_BUREAU_CREDENTIALS", json.dumps(dict(_bureau_process.credentials)))
    get_settings.cache_clear()
    assert _pull("2026-12-17T01:00:00Z")["bureau_pulls"] == 3


def test_failures_apart_do_not_stop_the_pulls(
    later_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _bureau_process: Any
) -> None:
    """A bureau that answers between its failures is up: a failed pull is left for the next cycle,
    and every other pull is made."""
    from arrears.settings import get_settings
    from tasks import bureau_pull

    ids = [f"A-X{n:02d}" for n in range(6)]
    import_rows(later_db, tmp_path, [us_account(a) for a in ids])
    for account_id in ids:
        _stage(later_db, account_id, "negotiation")
    monkeypatch.setattr(bureau_pull, "GIVE_UP_AFTER", 2)
    monkeypatch.setenv("ARREARS_BUREAU_CONCURRENCY", "1")
    get_settings.cache_clear()
    _bureau_process.set_faults(http_503=4, retry_after=0)  # the first pull's four attempts
    counts = _pull("2026-12-16T01:00:00Z")
    assert (counts["bureau_failed"], counts["bureau_waiting"], counts["bureau_pulls"]) == (1, 0, 5)


def test_skip_traces_come_before_ability_pulls_in_the_days_budget(later_db: Engine, tmp_path: Path) -> None:
    """An unreachable account gets no message at all: its skip trace is made before the ability
    pulls of the day, whatever the account ids (after a first cycle half a portfolio waits for an
    ability pull, and traces taken among them in account order waited weeks); the pulls beyond
    the day's budget are made the next day."""
    import_rows(later_db, tmp_path, [us_account(a) for a in ("A-S1", "A-S2", "A-S3")])
    _stage(later_db, "A-S1", "negotiation")
    _stage(later_db, "A-S2", "negotiation")
    _stage(later_db, "A-S3", "reminder", segment="unreachable")
    counts = _pull("2026-12-16T01:00:00Z", limit=1)
    assert (counts["skip_traces"], counts["bureau_pulls"]) == (1, 0)
    assert [len(_pulls(later_db, a)) for a in ("A-S1", "A-S2", "A-S3")] == [0, 0, 1]
    counts = _pull("2026-12-17T01:00:00Z", limit=2)
    assert (counts["skip_traces"], counts["bureau_pulls"]) == (0, 2)


def test_a_borrower_with_two_unreachable_loans_is_skip_traced_once(later_db: Engine, tmp_path: Path) -> None:
    """A skip trace looks for the person: of a borrower's two unreachable accounts one is traced,
    not both that day and not the other the next day (each trace an inquiry, billed, finding the
    same numbers); an account that enters a new stage after the trace is traced again."""
    import_rows(
        later_db,
        tmp_path,
        [
            us_account("A-R1", borrower_id="B-R", phone="(515) 281-1006"),
            us_account("A-R2", borrower_id="B-R", phone="(515) 281-1006"),
        ],
    )
    _stage(later_db, "A-R1", "reminder", segment="unreachable", stage_since=at("2026-12-01T01:00:00Z"))
    _stage(later_db, "A-R2", "reminder", segment="unreachable", stage_since=at("2026-12-01T01:00:00Z"))
    assert _pull("2026-12-02T01:00:00Z")["skip_traces"] == 1
    assert _pull("2026-12-03T01:00:00Z")["skip_traces"] == 0
    assert [len(_pulls(later_db, a)) for a in ("A-R1", "A-R2")] == [1, 0]
    with later_db.begin() as c:
        c.execute(
            update(account_t)
            .where(account_t.c.account_id == "A-R2")
            .values(stage="negotiation", episode=3, stage_since=at("2026-12-16T01:00:00Z"))
        )
    assert _pull("2026-12-16T01:00:00Z")["skip_traces"] == 1
    assert [len(_pulls(later_db, a)) for a in ("A-R1", "A-R2")] == [1, 1]


def test_a_bureau_pull_after_the_borrower_told_of_a_hardship_does_not_make_them_able(
    later_db: Engine, tmp_path: Path
) -> None:
    """A borrower who said in this delinquency that they cannot pay stays unable whatever the
    bureau's band (the pull on entering negotiation came after their reply); one who said so in an
    earlier delinquency is read from the bureau alone."""
    from arrears.policy import DEFAULT_POLICY
    from arrears.storage.promises import state_hardship

    import_rows(
        later_db,
        tmp_path,
        [
            us_account("A-U1", phone="(515) 281-1000", oldest_due_date="2026-11-30", borrower_id="B-U1"),
            us_account("A-U2", phone="(515) 281-1000", oldest_due_date="2026-11-30", borrower_id="B-U2"),
        ],
    )
    _stage(later_db, "A-U1", "negotiation")
    _stage(later_db, "A-U2", "negotiation")
    with later_db.begin() as c:
        for account_id, when in (("A-U1", "2026-12-05T15:00:00Z"), ("A-U2", "2026-10-05T15:00:00Z")):
            state_hardship(
                c,
                account_id=account_id,
                statement="LOST MY JOB",
                at=at(when),
                policy=DEFAULT_POLICY.segmentation,
                data={},
            )
    assert _pull("2026-12-16T01:00:00Z")["bureau_pulls"] == 2
    assert (account(later_db, "A-U1").ability, account(later_db, "A-U2").ability) == (0.4, 0.9)
    [pulled] = events(later_db, "A-U1", "bureau")
    assert pulled.detail.endswith("ability 0.40 → 0.40 (a hardship the borrower stated holds it down)")


def test_confirming_a_number_marked_invalid_says_that_nothing_is_sent_to_it(
    later_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """`arrears contact confirm` of a skip-traced number its holder has since disowned ("wrong
    number") records the agent's word but does not make the number valid: the output says that
    nothing is sent to it and why, rather than that the stage's messages will go to it."""
    from typer.testing import CliRunner

    from deployments.cli import app

    import_rows(later_db, tmp_path, [us_account("A-V1", phone="(515) 281-1009")])
    with later_db.begin() as c:
        c.execute(
            contact_t.insert().values(
                borrower_id="B-A-V1",
                channel="sms",
                address="+15152814444",
                is_primary=False,
                valid=False,
                invalid_reason="wrong_number",
                verified=False,
                source="bureau",
                failures=0,
                created_at=at("2026-12-02T01:00:00Z"),
            )
        )
    args = ["contact", "confirm", "A-V1", "+1 515 281 4444", "--reason", "borrower on the phone"]
    done = CliRunner().invoke(app, [*args, "--as-of", "2026-12-02T15:00:00Z", "--database", db_url])
    assert done.exit_code == 0, (done.output, done.exception)
    said = " ".join(done.output.split())  # as printed, whatever the terminal's width
    assert "confirmed the borrower's; nothing is sent to it: it is marked invalid (wrong number)" in said
    with later_db.connect() as c:
        point = c.execute(select(contact_t).where(contact_t.c.address == "+15152814444")).one()
    assert (point.verified, point.valid) == (True, False)


def test_a_skip_trace_that_finds_no_usable_number_says_so_and_why(later_db: Engine, tmp_path: Path) -> None:
    """A trace whose numbers are all a landline, a VoIP line, a weak match or unreadable in the
    bureau's answer adds none, and the timeline says that no new number was found and what was
    left out: the borrower stays unreachable, which an agent reading only 'skip trace: band A'
    could not tell."""
    from dataclasses import replace

    from arrears.storage.bureau_pulls import record_pulls

    import_rows(later_db, tmp_path, [us_account("A-T4", phone="(515) 281-1006")])
    with later_db.begin() as c:
        [answer] = record_pulls(
            c,
            [
                replace(
                    _trace(
                        "A-T4",
                        "B-A-T4",
                        ("+15152814444", 0.9, "landline"),
                        ("+15152814445", 0.9, "voip"),
                        ("+15152814446", 0.4, "mobile"),
                    ),
                    unreadable_phones=2,
                )
            ],
            at=at("2026-12-16T01:00:00Z"),
        )
    assert answer["numbers_found"] == 0
    [traced] = events(later_db, "A-T4", "bureau")
    assert traced.detail.endswith(
        "; no new number found; not added: 1 VoIP line, 1 landline, 1 match below 50% confidence,"
        " 2 unreadable in the bureau's answer"
    )


def test_the_bureau_is_asked_about_the_borrower_under_their_own_number_not_a_found_one(
    later_db: Engine, tmp_path: Path
) -> None:
    """An account whose own number went dead and whose skip trace found another (unconfirmed,
    perhaps a stranger's) is asked about, on entering negotiation, under the number from its file:
    under the found one, the bureau may match and report on the stranger."""
    from arrears.storage.bureau_pulls import pull_subjects

    import_rows(later_db, tmp_path, [us_account("A-I1", phone="(515) 281-1006")])
    _stage(later_db, "A-I1", "negotiation")
    with later_db.begin() as c:
        c.execute(update(contact_t).where(contact_t.c.address == "+15152811006").values(valid=False))
        c.execute(
            contact_t.insert().values(
                borrower_id="B-A-I1",
                channel="sms",
                address="+15152814444",
                is_primary=False,
                valid=True,
                verified=False,
                source="bureau",
                failures=0,
                created_at=at("2026-12-02T01:00:00Z"),
            )
        )
    with later_db.connect() as c:
        [subject] = pull_subjects(c)
    assert (subject.reason, subject.phone) == ("ability", "+15152811006")


def test_an_agent_adds_the_number_an_unreachable_borrower_gave_and_the_cycle_texts_it(
    later_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """`arrears contact add`: a borrower whose only number is dead calls in with a new one; the
    agent adds it, confirmed (audited as theirs), and the cycle reads it as the number to text.
    Refused, nothing changed, exit 2: no valid number, the borrower's own, another borrower's."""
    from datetime import date

    from typer.testing import CliRunner

    from arrears.storage.cycle import load_shard
    from deployments.cli import app
    from deployments.cli._common import CliError

    import_rows(
        later_db,
        tmp_path,
        [us_account("A-N1", phone="(515) 281-1009"), us_account("A-N2", phone="(515) 281-2222")],
    )
    _stage(later_db, "A-N1", "reminder", segment="unreachable")
    with later_db.begin() as c:
        c.execute(update(contact_t).where(contact_t.c.address == "+15152811009").values(valid=False))

    def add(number: str) -> Any:
        args = ["contact", "add", "A-N1", number, "--reason", "borrower called in", "--agent", "kim"]
        return CliRunner().invoke(app, [*args, "--as-of", "2026-12-02T15:00:00Z", "--database", db_url])

    for refused, said in (
        ("+1 515 281", "not a valid phone number"),
        ("(515) 281-1009", "is the borrower's already: `arrears contact confirm` it"),
        ("+1 515 281 2222", "is another borrower's"),
    ):
        result = add(refused)
        assert isinstance(result.exception, CliError) and result.exception.exit_code == 2, result.output
        assert said in str(result.exception)
    with later_db.connect() as c:
        assert c.execute(select(contact_t).where(contact_t.c.borrower_id == "B-A-N1")).all()[1:] == []
    done = add("(515) 281-4444")
    assert done.exit_code == 0, (done.output, done.exception)
    with later_db.connect() as c:
        [row] = load_shard(
            c, lo="A-N1", hi="A-N1~", business_date=date(2026, 12, 3), lender="L", lender_timezone="UTC"
        )
        added = c.execute(select(contact_t).where(contact_t.c.address == "+15152814444")).one()
    assert (row.facts.reachable, row.facts.address, row.facts.address_verified) == (
        True,
        "+15152814444",
        True,
    )
    assert (added.source, added.verified, added.is_primary) == ("agent", True, False)
    [noted] = [e for e in events(later_db, "A-N1", "contact") if e.data.get("action") == "added"]
    assert noted.actor == "kim" and noted.detail.endswith("by kim: borrower called in")
