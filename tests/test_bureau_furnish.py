"""Monthly furnishing end to end: a stored portfolio becomes a valid Metro 2 file, submitted and recorded."""

import json
import os
import stat
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, select, text, update
from typer.testing import CliRunner

import deployments.cli.bureau  # noqa: F401  registers `arrears bureau` until deployments/cli/__init__ imports it
from arrears.importing import Kind, open_source
from arrears.metro2 import Furnisher, FurnishFile, Period, build_file, validate
from arrears.models import AccountHold, AgencyAssignment, AuditEvent, Borrower, BureauRecord, Plan, Review
from arrears.settings import get_settings
from arrears.simulate import generate_portfolio, write_accounts_file
from arrears.storage import bureau as store
from arrears.storage import get_engine, migrate
from arrears.storage.cycle import refresh_days_past_due
from arrears.storage.importer import run_import
from deployments.cli import app
from deployments.cli._common import CliError
from integrations.bureau.sandbox import start_bureau_sandbox
from integrations.sandbox import SandboxHandle
from tasks.bureau import build_furnish_file
from tests.factories import account_record, write_csv

runner = CliRunner()


def _exit_code(result: Any) -> int:
    """The exit code `arrears` would end with: `main()` turns a CliError into its own code."""
    if isinstance(result.exception, CliError):
        return result.exception.exit_code
    return int(result.exit_code)


BUSINESS_DATE = date(2026, 11, 30)
IMPORTED = datetime(2026, 6, 1, 12, tzinfo=UTC)  # history before this is B, after it reconstructed
records_table = BureauRecord.__table__  # type: ignore[attr-defined]
audit_table = AuditEvent.__table__  # type: ignore[attr-defined]
holds_table = AccountHold.__table__  # type: ignore[attr-defined]


def _portfolio(tmp_path: Path, url: str, n: int = 400) -> Engine:
    """A simulated portfolio imported and refreshed as of 2026-11-30, with stages set as a cycle would
    leave them and a few accounts in every condition that Metro 2 reports differently."""
    accounts = tmp_path / "accounts.csv"
    write_accounts_file(generate_portfolio(n, seed=11, business_date=BUSINESS_DATE), accounts)
    engine = get_engine(url)
    migrate(engine)
    with open_source(accounts, Kind.ACCOUNTS) as source:
        # The file is the servicing system's of 2026-11-30 (an import refuses a due date still to
        # come); the borrowers are then dated as if they had come in June, when history starts.
        assert run_import(engine, source, now=datetime(2026, 11, 30, 12, tzinfo=UTC)).rejected == 0
    with engine.begin() as c:
        c.execute(update(Borrower.__table__).values(created_at=IMPORTED))  # type: ignore[attr-defined]
        refresh_days_past_due(c, business_date=BUSINESS_DATE)
        c.execute(
            text(
                "UPDATE account SET stage = CASE WHEN days_past_due = 0 THEN 'cured' "
                "WHEN days_past_due < 16 THEN 'reminder' WHEN days_past_due < 60 THEN 'negotiation' "
                "ELSE 'repossession_review' END"
            )
        )
        us = [
            r[0]
            for r in c.execute(
                text(
                    "SELECT account_id FROM account WHERE jurisdiction LIKE 'US%' AND days_past_due >= 60 "
                    "ORDER BY account_id"
                )
            )
        ]
        current = [
            r[0]
            for r in c.execute(
                text(
                    "SELECT account_id FROM account WHERE jurisdiction LIKE 'US%' AND days_past_due = 0 "
                    "ORDER BY account_id"
                )
            )
        ]
        c.execute(text("UPDATE account SET stage = 'legal_referral' WHERE account_id = :a"), {"a": us[0]})
        c.execute(text("UPDATE account SET stage = 'charged_off' WHERE account_id = :a"), {"a": us[1]})
        c.execute(text("UPDATE account SET stage = 'settled' WHERE account_id = :a"), {"a": us[2]})
        c.execute(
            text(
                "UPDATE account SET stage = 'paid_off', balance = 0, past_due_amount = 0, "
                "oldest_due_date = NULL, days_past_due = 0 WHERE account_id = :a"
            ),
            {"a": current[0]},
        )
        decided = datetime(2026, 11, 10, 17, tzinfo=UTC)
        for decided_for in (us[3], us[4]):  # both approved; only us[3]'s car was recovered
            c.execute(
                Review.__table__.insert().values(  # type: ignore[attr-defined]
                    account_id=decided_for,
                    opened_at=decided,
                    decision="repossess",
                    reviewer="r.lee",
                    reason="no cure",
                    decided_at=decided,
                )
            )
        c.execute(
            AgencyAssignment.__table__.insert().values(  # type: ignore[attr-defined]
                idempotency_key="test-assignment-1",
                order_id="RO-1",
                account_id=us[3],
                status="recovered",
                recovered_at=datetime(2026, 11, 20, 9, tzinfo=UTC),
            )
        )
        c.execute(
            Plan.__table__.insert().values(  # type: ignore[attr-defined]
                account_id=current[1],
                kind="instalment",
                status="active",
                terms={},
                created_at=decided,
                updated_at=decided,
            )
        )
    return engine


