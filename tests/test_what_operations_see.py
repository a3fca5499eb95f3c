"""What operations see (DESIGN §8, §9): `arrears report` of any cycle, the trend artifact, the
cycle's artifacts and the masking of numbers in what reaches logs, artifacts and events."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, update
from typer.testing import CliRunner

from arrears.buckets import BUCKETS
from arrears.importing import Kind, open_source
from arrears.masking import mask_text
from arrears.storage._common import inserted_id
from arrears.storage.importer import run_import
from arrears.storage.reports import PortfolioReport, portfolio_report, trend
from arrears.storage.tables import account, audit, cycle_run
from deployments.cli import app
from tests.factories import account_record, write_csv

runner = CliRunner()


def _wide(digits: str) -> str:
    """`digits` in their full-width forms, as a Chinese keyboard in full-width mode types them."""
    return "".join(chr(0xFF10 + int(d)) for d in digits)


def _cycle(
    engine: Engine, as_of: datetime, *, report: dict[str, Any] | None, status: str = "finished"
) -> int:
    """A cycle run row at `as_of`, closed with `report` stored as its cycle closes it (None: running)."""
    with engine.begin() as c:
        return inserted_id(
            c.execute(
                cycle_run.insert().values(
                    as_of=as_of,
                    business_date=as_of.date(),
                    finished_at=None if report is None else as_of + timedelta(minutes=5),
                    stats={} if report is None else {"report": report},
                    status="running" if report is None else status,
                )
            )
        )


def test_report_of_an_earlier_cycle_shows_the_portfolio_and_rates_it_left(
    sqlite_engine: Engine, sqlite_url: str, tmp_path: Path
) -> None:
    """`arrears report --cycle ID` of a cycle that closed says what that cycle's artifacts said: the
    portfolio it left and its roll and cure rates, not today's portfolio under its id (accounts
    imported since, stages moved by later cycles), nor rates recomputed against today's book."""
    first = datetime(2026, 12, 1, 1, tzinfo=UTC)
    stored = PortfolioReport(
        cycle_id=None,
        as_of=first,
        by_stage_bucket={"reminder": {"1-29": 1}},
        roll_rate=0.25,
        cure_rate=0.5,
    )
    cycle_id = _cycle(sqlite_engine, first, report=stored.as_json())
    # Since then: two more accounts imported, and the first account moved on by a later cycle.
    file = write_csv(
        tmp_path / "accounts.csv",
        [
            account_record(account_id=f"A-{n}", borrower_id=f"B-{n}", phone=f"+1213373425{n}")
            for n in (1, 2, 3)
        ],
    )
    assert run_import(sqlite_engine, open_source(file, Kind.ACCOUNTS)).rejected == 0
    with sqlite_engine.begin() as c:
        c.execute(update(account).where(account.c.account_id == "A-1").values(stage="negotiation"))
    _cycle(sqlite_engine, first + timedelta(days=1), report={"accounts_by_stage_and_bucket": {}})

    with sqlite_engine.connect() as c:
        found = portfolio_report(c, cycle_id=cycle_id)
    assert found.by_stage_bucket == {"reminder": {"1-29": 1}}
    assert (found.roll_rate, found.cure_rate) == (0.25, 0.5)
    shown = runner.invoke(app, ["report", "--cycle", str(cycle_id), "--database", sqlite_url, "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["accounts_by_stage_and_bucket"] == {"reminder": {"1-29": 1}}
    assert (data["roll_rate"], data["cure_rate"]) == (0.25, 0.5)


def test_report_of_a_cycle_being_reported_reads_the_portfolio_itself(sqlite_engine: Engine) -> None:
    """While the cycle runs (its report task), no report is stored yet: the portfolio is read from
    the accounts, and a portfolio without a delinquent account has no rate (no division by zero)."""
    instant = datetime(2026, 12, 1, 1, tzinfo=UTC)
    cycle_id = _cycle(sqlite_engine, instant, report=None)
    with sqlite_engine.connect() as c:
        found = portfolio_report(c, cycle_id=cycle_id)
    assert found.as_of == instant and found.by_stage_bucket == {}
    assert (found.roll_rate, found.cure_rate) == (None, None)


def test_trend_covers_the_last_30_cycles_with_the_current_one(sqlite_engine: Engine) -> None:
    """The trend artifact covers the last 30 cycles (DESIGN §9), the current one among them: not 31."""
    start = datetime(2026, 11, 1, 1, tzinfo=UTC)
    for day in range(40):
        report = {"accounts_by_stage_and_bucket": {"reminder": {"1-29": day}}, "dispatched": {}}
        _cycle(sqlite_engine, start + timedelta(days=day), report=report)
    current_at = start + timedelta(days=40)
    current_id = _cycle(sqlite_engine, current_at, report=None)
    with sqlite_engine.connect() as c:
        points = trend(c, current=PortfolioReport(cycle_id=current_id, as_of=current_at))
        assert len(points) == 30 and points[-1].as_of == current_at
        # Without a current cycle (none running), the last 30 closed ones.
        assert len(trend(c, current=PortfolioReport(cycle_id=None, as_of=None))) == 30


def test_trend_leaves_out_a_failed_cycle_that_stored_no_report(sqlite_engine: Engine) -> None:
    """A cycle that failed stored no portfolio: the trend does not draw it as a day on which every
    stage held no account (open accounts 0 in the chart), it goes on from the cycle before."""
    start = datetime(2026, 12, 1, 1, tzinfo=UTC)
    full = {"accounts_by_stage_and_bucket": {"reminder": {"1-29": 7}}, "dispatched": {}}
    _cycle(sqlite_engine, start, report=full)
    failed = _cycle(sqlite_engine, start + timedelta(days=1), report=full, status="failed")
    with sqlite_engine.begin() as c:
        c.execute(
            update(cycle_run).where(cycle_run.c.id == failed).values(stats={"error": "OperationalError"})
        )
    _cycle(sqlite_engine, start + timedelta(days=2), report=full)
    with sqlite_engine.connect() as c:
        points = trend(c, current=PortfolioReport(cycle_id=None, as_of=None))
    assert [p.by_stage for p in points] == [{"reminder": 7}, {"reminder": 7}]


def test_provider_failures_artifact_counts_what_the_provider_refused_or_failed(
    sqlite_engine: Engine, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each cycle leaves a provider-failures artifact (DESIGN §9): the sends the provider refused,
    failed or held back, by status and reason, the same columns in every row; one row saying none
    when the provider failed nothing."""
    import tasks.report as report_task

    instant = datetime(2026, 12, 1, 1, tzinfo=UTC)
    cycle_id = _cycle(sqlite_engine, instant, report=None)
    sends = [
        ("sent", None, 5),
        ("failed", "invalid_number", 2),
        ("failed", "30003", 1),
        ("blocked", "opt_out:carrier", 1),
        ("blocked", "hold:dispute", 4),
        ("scheduled", "provider:busy", 3),
        ("scheduled", "hours:CN", 6),
    ]
    rows = [
        {
            "account_id": f"A-{status}-{reason}-{n}",
            "at": instant,
            "kind": "message",
            "detail": "",
            "cycle_id": cycle_id,
            "data": {"when": "send", "status": status, "reason": reason},
        }
        for status, reason, count in sends
        for n in range(count)
    ]
    with sqlite_engine.begin() as c:
        c.execute(audit.insert(), rows)
        found = report_task.provider_failure_rows(portfolio_report(c, cycle_id=cycle_id))
    assert found == [
        {"status": "blocked", "reason": "opt_out:carrier", "count": 1},
        {"status": "failed", "reason": "30003", "count": 1},
        {"status": "failed", "reason": "invalid_number", "count": 2},
        {"status": "scheduled", "reason": "provider:busy", "count": 3},
    ]
    assert report_task.provider_failure_rows(PortfolioReport(cycle_id=None, as_of=None)) == [
        {"status": "(none)", "reason": "", "count": 0}
    ]

    published: dict[str, Any] = {}
    monkeypatch.setattr(
        report_task, "create_table_artifact", lambda key, table, description: published.update({key: table})
    )
    monkeypatch.setattr(report_task, "create_markdown_artifact", lambda **_: None)
    with sqlite_engine.connect() as c:
        report_task._publish(
            portfolio_report(c, cycle_id=cycle_id), None, "2026-12-01", {"this_cycle": 0, "open_total": 0}, {}
        )
    assert published["provider-failures"] == found
    # `arrears report` says the same, in its JSON and its tables.
    shown = runner.invoke(app, ["report", "--cycle", str(cycle_id), "--database", sqlite_url, "--json"])
    assert json.loads(shown.stdout)["provider_failures"] == {
        "blocked": {"opt_out:carrier": 1},
        "failed": {"30003": 1, "invalid_number": 2},
        "scheduled": {"provider:busy": 3},
    }
    printed = runner.invoke(app, ["report", "--cycle", str(cycle_id), "--database", sqlite_url])
    assert "provider failed" in printed.output and "invalid_number" in printed.output
    # A cycle over an empty portfolio still has a table with its columns, as the others do.
    assert {tuple(r) for r in published["accounts-by-stage-and-bucket"]} == {
        ("stage", *(label for label, _ in BUCKETS), "total")
    }


@pytest.mark.parametrize(
    ("written", "secrets"),
    [
        # Two numbers a comma apart, as a borrower types them or a CSV line quotes them.
        ("13912345678,13812345678", ("13912345678", "13812345678", "1234567", "1234567")),
        ("+8613912341234,+8613812345678", ("3912341234", "3812345678")),
        ("A-1,2026-12-01,13912345678,Asia/Shanghai", ("13912345678", "1234567")),
        ("call 500,13912345678", ("13912345678",)),
        # CN landlines as the Chinese write them, and a UK number with its area code in brackets.
        ("单位电话010-12345678", ("12345678", "1234567")),
        ("0755-88886666 ext", ("88886666", "8888666")),
        ("(010) 1234 5678", ("1234 5678", "1234 5")),
        ("(020) 7946 0000", ("7946 0000", "7946")),
        # The international prefix 00 instead of +.
        ("0044 7700 900123", ("7700 900", "7700")),
        ("00447700900123", ("447700900", "7700900")),
        ("001 626 241 1110", ("241 1110", "626 241")),
        # Full-width digits, as a Chinese keyboard in full-width mode types them.
        (f"我的新号码{_wide('13912345678')}", (_wide("1391234"), _wide("345678"))),
    ],
)
def test_numbers_written_in_more_ways_are_masked(written: str, secrets: tuple[str, ...]) -> None:
    """Numbers a comma apart with no space, CN landlines with their area code and a dash, a
    bracketed area code, the 00 international prefix and full-width digits are masked: each of
    these reached logs and artifacts whole or with most of its digits."""
    masked = mask_text(written)
    for secret in secrets:
        assert secret not in masked, (written, masked)
    assert masked.count("*") >= 6, masked


@pytest.mark.parametrize(
    "kept",
    [
        "amount 1,234,567,890 and 6262411110.50, 6262411110,50",
        "2026-12-01, 2026-12-01T09:00:00+08:00, zip 62701-1234",
        "account A-0000042 and LN-2345678901, key A-0000042:reminder:1:day-5",
        "message 123456789 sent; ids 1,2,3; 10,000 accounts",
        "00:00:00.123456, 0.0391, 0,15",
    ],
)
def test_the_masking_still_leaves_amounts_dates_and_ids_alone(kept: str) -> None:
    """The wider masking leaves amounts (grouped or with decimals), dates, ids and counts as written."""
    assert mask_text(kept) == kept


def test_stage_changes_are_emitted_as_events_an_automation_can_match(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stage changes are events (DESIGN §9): one per move of the cycle's matrix, its stages as
    resource labels an automation matches and the count of accounts in its payload; no account
    and no number in them."""
    import tasks.report as report_task

    emitted: list[tuple[str, dict[str, str], dict[str, Any]]] = []
    monkeypatch.setattr(
        report_task, "emit_event", lambda event, resource, payload: emitted.append((event, resource, payload))
    )
    report = PortfolioReport(
        cycle_id=7,
        as_of=datetime(2026, 12, 1, 1, tzinfo=UTC),
        transitions={"negotiation": {"repossession_review": 3}, "reminder": {"cured": 2, "negotiation": 5}},
    )
    report_task._emit(report, None, 7, "2026-12-01")
    changes = [
        (r["arrears.stage.from"], r["arrears.stage.to"], p)
        for e, r, p in emitted
        if e == "arrears.stage.changed"
    ]
    assert changes == [
        (
            "negotiation",
            "repossession_review",
            {"from": "negotiation", "to": "repossession_review", "accounts": 3},
        ),
        ("reminder", "cured", {"from": "reminder", "to": "cured", "accounts": 2}),
        ("reminder", "negotiation", {"from": "reminder", "to": "negotiation", "accounts": 5}),
    ]
    assert all(
        r["prefect.resource.id"] == "arrears.cycle.7" for e, r, _ in emitted if e == "arrears.stage.changed"
    )
