"""Schedules: `arrears serve` on a real Prefect server, and prefect.yaml for work pools."""

import asyncio
import importlib
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from prefect import Flow

ROOT = Path(__file__).resolve().parents[1]


def test_prefect_yaml_entrypoints_are_our_flows_and_schedules_come_from_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every prefect.yaml deployment points at a flow of ours; the daily cron and the zones are the
    build step's, which reads them from the settings as `arrears serve` does (not a literal
    Shanghai morning for every lender)."""
    from prefect.utilities.templating import apply_values

    from arrears.settings import get_settings
    from deployments.schedules import FURNISHING_CRON, schedules_step

    spec = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    names = set()
    for deployment in spec["deployments"]:
        path, name = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert isinstance(getattr(module, name), Flow), deployment["entrypoint"]
        names.add(deployment["name"])
    assert {"daily", "outbox", "account"} <= names
    assert "deployments.schedules.schedules_step" in spec["build"][0]

    monkeypatch.setenv("ARREARS_CYCLE_CRON", "30 7 * * 1-5")
    monkeypatch.setenv("ARREARS_LENDER_TIMEZONE", "America/New_York")
    get_settings.cache_clear()  # read again (the autouse fixture clears it after the test)
    outputs = {"schedules": schedules_step()}
    declared = {d["name"]: apply_values(d.get("schedules", []), outputs) for d in spec["deployments"]}
    assert declared["daily"] == [{"cron": "30 7 * * 1-5", "timezone": "America/New_York"}]
    assert declared["monthly"] == [{"cron": FURNISHING_CRON, "timezone": "America/New_York"}]


def test_a_cron_prefect_cannot_read_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    """`arrears serve` and the deploy's build step refuse `ARREARS_CYCLE_CRON=0 25 * * *` with one
    line naming the setting (exit 2), instead of Prefect's traceback from inside a deployment."""
    from typer.testing import CliRunner

    from arrears.settings import get_settings
    from deployments.cli import app
    from deployments.schedules import InvalidSchedule, schedules_step

    monkeypatch.setenv("ARREARS_CYCLE_CRON", "0 25 * * *")
    get_settings.cache_clear()
    with pytest.raises(InvalidSchedule, match="cycle_cron"):
        schedules_step()
    refused = CliRunner().invoke(app, ["serve", "--dry-run", "--database", sqlite_url])
    assert refused.exception is not None and getattr(refused.exception, "exit_code", None) == 2
    assert "invalid settings: cycle_cron (ARREARS_CYCLE_CRON)" in str(refused.exception)
    assert "0 25 * * *" in str(refused.exception)


