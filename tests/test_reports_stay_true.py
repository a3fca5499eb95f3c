"""What operations read stays true (DESIGN §8, §9): a past cycle's `arrears report` says what the
cycle said as it closed, whatever its messages did later; the provider-failures artifact counts
the messages an outage held back untried."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from arrears.settings import get_settings
from arrears.storage._common import inserted_id
from arrears.storage.reports import AT_CLOSE, HELD, NOW, portfolio_report
from arrears.storage.tables import cycle_run, message
from deployments.cli import app
from tests.later_stage_helpers import import_rows, us_account

AS_OF = "2026-12-05T16:00:00Z"  # 10:00 in Des Moines: the borrowers' texts go out at once
runner = CliRunner()


@pytest.fixture
def cycle_db(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """The database the tasks open (ARREARS_DATABASE_URL)."""
    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    return engine


def _cli(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def _report(db_url: str, cycle_id: int) -> dict[str, Any]:
    shown = _cli("report", "--cycle", str(cycle_id), "--database", db_url, "--json")
    assert shown.exit_code == 0, shown.output
    return dict(json.loads(shown.stdout))


def _cycle(as_of: str) -> tuple[int, dict[str, Any], Any]:
    """The daily cycle flow run as of `as_of`: its cycle id, its counts and its flow run's id."""
    from flows.daily_cycle import daily_cycle

    state = daily_cycle(as_of=as_of, return_state=True)
    stats = state.result()
    return stats["cycle_id"], stats, state.state_details.flow_run_id


# -- a past cycle's report -------------------------------------------------------------------------


@pytest.mark.usefixtures("prefect_harness", "sms_sandbox")
def test_report_of_an_earlier_cycle_keeps_its_messages_as_they_stood_at_its_close(
    cycle_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """`arrears report --cycle ID` of a cycle that closed counts its messages by their status at its
    close, and says so: their delivery reports coming in later (here every text failed at the
    carrier) change what the messages are now, not what that cycle's report said."""
    from arrears.storage.delivery_reports import StatusReport, apply_delivery_reports
    from arrears.vocabulary import MessageStatus

    import_rows(cycle_db, tmp_path, [us_account(f"A-K{n}") for n in range(4)])
    cycle_id, _, _ = _cycle(AS_OF)
    before = _report(db_url, cycle_id)
    assert before["messages_by_status"].get("sent", 0) + before["messages_by_status"].get("delivered", 0) >= 4

    with cycle_db.begin() as c:
        sent = c.execute(
            select(message.c.provider, message.c.provider_id).where(message.c.provider_id.is_not(None))
        ).all()
        for provider, provider_id in sent:
            apply_delivery_reports(
                c,
                provider=provider,
                reports=[StatusReport(provider_id, MessageStatus.FAILED, datetime.now(UTC), "30003")],
            )
    with cycle_db.connect() as c:  # read again from the messages, the counts are others now
        now = dict(
            c.execute(
                select(message.c.status, message.c.status).where(message.c.provider_id.is_not(None))
            ).all()
        )
    assert set(now) == {"failed"} != set(before["messages_by_status"])

    after = _report(db_url, cycle_id)
    for key in ("messages_by_status", "blocked_by_reason", "scheduled_by_reason", "statuses_as_of"):
        assert after[key] == before[key], key
    assert after["statuses_as_of"] == AT_CLOSE
    printed = _cli("report", "--cycle", str(cycle_id), "--database", db_url)
    assert "by status at the cycle's close" in " ".join(printed.output.split())  # the title, wrapped


def test_report_of_a_cycle_that_stored_nothing_says_its_statuses_are_todays(
    sqlite_engine: Engine, sqlite_url: str
) -> None:
    """A cycle running (or failed, or crashed) stored no report: its messages can only be counted as
    they stand now, and the report says so, in its JSON and its table's title."""
    with sqlite_engine.begin() as c:
        cycle_id = inserted_id(
            c.execute(
                cycle_run.insert().values(
                    as_of=datetime(2026, 12, 1, 1, tzinfo=UTC),
                    business_date=datetime(2026, 12, 1).date(),
                    stats={},
                    status="running",
                )
            )
        )
        assert portfolio_report(c, cycle_id=cycle_id).statuses_as_of == NOW
    assert _report(sqlite_url, cycle_id)["statuses_as_of"] == NOW
    printed = _cli("report", "--cycle", str(cycle_id), "--database", sqlite_url)
    assert "messages decided in the cycle, by status now" in " ".join(printed.output.split())


# -- the messages an outage held back --------------------------------------------------------------


@pytest.mark.usefixtures("prefect_harness")
def test_messages_an_outage_held_back_are_in_the_provider_failures_artifact(
    cycle_db: Engine, db_url: str, tmp_path: Path, sms_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the provider down, dispatch tries a first small batch and holds the other due messages
    back untried, writing no send event for them. The cycle's provider-failures artifact counts them
    (`held`, by provider), so that its rows for the provider account for every message the outage
    event says waits; `arrears report` says the same, and still does after they were sent."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    monkeypatch.setenv("ARREARS_DISPATCH_BATCH", "2")  # the first batch 2 messages, the rest held
    get_settings.cache_clear()
    import_rows(cycle_db, tmp_path, [us_account(f"A-O{n}") for n in range(6)])
    sms_sandbox.set_faults(http_503=1_000_000, retry_after=0)
    cycle_id, stats, run_id = _cycle(AS_OF)
    waiting = stats["outage"]["waiting"]
    assert stats["outage"]["provider"] == "sandbox" and waiting >= 6

    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["provider-failures"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
            )
        )
    rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    outage = "provider:sandbox:outage"
    held = [r for r in rows if r["status"] == HELD]
    assert held == [{"status": HELD, "reason": outage, "count": waiting - 2}]
    assert sum(r["count"] for r in rows if r["reason"] == outage) == waiting
    assert {tuple(r) for r in rows} == {("status", "reason", "count")}
    assert _report(db_url, cycle_id)["provider_failures"][HELD] == {outage: waiting - 2}

    sms_sandbox.set_faults()
    later = _cli("dispatch", "--as-of", "2026-12-05T16:05:00Z", "--database", db_url)
    assert later.exit_code == 0, later.output
    with cycle_db.connect() as c:
        assert c.execute(select(message.c.id).where(message.c.reason == outage)).all() == []
    assert _report(db_url, cycle_id)["provider_failures"][HELD] == {outage: waiting - 2}