@pytest.fixture
def portfolio(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """The simulated portfolio on each database we support (PostgreSQL when CI provides one)."""
    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    monkeypatch.setenv("ARREARS_LENDER_TIMEZONE", "America/Los_Angeles")
    return _portfolio(tmp_path, db_url)


@pytest.fixture
def sqlite_portfolio(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """The simulated portfolio in SQLite, for the slower end-to-end runs through Prefect."""
    monkeypatch.setenv("ARREARS_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("ARREARS_LENDER_TIMEZONE", "America/Los_Angeles")
    return _portfolio(tmp_path, sqlite_url)


def test_demo_portfolio_file_passes_the_validator(portfolio: Engine) -> None:
    """The file built from a simulated, imported portfolio passes the validator and holds only US accounts."""
    built = build_furnish_file.fn("2026-11", created=date(2026, 12, 1))
    assert validate(built.content) == []
    with portfolio.connect() as c:
        us = c.execute(text("SELECT count(*) FROM account WHERE jurisdiction LIKE 'US%'")).scalar()
        cn = c.execute(text("SELECT count(*) FROM account WHERE jurisdiction NOT LIKE 'US%'")).scalar()
    assert len(built.reported) == us and us and cn
    assert not built.skipped  # CN accounts are never read
    statuses = built.status_counts()
    assert {"11", "13", "93", "96", "97"} <= set(statuses) and any(s in statuses for s in ("71", "78", "80"))
    # 96, merchandise repossessed, once the agency recovered the car: a decision to repossess whose
    # order was never carried out (a payment cancelled it) is not a repossession on a credit file.
    assert statuses["96"] == 1
    histories = {r.payment_history[:6] for r in built.reported}
    assert all(len(r.payment_history) == 24 and r.payment_history.endswith("B" * 18) for r in built.reported)
    assert len(histories) > 3  # June to October reconstructed, not all alike
    assert any(r.compliance_condition == "XB" for r in built.reported)  # the simulator's disputes
    assert any(r.special_comment == "AC" for r in built.reported)


def test_next_month_continues_from_what_was_furnished(portfolio: Engine) -> None:
    """November's history starts with October's furnished character; a reported first delinquency stays
    put; a bankruptcy reported in October and dismissed since is removed with Q in November."""
    with portfolio.begin() as c:
        bankrupt = c.execute(
            text(
                "SELECT min(account_id) FROM account WHERE jurisdiction LIKE 'US%' AND stage = 'negotiation'"
            )
        ).scalar_one()
        c.execute(
            holds_table.insert().values(
                account_id=bankrupt,
                kind="bankruptcy",
                source="agent",
                reason="Chapter 7 petition, case 26-10001",
                placed_at=datetime(2026, 10, 5, tzinfo=UTC),
            )
        )
    october = build_furnish_file.fn("2026-10", created=date(2026, 11, 1))
    assert next(r for r in october.reported if r.account_id == bankrupt).consumer_information == "A"
    with portfolio.begin() as c:
        assert store.record_furnishing(
            c,
            period=Period(2026, 10),
            reported=october.reported,
            submission_id="SUB-OCT",
            idempotency_key="k-oct",
            sha256="0" * 64,
            now=datetime(2026, 11, 1, 12, tzinfo=UTC),
            summary={},
        ) == len(october.reported)
        # the same submission again writes nothing
        assert (
            store.record_furnishing(
                c,
                period=Period(2026, 10),
                reported=october.reported,
                submission_id="SUB-OCT",
                idempotency_key="k-oct",
                sha256="0" * 64,
                now=datetime(2026, 11, 1, 12, tzinfo=UTC),
                summary={},
            )
            == 0
        )
    late = next(
        r
        for r in october.reported
        if r.first_delinquency is not None and r.account_status in ("71", "78", "80")
    )
    with portfolio.begin() as c:  # a partial payment moves the oldest due date later, still
        # 45 days past due on 30 November (a due date of 1 November would be 29 then: current)
        c.execute(
            text("UPDATE account SET oldest_due_date = :d WHERE account_id = :a"),
            {"d": date(2026, 10, 16), "a": late.account_id},
        )
        c.execute(  # the disputes are resolved, the bankruptcy case dismissed
            update(holds_table)
            .where(holds_table.c.kind.in_(("dispute", "bankruptcy")))
            .values(lifted_at=datetime(2026, 11, 5, tzinfo=UTC))
        )
    november = {r.account_id: r for r in build_furnish_file.fn("2026-11", created=date(2026, 12, 1)).reported}
    for r in october.reported:
        if r.account_id in november:
            assert november[r.account_id].payment_history[0] == r.history_char
    assert november[late.account_id].first_delinquency == late.first_delinquency
    assert {
        november[r.account_id].compliance_condition
        for r in october.reported
        if r.compliance_condition == "XB"
    } == {"XH"}
    assert november[bankrupt].consumer_information == "Q"
    paid = [r for r in october.reported if r.account_status == "13"]
    assert paid and all(r.account_id not in november for r in paid)  # reported closed once, then no more


# -- the command line -------------------------------------------------------------------------------


def test_validate_exit_codes(tmp_path: Path, sqlite_portfolio: Engine) -> None:
    """`bureau validate` exits 0 for a valid file, 1 with each problem for an invalid one, 2 for no file."""
    good = tmp_path / "good.m2"
    good.write_bytes(build_furnish_file.fn("2026-11", created=date(2026, 12, 1)).content)
    lines = good.read_bytes().split(b"\n")
    lines[1] = lines[1][:123] + b"7X" + lines[1][125:]
    bad = tmp_path / "bad.m2"
    bad.write_bytes(b"\n".join(lines))

    ok = runner.invoke(app, ["bureau", "validate", str(good)])
    assert ok.exit_code == 0 and "valid" in ok.output
    refused = runner.invoke(app, ["bureau", "validate", str(bad), "--json"])
    assert refused.exit_code == 1
    report = json.loads(refused.stdout)
    assert report["valid"] is False
    assert {"record": 2, "field": "Account Status"} in [
        {k: p[k] for k in ("record", "field")} for p in report["problems"]
    ]
    text_report = runner.invoke(app, ["bureau", "validate", str(bad)])
    assert text_report.exit_code == 1 and "Account Status" in text_report.output
    missing = runner.invoke(app, ["bureau", "validate", str(tmp_path / "none.m2")])
    assert _exit_code(missing) == 2


@pytest.mark.parametrize("period", ["2026-13", "2099-01", "this-month"])
def test_furnish_refuses_a_bad_period(sqlite_url: str, period: str) -> None:
    """`bureau furnish --period 2026-13`, a month of 2099 (a typo of the year) or the month not
    over yet is a usage error before anything runs: its file would report the month's end
    before it came."""
    if period == "this-month":
        period = datetime.now(UTC).strftime("%Y-%m")
    result = runner.invoke(app, ["bureau", "furnish", "--period", period, "--database", sqlite_url])
    assert _exit_code(result) == 2 and str(result.exception).startswith("--period")
    if period != "2026-13":
        assert "is not over yet" in str(result.exception)


def test_furnish_refuses_an_output_it_cannot_write_before_anything_runs(
    tmp_path: Path, sqlite_url: str
) -> None:
    """An --output under a file, or at a FIFO, is exit 2 naming it, before the file is built."""
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "text.txt").write_text("x")
    for target in (tmp_path / "pipe", tmp_path / "text.txt" / "sub" / "m2.txt"):
        result = _furnish(sqlite_url, "--output", str(target))
        assert _exit_code(result) == 2 and str(result.exception).startswith(f"--output {target}")


@pytest.fixture(scope="module")
def _bureau_process() -> Iterator[SandboxHandle]:
    with start_bureau_sandbox() as handle:
        yield handle


@pytest.fixture
def bureau(_bureau_process: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> SandboxHandle:
    """A sandbox bureau the test can inspect, and the settings that submit to it."""
    _bureau_process.reset()
    monkeypatch.setenv("ARREARS_BUREAU_BASE_URL", _bureau_process.base_url)
    monkeypatch.setenv("ARREARS_BUREAU_CREDENTIALS", json.dumps(dict(_bureau_process.credentials)))
    get_settings.cache_clear()
    return _bureau_process


def _furnish(sqlite_url: str, *args: str) -> Any:
    return runner.invoke(app, ["bureau", "furnish", "--period", "2026-11", "--database", sqlite_url, *args])


@pytest.mark.usefixtures("prefect_harness")
def test_furnish_end_to_end_with_its_own_sandbox(
    tmp_path: Path, sqlite_portfolio: Engine, sqlite_url: str
) -> None:
    """`bureau furnish` starts a sandbox bureau, submits a valid file, writes --output and records every
    account."""
    output = tmp_path / "out" / "metro2-2026-11.txt"
    result = _furnish(sqlite_url, "--output", str(output), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["furnished"] and summary["submission_id"].startswith("SUB-")
    assert validate(output.read_bytes()) == []
    assert stat.S_IMODE(output.stat().st_mode) == 0o600  # names, addresses, amounts owed
    with sqlite_portfolio.connect() as c:
        furnished = c.execute(select(func.count()).where(records_table.c.kind == "furnish")).scalar()
        events = c.execute(select(audit_table.c.detail).where(audit_table.c.kind == "bureau")).scalars().all()
    assert furnished == summary["accounts"] == summary["records_written"] > 0
    assert events == [f"metro2 2026-11 furnished to the bureau: submission {summary['submission_id']}"]
    account_numbers = {line[42:72].strip() for line in output.read_text().splitlines()[1:-1]}
    assert all(a.startswith("A-") for a in account_numbers)


@pytest.mark.usefixtures("prefect_harness")
def test_furnish_again_is_the_same_submission(
    sqlite_portfolio: Engine, sqlite_url: str, bureau: SandboxHandle
) -> None:
    """Furnishing the same period twice uploads once and records once: the bureau answers with the first
    submission."""
    first = json.loads(_furnish(sqlite_url, "--json").stdout)
    second = json.loads(_furnish(sqlite_url, "--json").stdout)
    assert first["submission_id"] == second["submission_id"]
    assert second["records_written"] == 0
    (upload,) = bureau.messages(route="furnish")
    content = bureau.admin.get(f"/_sandbox/uploads/{upload['id']}").content
    assert validate(content) == [] and content.count(b"\n") == first["accounts"] + 2


@pytest.mark.usefixtures("prefect_harness")
def test_invalid_file_is_never_submitted(
    sqlite_portfolio: Engine, sqlite_url: str, bureau: SandboxHandle
) -> None:
    """A file failing the validator fails the run with its first problems, uploads nothing and records the
    refusal."""
    with sqlite_portfolio.begin() as c:  # a charged-off account with no way to date its first delinquency
        c.execute(
            text(
                "UPDATE account SET stage = 'charged_off', days_past_due = 0, oldest_due_date = NULL "
                "WHERE account_id = (SELECT min(account_id) FROM account WHERE jurisdiction LIKE 'US%')"
            )
        )
    result = _furnish(sqlite_url)
    assert _exit_code(result) == 1
    assert "Date of First Delinquency" in result.output + str(result.exception)
    assert bureau.messages() == []
    with sqlite_portfolio.connect() as c:
        assert c.execute(select(func.count()).where(records_table.c.kind == "furnish")).scalar() == 0
        (detail,) = (
            c.execute(select(audit_table.c.detail).where(audit_table.c.kind == "bureau")).scalars().all()
        )
    assert detail.startswith("metro2 2026-11 not furnished")


@pytest.mark.usefixtures("prefect_harness")
def test_bureau_refusing_the_file_fails_the_run(
    sqlite_portfolio: Engine, sqlite_url: str, bureau: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused credentials fail `bureau furnish` with exit 1 and nothing recorded as furnished."""
    monkeypatch.setenv("ARREARS_BUREAU_CREDENTIALS", json.dumps({**bureau.credentials, "api_key": "wrong"}))
    get_settings.cache_clear()
    result = _furnish(sqlite_url)
    assert _exit_code(result) == 1 and "bureau" in str(result.exception)
    with sqlite_portfolio.connect() as c:
        assert c.execute(select(func.count()).where(records_table.c.kind == "furnish")).scalar() == 0


@pytest.mark.usefixtures("prefect_harness")
def test_furnishing_writes_nothing_to_prefects_result_storage(
    tmp_path: Path, sqlite_portfolio: Engine, sqlite_url: str, bureau: SandboxHandle
) -> None:
    """With Prefect told to persist every result (`PREFECT_RESULTS_PERSIST_BY_DEFAULT`,
    `PREFECT_TASKS_DEFAULT_PERSIST_RESULT`), a furnishing run still leaves no file in its result
    storage: the Metro 2 file its tasks pass along holds names, addresses and amounts owed, and
    nothing of ours reads a result back."""
    from prefect.settings import (
        PREFECT_RESULTS_LOCAL_STORAGE_PATH,
        PREFECT_RESULTS_PERSIST_BY_DEFAULT,
        PREFECT_TASKS_DEFAULT_PERSIST_RESULT,
        temporary_settings,
    )

    store = tmp_path / "prefect-results"
    persist = {
        PREFECT_RESULTS_LOCAL_STORAGE_PATH: store,
        PREFECT_RESULTS_PERSIST_BY_DEFAULT: True,
        PREFECT_TASKS_DEFAULT_PERSIST_RESULT: True,
    }
    with temporary_settings(persist):
        result = _furnish(sqlite_url, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["records_written"] > 0
    assert [p for p in store.rglob("*") if p.is_file()] == []


@pytest.mark.usefixtures("prefect_harness")
def test_a_failed_submission_announces_its_error_masked(
    sqlite_portfolio: Engine, sqlite_url: str, bureau: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `arrears.bureau.furnishing.failed` event (kept by the server, shown in the UI, sent on
    by automations) carries the submission's error with its numbers masked, as the run's state
    message does: here a provider setting that quotes a phone number."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    from flows.bureau_furnishing import bureau_furnishing

    monkeypatch.setenv("ARREARS_BUREAU_PROVIDER", "13912341234")
    monkeypatch.setenv("ARREARS_BUREAU_FURNISHER_ID", "FURNISHER01")  # a real bureau's: not the sandbox's
    get_settings.cache_clear()
    state = bureau_furnishing(period="2026-11", return_state=True)
    assert state.is_failed() and "13912341234" not in (state.message or "")
    wanted = EventFilter(event=EventNameFilter(name=["arrears.bureau.furnishing.failed"]))
    errors: list[str] = []
    with get_client(sync_client=True) as client:
        for _ in range(100):  # events reach the server from a background worker
            page = client.read_events(filter=wanted, limit=50)
            errors = [str(e.payload.get("error")) for e in page.events if "no provider" in str(e.payload)]
            if errors:
                break
            time.sleep(0.1)
    assert errors and all("bureau.*******1234" in e and "13912341234" not in e for e in errors), errors


def test_a_real_bureau_is_never_sent_a_file_under_the_sandboxs_furnisher_id(
    sqlite_portfolio: Engine, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ARREARS_BUREAU_FURNISHER_ID left at the sandbox's `ARREARS-SANDBOX` with a real bureau
    configured: the month's file would be refused, or its tradelines taken as another furnisher's.
    `arrears bureau furnish` refuses, exit 2, naming the setting, before anything is built or sent;
    so does the monthly run."""
    from integrations.errors import ConfigError
    from tasks.bureau import check_furnisher

    monkeypatch.setenv("ARREARS_BUREAU_PROVIDER", "rest")
    monkeypatch.setenv("ARREARS_BUREAU_BASE_URL", "https://bureau.example")
    get_settings.cache_clear()
    result = runner.invoke(app, ["bureau", "furnish", "--period", "2026-11", "--database", sqlite_url])
    assert isinstance(result.exception, CliError) and result.exception.exit_code == 2
    assert "ARREARS_BUREAU_FURNISHER_ID" in str(result.exception)
    with pytest.raises(ConfigError, match="ARREARS_BUREAU_FURNISHER_ID"):
        check_furnisher()  # what the monthly run asks first
    monkeypatch.setenv("ARREARS_BUREAU_FURNISHER_ID", "FURNISHER01")
    get_settings.cache_clear()
    check_furnisher()


# -- what the importer lets into storage, as the month's file sees it ------------------------------

NOV = Period(2026, 11)


def _import(engine: Engine, tmp_path: Path, *records: dict[str, str]) -> None:
    path = write_csv(tmp_path / "accounts.csv", records)
    with open_source(path, Kind.ACCOUNTS) as source:
        summary = run_import(engine, source, now=datetime(2026, 11, 30, 12, tzinfo=UTC))
    assert summary.rejected == 0, summary


def _build(engine: Engine) -> FurnishFile:
    with engine.connect() as c:
        accounts = [
            a
            for lo, hi in store.furnish_chunks(c, size=1000)
            for a in store.load_furnish_accounts(
                c, period=NOV, lo=lo, hi=hi, lender_timezone="America/Los_Angeles"
            )
        ]
    return build_file(
        accounts, NOV, Furnisher("ARREARS0001", "Arrears Auto Finance"), created=date(2026, 12, 1)
    )


def _transition(c: Connection, account_id: str, at: datetime, frm: str, to: str, reason: str) -> None:
    c.execute(
        audit_table.insert().values(
            account_id=account_id,
            at=at,
            kind="transition",
            detail=f"{frm} -> {to}",
            data={"from": frm, "to": to, "reason": reason},
        )
    )


def test_a_us_account_kept_in_another_currency_is_skipped_not_furnished_as_dollars(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """metro2.md: money is in whole dollars. The importer takes any ISO 4217 currency for a US
    account; ¥2,500,000 (about $17,000) was furnished as a $2,500,000 balance. It is skipped with
    its reason."""
    _import(
        sqlite_engine,
        tmp_path,
        account_record(account_id="A-1"),
        account_record(
            account_id="A-JPY",
            currency="JPY",
            balance="2500000",
            installment_amount="50000",
            past_due_amount="50000",
        ),
    )
    built = _build(sqlite_engine)
    assert [r.account_id for r in built.reported] == ["A-1"]
    assert "JPY" in dict(built.skipped)["A-JPY"]


def test_a_us_account_whose_id_metro2_cannot_write_is_skipped_not_the_whole_file(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """The importer takes any printable id on a US account. One Metro 2 cannot write made a blank
    Consumer Account Number, which our validator refused: no file that month for any account. It
    is skipped with its reason and the others' file passes; an id of Chinese characters is
    transliterated like any text."""
    _import(
        sqlite_engine,
        tmp_path,
        account_record(account_id="A-1"),
        account_record(account_id="【】"),
        account_record(account_id="贷款一号"),
    )
    built = _build(sqlite_engine)
    assert validate(built.content) == []
    assert sorted(r.account_id for r in built.reported) == ["A-1", "贷款一号"]
    assert list(dict(built.skipped)) == ["【】"]


def test_a_loan_reinstated_after_the_car_was_recovered_is_reported_current_not_repossessed(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """The agency recovered the car on 5 November; on the 20th the borrower paid the past due (a
    reinstatement) and the account was cured. The furnishing read "repossessed" from any
    assignment ever recovered, above the stage: the cured loan was reported 96 with K every month
    for as long as it was paid on time. It is reported 11, this month's character 0."""
    _import(sqlite_engine, tmp_path, account_record(account_id="A-R"))
    with sqlite_engine.begin() as c:
        c.execute(
            AgencyAssignment.__table__.insert().values(  # type: ignore[attr-defined]
                idempotency_key="reinstated-1",
                order_id="RO-1",
                account_id="A-R",
                status="recovered",
                recovered_at=datetime(2026, 11, 5, 9, tzinfo=UTC),
            )
        )
        c.execute(
            text(
                "UPDATE account SET stage = 'cured', past_due_amount = 0, oldest_due_date = NULL, "
                "days_past_due = 0 WHERE account_id = 'A-R'"
            )
        )
        _transition(
            c,
            "A-R",
            datetime(2026, 11, 20, 18, tzinfo=UTC),
            "repossession_review",
            "cured",
            "past due cleared",
        )
    reported = {r.account_id: r for r in _build(sqlite_engine).reported}["A-R"]
    assert (reported.account_status, reported.history_char, reported.special_comment) == ("11", "0", "")


def test_a_new_delinquency_after_a_month_reported_current_gets_a_new_first_delinquency(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """metro2.md: the Date of First Delinquency is set "until it becomes current". Delinquent since
    June (due 1 June), the account was brought under 30 days past due by partial payments and
    reported 11 for October; the stage stayed `negotiation` (only a cleared past due cures). In
    November it is 40 days past due on a due date of 21 October: a new delinquency, first 30 days
    late on 20 November, where the file reported 1 July, the stage episode's date."""
    _import(sqlite_engine, tmp_path, account_record(account_id="A-D"))
    with sqlite_engine.begin() as c:
        _transition(
            c, "A-D", datetime(2026, 6, 5, 18, tzinfo=UTC), "cured", "reminder", "delinquent: 4 days past due"
        )
        _transition(
            c, "A-D", datetime(2026, 6, 20, 18, tzinfo=UTC), "reminder", "negotiation", "19 days past due"
        )
        c.execute(
            records_table.insert().values(
                account_id="A-D",
                kind="furnish",
                payload={
                    "period": "2026-10",
                    "status": "11",
                    "rating": "",
                    "char": "0",
                    "first_delinquency": None,
                    "compliance_condition": "",
                    "consumer_information": "",
                    "charge_off_amount": 0,
                },
                at=datetime(2026, 11, 3, 12, tzinfo=UTC),
            )
        )
        c.execute(
            text(
                "UPDATE account SET stage = 'negotiation', oldest_due_date = '2026-10-21', "
                "days_past_due = 40 WHERE account_id = 'A-D'"
            )
        )
    reported = {r.account_id: r for r in _build(sqlite_engine).reported}["A-D"]
    assert (reported.account_status, reported.first_delinquency) == ("71", date(2026, 11, 20))


def test_a_bankruptcy_told_in_a_text_is_not_furnished_as_a_petition(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """A text "my brother filed chapter 7 last year" places a bankruptcy hold whose reason quotes the
    words; the furnishing read the chapter from it and reported Consumer Information Indicator A
    (Chapter 7 petition) from nothing but that text. A chapter is read only from a source that can
    state it: a person's hold (here chapter 13, D) or the bureau's."""
    from arrears.inbound import classify
    from arrears.storage.holds import place_hold
    from arrears.storage.inbound import Inbound, record_statement
    from arrears.vocabulary import Hold

    words = "my brother filed chapter 7 last year"
    _import(
        sqlite_engine,
        tmp_path,
        account_record(account_id="A-BK"),
        account_record(account_id="A-AG", phone="+12133734254"),
    )
    said = classify(words)
    assert said.hold is Hold.BANKRUPTCY and said.statement
    at = datetime(2026, 11, 10, 18, tzinfo=UTC)
    with sqlite_engine.begin() as c:
        inbound = Inbound("+12133734253", words, at, "sandbox", "cb-1")
        assert record_statement(c, inbound=inbound, hold=Hold.BANKRUPTCY, words=said.statement) == ["A-BK"]
        assert place_hold(
            c,
            account_id="A-AG",
            kind=Hold.BANKRUPTCY,
            by="j.doe",
            why="chapter 13 confirmed by counsel",
            at=at,
        )
    built = _build(sqlite_engine)
    reported = {r.account_id: r for r in built.reported}
    assert (reported["A-BK"].consumer_information, reported["A-AG"].consumer_information) == ("", "D")
    assert any("without a known chapter" in w for a, w in built.warnings if a == "A-BK")


@pytest.mark.usefixtures("prefect_harness")
def test_furnishing_names_the_accounts_it_cannot_furnish_as_they_stand_with_their_reasons(
    sqlite_engine: Engine, sqlite_url: str, tmp_path: Path
) -> None:
    """An account left out for what it holds (here a US loan kept in yen) is named with its reason
    in the run's summary and artifact, for operations to mend; another country's is not read at all."""
    _import(
        sqlite_engine,
        tmp_path,
        account_record(account_id="A-1"),
        account_record(account_id="A-CN", jurisdiction="CN", timezone="Asia/Shanghai", currency="CNY"),
        account_record(
            account_id="A-JPY",
            currency="JPY",
            balance="2500000",
            installment_amount="50000",
            past_due_amount="50000",
        ),
    )
    result = _furnish(sqlite_url, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["skipped"] == 1 and summary["accounts"] == 1
    [named] = summary["not_furnishable"]
    assert named.startswith("A-JPY: kept in JPY")
    shown = _furnish(sqlite_url).stdout  # and said to whoever ran it
    assert "not furnished: A-JPY: kept in JPY" in shown