@pytest.mark.parametrize("cause", ["port taken", "empty letters secret"])
def test_serve_whose_webhook_server_cannot_start_says_so_in_one_line(
    cause: str,
    sqlite_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`arrears serve` with its webhook port taken (exit 1) or a letters provider whose callbacks
    nothing could verify (exit 2, a setting to fix) says so in one line naming the settings,
    before anything is served; it was a traceback (exit 1) for both."""
    import json
    import socket

    from arrears.settings import get_settings
    from deployments.cli import main

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    if cause == "port taken":
        monkeypatch.setenv("ARREARS_WEBHOOK_PORT", str(taken.getsockname()[1]))
        expected = (1, "error: the webhook server did not start on 127.0.0.1:")
    else:
        monkeypatch.setenv("ARREARS_LETTERS_PROVIDER", "lob")
        monkeypatch.setenv("ARREARS_LETTERS_BASE_URL", "http://127.0.0.1:9")
        monkeypatch.setenv("ARREARS_LETTERS_CREDENTIALS", json.dumps({"api_key": "k", "webhook_secret": ""}))
        expected = (2, "error: the webhook server cannot start: ARREARS_LETTERS_CREDENTIALS: ")
    get_settings.cache_clear()
    monkeypatch.setattr("deployments.serve.serve_all", lambda: pytest.fail("served without webhooks"))
    monkeypatch.setattr("sys.argv", ["arrears", "serve", "--database", sqlite_url])
    try:
        with pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        taken.close()
    err = capsys.readouterr().err
    assert exit_info.value.code == expected[0], err
    assert err.startswith(expected[1]) and "Traceback" not in err and err.count("\n") == 1, err


def test_prefect_yaml_declares_what_serve_serves() -> None:
    """A work pool gets the same deployments as `arrears serve`, the review and referral ones included:
    the cycle starts those by name."""
    from deployments.serve import deployments
    from flows.legal_referral import REFERRAL_DEPLOYMENT
    from flows.repossession_review import REVIEW_DEPLOYMENT

    spec = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    declared = {(d["entrypoint"].split(":")[1].replace("_", "-"), d["name"]) for d in spec["deployments"]}
    served = {(d.flow_name, d.name) for d in deployments()}
    assert declared == served
    assert {tuple(REVIEW_DEPLOYMENT.split("/")), tuple(REFERRAL_DEPLOYMENT.split("/"))} <= served


def test_serve_registers_the_daily_cycle_with_the_lenders_zone(prefect_harness: None, tmp_path: Path) -> None:
    """`arrears serve` against a Prefect server creates the daily deployment on a cron in the lender's
    zone."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "ARREARS_LENDER_TIMEZONE": "America/Chicago",
        "ARREARS_CYCLE_CRON": "30 7 * * 1-5",
        "ARREARS_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", "serve"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )

    async def find() -> object:
        async with get_client() as client:
            for _ in range(120):
                try:
                    return await client.read_deployment_by_name("daily-cycle/daily")
                except Exception:  # not registered yet
                    if process.poll() is not None:
                        break
                    await asyncio.sleep(0.5)
        output = process.stdout.read().decode() if process.stdout else ""
        pytest.fail(f"serve did not register the deployment: {output}")

    try:
        deployment = asyncio.run(find())
    finally:
        process.terminate()
        process.wait(timeout=30)
    schedule = deployment.schedules[0].schedule  # type: ignore[attr-defined]
    assert (schedule.cron, schedule.timezone) == ("30 7 * * 1-5", "America/Chicago")


