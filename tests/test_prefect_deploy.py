"""`prefect deploy` of deployments/prefect.yaml on a real Prefect server, as an operator runs it:
the pool with the bound of `arrears serve`, every deployment with its limit and schedules (the
daily cron and the zone from the settings), and the automations of its build step; deploying
again changes nothing but what drifted."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # no stubs installed

ROOT = Path(__file__).resolve().parents[1]
SPEC = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
BLOCK = ("custom-webhook", "deploy-test")


def _run(env: dict[str, str], *command: str) -> None:
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"


@pytest.fixture
def operator_env(prefect_harness: None) -> Iterator[dict[str, str]]:
    """What an operator's shell has: the server, a notification block, this checkout first on the
    path. Afterwards the server is left as it was: the session's other tests serve deployments of
    the same names, and a scheduled outbox run of this pool would be theirs to start."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from deployments.automations import NOTIFICATION_BLOCK_ENV, PREFIX
    from deployments.work_pool import POOL

    CustomWebhookNotificationBlock(name="ops", url="http://127.0.0.1:9/unused").save(BLOCK[1], overwrite=True)
    yield {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PYTHONPATH": str(ROOT),  # not the installed checkout the venv's .pth names
        NOTIFICATION_BLOCK_ENV: "/".join(BLOCK),
        "ARREARS_PROJECT_DIR": str(ROOT),
    }
    with get_client(sync_client=True) as client:
        for deployment in _in_pool(client, POOL):
            client.delete_deployment(deployment.id)  # and its scheduled runs
        client.delete_work_pool(POOL)
        for automation in client.read_automations():
            if automation.name.startswith(PREFIX):
                client.delete_automation(automation.id)
        client.delete_block_document(client.read_block_document_by_name(BLOCK[1], BLOCK[0]).id)


def _in_pool(client: Any, pool: str) -> list[Any]:
    from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName

    return list(
        client.read_deployments(work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])))
    )


def _declared_schedules(declared: dict[str, Any], cron: str, zone: str) -> list[tuple[Any, ...]]:
    """The schedules prefect.yaml declares, its placeholders filled as the build step fills them."""
    from prefect.utilities.templating import apply_values

    from deployments.schedules import FURNISHING_CRON

    outputs = {"schedules": {"cycle_cron": cron, "furnishing_cron": FURNISHING_CRON, "timezone": zone}}
    return sorted(
        ("cron", s["cron"], s["timezone"]) if "cron" in s else ("interval", float(s["interval"]))
        for s in apply_values(declared.get("schedules") or [], outputs)
    )


def _server_schedules(deployment: Any) -> list[tuple[Any, ...]]:
    from prefect.client.schemas.schedules import CronSchedule

    return sorted(
        ("cron", s.schedule.cron, s.schedule.timezone)
        if isinstance(s.schedule, CronSchedule)
        else ("interval", s.schedule.interval.total_seconds())
        for s in deployment.schedules
    )


def _assert_deployed(client: Any, cron: str, zone: str) -> None:
    """The server holds exactly what prefect.yaml and deployments/ declare, one of each, the daily
    cycle on `cron` in `zone`."""
    from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName

    from deployments.automations import PREFIX, automations
    from deployments.limits import SERVE_LIMIT
    from deployments.serve import OUTBOX_INTERVAL
    from deployments.work_pool import POOL, POOL_TYPE

    [pool] = client.read_work_pools(work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[POOL])))
    assert (pool.type, pool.concurrency_limit) == (POOL_TYPE, SERVE_LIMIT)

    declared = {d["name"]: d for d in SPEC["deployments"]}
    on_server = _in_pool(client, POOL)
    assert sorted(d.name for d in on_server) == sorted(declared)
    for deployment in on_server:
        spec = declared[deployment.name]
        assert deployment.work_pool_name == spec["work_pool"]["name"] == POOL
        # `concurrency_limit` of a read deployment is always None (deprecated): the limit is here.
        assert deployment.global_concurrency_limit.limit == spec["concurrency_limit"], deployment.name
        assert _server_schedules(deployment) == _declared_schedules(spec, cron, zone), deployment.name
    daily, outbox = (next(d for d in on_server if d.name == n) for n in ("daily", "outbox"))
    assert [(s.schedule.cron, s.schedule.timezone) for s in daily.schedules] == [(cron, zone)]
    assert [s.schedule.interval for s in outbox.schedules] == [OUTBOX_INTERVAL]

    block_id = client.read_block_document_by_name(BLOCK[1], BLOCK[0]).id
    wanted = automations(block_id)
    assert sorted(a.name for a in client.read_automations() if a.name.startswith(PREFIX)) == sorted(
        a.name for a in wanted
    )
    for automation in wanted:
        [applied] = client.read_automations_by_name(automation.name)
        assert (applied.trigger.expect, applied.trigger.match, applied.trigger.match_related) == (
            automation.trigger.expect,
            automation.trigger.match,
            automation.trigger.match_related,
        )
        assert [a.block_document_id for a in applied.actions] == [block_id]


def test_prefect_deploy_on_a_new_server_leaves_the_pool_deployments_and_automations(
    operator_env: dict[str, str],
) -> None:
    """On a server with no pool: `python -m deployments.work_pool`, then the real `prefect deploy
    --all` (its build steps included), twice. The first deploys the settings' default schedule; the
    second, after the operator set a New York lender's cron and zone, replaces it, resets a pool
    limit someone changed, and duplicates nothing."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    from arrears.settings import Settings
    from deployments.work_pool import POOL

    deploy = (
        str(Path(sys.executable).parent / "prefect"),
        "--no-prompt",
        "deploy",
        "--prefect-file",
        "deployments/prefect.yaml",
        "--all",
    )
    with get_client(sync_client=True) as client, pytest.raises(ObjectNotFound):
        client.read_work_pool(POOL)
    _run(operator_env, sys.executable, "-m", "deployments.work_pool")
    _run(operator_env, *deploy)
    defaults = Settings()
    with get_client(sync_client=True) as client:
        _assert_deployed(client, defaults.cycle_cron, defaults.lender_timezone)
        client.update_work_pool(POOL, WorkPoolUpdate(concurrency_limit=3))
    new_york = {"ARREARS_CYCLE_CRON": "30 7 * * 1-5", "ARREARS_LENDER_TIMEZONE": "America/New_York"}
    _run(operator_env | new_york, *deploy)
    with get_client(sync_client=True) as client:
        _assert_deployed(client, "30 7 * * 1-5", "America/New_York")
