"""Schedules: `arrears serve` on a real Prefect server, and prefect.yaml for work pools."""

import asyncio
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prefect import Flow

from arrears.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_prefect_yaml_entrypoints_are_our_flows_and_schedules_match_settings() -> None:
    """Every prefect.yaml deployment points at a flow of ours; the daily cron and zone are the settings' defaults."""
    spec = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    names = set()
    for deployment in spec["deployments"]:
        path, name = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert isinstance(getattr(module, name), Flow), deployment["entrypoint"]
        names.add(deployment["name"])
    daily = next(d for d in spec["deployments"] if d["name"] == "daily")
    defaults = Settings()
    assert daily["schedules"] == [{"cron": defaults.cycle_cron, "timezone": defaults.lender_timezone}]
    assert {"daily", "outbox", "account"} <= names


def test_serve_registers_the_daily_cycle_with_the_lenders_zone(prefect_harness: None, tmp_path: Path) -> None:
    """`arrears serve` against a Prefect server creates the daily deployment on a cron in the lender's zone."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "ARREARS_LENDER_TIMEZONE": "America/Chicago",
        "ARREARS_CYCLE_CRON": "30 7 * * 1-5",
        "ARREARS_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
    }
    process = subprocess.Popen([sys.executable, "-m", "deployments.cli", "serve"], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    async def find() -> object:
        async with get_client() as client:
            for _ in range(120):
                try:
                    return await client.read_deployment_by_name("daily-cycle/daily")
                except Exception:  # not registered yet
                    if process.poll() is not None:
                        break
                    await asyncio.sleep(0.5)
        pytest.fail(f"serve did not register the deployment: {process.stdout.read().decode() if process.stdout else ''}")

    try:
        deployment = asyncio.run(find())
    finally:
        process.terminate()
        process.wait(timeout=30)
    schedule = deployment.schedules[0].schedule  # type: ignore[attr-defined]
    assert (schedule.cron, schedule.timezone) == ("30 7 * * 1-5", "America/Chicago")