def test_cycle_fans_shards_out_to_served_workers(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sms_sandbox: object
) -> None:
    """With fan_out, each shard is advanced by a `cycle-shard` flow run on a served deployment."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from arrears.importing import Kind, open_source
    from arrears.settings import get_settings
    from arrears.storage import get_engine, migrate
    from arrears.storage.importer import run_import
    from flows.daily_cycle import daily_cycle
    from tests.factories import account_record, write_csv
    from tests.later_stage_helpers import drop_queued_runs

    url = f"sqlite:///{tmp_path / 'fan.db'}"
    monkeypatch.setenv("ARREARS_DATABASE_URL", url)
    monkeypatch.setenv("ARREARS_SHARD_SIZE", "2")
    get_settings.cache_clear()
    engine = get_engine(url)
    migrate(engine)
    path = write_csv(
        tmp_path / "a.csv",
        [account_record(account_id=f"A-{i}", oldest_due_date="2026-11-26") for i in range(5)],
    )
    run_import(engine, open_source(path, Kind.ACCOUNTS))

    drop_queued_runs()  # another test's queued runs of these deployments would run on this database
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", "serve"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        async def wait_for_deployment() -> None:
            async with get_client() as client:
                for _ in range(360):  # a loaded machine (the suite's other worker) starts serve slowly
                    try:
                        await client.read_deployment_by_name("cycle-shard/shard")
                        return
                    except Exception:  # not registered yet
                        await asyncio.sleep(0.5)
            pytest.fail("serve did not register cycle-shard/shard")

        asyncio.run(wait_for_deployment())
        began = datetime.now(UTC)
        stats = daily_cycle(as_of="2026-12-01T16:30:00Z", fan_out="cycle-shard/shard")

        async def shard_runs() -> list[object]:
            # This cycle's shard runs, asked of the server by flow and start: unfiltered, the API
            # gives the first 200 of the session's runs, which after the suite's other tests may
            # hold none of these.
            from prefect.client.schemas.filters import (
                FlowFilter,
                FlowFilterName,
                FlowRunFilter,
                FlowRunFilterStartTime,
            )

            async with get_client() as client:
                return list(
                    await client.read_flow_runs(
                        flow_filter=FlowFilter(name=FlowFilterName(any_=["cycle-shard"])),
                        flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=began)),
                    )
                )

        runs = asyncio.run(shard_runs())
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert stats["advance"]["shards"] == 3
    assert len(runs) == 3 and all(r.state.is_completed() for r in runs)  # type: ignore[attr-defined]
    assert stats["dispatch"]["sent"] == 5


def test_upcoming_runs_are_named_for_their_work(prefect_harness: None) -> None:
    """Scheduled runs of the served schedules, randomly named by Prefect's scheduler, are renamed
    for their work: the cycle's business date, the sweep's instant, the month furnished."""
    from datetime import UTC, datetime

    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    from deployments.serve import deployments, name_upcoming_runs
    from flows._prefect import synced

    when = datetime(2027, 1, 3, 22, 15, tzinfo=UTC)  # 06:15 on 4 January in Shanghai
    wanted = {
        "daily": "daily-cycle 2027-01-04",
        "outbox": "dispatch 2027-01-03T22:15Z",
        "monthly": "bureau-furnishing 2026-12",
    }
    runs, applied = {}, []
    with get_client(sync_client=True) as client:
        try:
            for deployment in deployments():
                if deployment.name in wanted:
                    applied.append(deployment_id := synced(deployment.apply()))
                    run = client.create_flow_run_from_deployment(
                        deployment_id, state=Scheduled(scheduled_time=when), name=f"random-{deployment.name}"
                    )
                    runs[deployment.name] = run.id
            assert name_upcoming_runs() >= len(wanted)
            named = {name: client.read_flow_run(run_id).name for name, run_id in runs.items()}
        finally:  # no scheduled run of ours left for a later test's `arrears serve` to start
            for deployment_id in applied:
                client.delete_deployment(deployment_id)
    assert named == wanted


def test_a_fanned_out_cycle_with_no_worker_fails_saying_so_and_leaves_no_shard_run(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No worker serves the shard deployment (never started, or killed): the cycle waited three
    hours (Prefect's default) holding the run lock, and its shard runs stayed Scheduled for the
    first worker to start, advancing for a cycle long over. It fails, naming the cause, and
    cancels them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.objects import StateType

    import flows.daily_cycle as cycle_flows
    from arrears.importing import Kind, open_source
    from arrears.settings import get_settings
    from arrears.storage import get_engine, migrate
    from arrears.storage.importer import run_import
    from flows.daily_cycle import cycle_shard, daily_cycle
    from tests.factories import account_record, write_csv

    url = f"sqlite:///{tmp_path / 'no-worker.db'}"
    monkeypatch.setenv("ARREARS_DATABASE_URL", url)
    monkeypatch.setenv("ARREARS_SHARD_SIZE", "2")
    monkeypatch.setattr(cycle_flows, "SHARD_START_SECONDS", 3.0)
    monkeypatch.setattr(cycle_flows, "SHARD_POLL_SECONDS", 0.5)
    get_settings.cache_clear()
    engine = get_engine(url)
    migrate(engine)
    path = write_csv(
        tmp_path / "a.csv",
        [account_record(account_id=f"A-{i}", oldest_due_date="2026-11-26") for i in range(5)],
    )
    run_import(engine, open_source(path, Kind.ACCOUNTS))
    cycle_shard.to_deployment(name="unserved-shard").apply()  # registered, never served

    began = time.monotonic()
    with pytest.raises(RuntimeError, match="no worker started a shard run of cycle-shard/unserved-shard"):
        daily_cycle(as_of="2026-12-01T16:30:00Z", fan_out="cycle-shard/unserved-shard")
    assert time.monotonic() - began < 60
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("cycle-shard/unserved-shard")
        shard_runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        )
    assert len(shard_runs) == 3
    assert {r.state.type for r in shard_runs if r.state} == {StateType.CANCELLED}


def test_shard_runs_beyond_one_api_page_are_read_and_cancelled(prefect_harness: None) -> None:
    """A ten-million-account book fans out into a thousand shard runs, and Prefect's API refuses to
    read more than 200 flow runs a request: the cycle reads its shard runs a page at a time, so it
    can follow them and cancel those it leaves."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.objects import StateType

    from flows.daily_cycle import _cancel_unfinished, cycle_shard

    deployment_id = cycle_shard.to_deployment(name="paged-shard").apply()
    parameters = {"as_of": "2026-12-01T16:30:00Z", "cycle_id": 1, "index": 0, "lo": "A"}
    with get_client(sync_client=True) as client:
        ids = [
            client.create_flow_run_from_deployment(deployment_id, parameters=parameters).id
            for _ in range(201)
        ]
    _cancel_unfinished(ids)
    with get_client(sync_client=True) as client:
        states = [
            run.state.type if run.state else None
            for start in (0, 100, 200)
            for run in client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids[start : start + 100])), limit=100
            )
        ]
    assert len(states) == 201 and set(states) == {StateType.CANCELLED}


@pytest.mark.parametrize("fan_out", ["0", "cycle-shard/none-such"])
def test_a_fan_out_naming_no_deployment_is_refused_before_the_cycle_opens(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fan_out: str
) -> None:
    """`fan_out` typed in the UI ("0", a misspelt deployment) failed the cycle after its refresh,
    with a cycle row left failed and `ObjectNotFound None` as the reason. It is refused first,
    naming the parameter, and no cycle opens."""
    from sqlalchemy import text

    from arrears.importing import Kind, open_source
    from arrears.settings import get_settings
    from arrears.storage import get_engine, migrate
    from arrears.storage.importer import run_import
    from flows.daily_cycle import daily_cycle
    from tests.factories import account_record, write_csv

    url = f"sqlite:///{tmp_path / 'fan-out.db'}"
    monkeypatch.setenv("ARREARS_DATABASE_URL", url)
    get_settings.cache_clear()
    engine = get_engine(url)
    migrate(engine)
    path = write_csv(tmp_path / "a.csv", [account_record(account_id="A-1", oldest_due_date="2026-11-26")])
    run_import(engine, open_source(path, Kind.ACCOUNTS))
    with pytest.raises(ValueError, match=f"fan_out '{fan_out}' names no deployment"):
        daily_cycle(as_of="2026-12-01T16:30:00Z", fan_out=fan_out)
    with engine.connect() as connection:
        assert connection.execute(text("select count(*) from cycle_run")).scalar() == 0


@pytest.mark.parametrize("as_of", ["garbage", "2026-12-01T09:00:00"])
def test_an_as_of_that_is_no_instant_fails_the_run_saying_why(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_of: str
) -> None:
    """An `as_of` typed in the UI that is no instant made the run's name function raise: the run
    stayed Pending on the server for good, randomly named, the reason nowhere in the UI. It
    fails, with the reason as its state's message."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterName

    from arrears.settings import get_settings
    from flows.daily_cycle import daily_cycle, dispatch_outbox

    monkeypatch.setenv("ARREARS_DATABASE_URL", f"sqlite:///{tmp_path / 'as-of.db'}")
    get_settings.cache_clear()
    names = ("daily-cycle", "dispatch")
    wanted = FlowRunFilter(name=FlowRunFilterName(any_=[f"{n} (as_of not an instant)" for n in names]))
    for flow_fn in (daily_cycle, dispatch_outbox):
        with pytest.raises(ValueError, match=r"ISO 8601|UTC offset"):
            flow_fn(as_of=as_of)
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_fn.name])), flow_run_filter=wanted
            )
        states = [r.state for r in runs if r.parameters["as_of"] == as_of]
        assert len(states) == 1 and states[0] is not None and states[0].is_failed()
        assert "ISO 8601" in (states[0].message or "") or "UTC offset" in (states[0].message or "")
