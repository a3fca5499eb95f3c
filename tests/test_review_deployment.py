"""A review under a served deployment: suspended through the cure period holding no process,
re-run from the top on each resume without repeating a step, decided through Prefect's API."""

import json
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import Engine, update

from tests.later_stage_helpers import (
    Served,
    account_t,
    at,
    events,
    import_rows,
    review_t,
    rows,
    us_account,
    wait_state,
)

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


@pytest.fixture
def served(
    sqlite_engine: Engine,
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    letters_sandbox: Any,
) -> Any:
    from arrears.settings import get_settings

    monkeypatch.setenv("ARREARS_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    env = {
        "ARREARS_DATABASE_URL": sqlite_url,
        "ARREARS_HOME": str(tmp_path / "home"),
        "ARREARS_LETTERS_BASE_URL": letters_sandbox.base_url,
        "ARREARS_LETTERS_CREDENTIALS": json.dumps(letters_sandbox.credentials),
    }
    runner = Served(tmp_path, env)
    try:
        runner.wait_ready()
        yield runner
    finally:
        runner.stop()


def _suspended(key: str) -> Any:
    return lambda s: s.is_paused() and s.name == "Suspended" and s.state_details.pause_key == key


def test_suspended_review_is_woken_after_the_cure_period_and_decided_by_cli(
    served: Served, sqlite_engine: Engine, sqlite_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """The cycle starts one run on the deployment; it suspends for the Iowa cure period with no
    process alive, is woken by the cycle after it, suspends again for the decision, and
    `arrears review decide` resumes it to completion: the notice and the opening are recorded
    once despite two re-runs from the top."""
    from typer.testing import CliRunner

    from deployments.cli import app
    from flows.repossession_review import start_reviews

    engine = sqlite_engine
    import_rows(
        engine, tmp_path, [us_account("A-D1", past_due_amount="825.00", oldest_due_date="2026-10-01")]
    )
    with engine.begin() as c:
        c.execute(
            update(account_t)
            .where(account_t.c.account_id == "A-D1")
            .values(stage="repossession_review", stage_since=at("2026-12-01T16:00:00Z"), episode=3)
        )

    first = start_reviews(at("2026-12-01T17:00:00Z"), "2026-12-01T17:00:00Z")
    assert (first["reviews_opened"], first["cure_notices"], first["review_runs_started"]) == (1, 1, 1)
    [review] = rows(engine, review_t, "A-D1")
    run_id = UUID(review.flow_run_id)
    wait_state(run_id, _suspended("cure-wait-1"), "suspended for the cure period")
    deadline = time.monotonic() + 30
    while served.busy() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not served.busy(), "a suspended review must hold no process"

    [notice] = letters_sandbox.letters()  # mailed the day it was written: the period counts from it
    letters_sandbox.advance(notice["id"], "mailed", at="2026-12-01T17:00:00Z")
    again = start_reviews(at("2026-12-02T17:00:00Z"), "2026-12-02T17:00:00Z")
    assert (again["review_runs_started"], again["review_runs_woken"]) == (0, 0)  # idempotent, nothing due yet

    woken = start_reviews(at("2026-12-25T17:00:00Z"), "2026-12-25T17:00:00Z")
    assert woken["review_runs_woken"] == 1
    wait_state(run_id, _suspended("decision"), "suspended for the decision")

    out = CliRunner().invoke(
        app,
        [
            "review",
            "decide",
            "A-D1",
            "--decision",
            "repossess",
            "--reviewer",
            "Ana Ruiz",
            "--reason",
            "vehicle located, no answer",
            "--database",
            sqlite_url,
            "--as-of",
            "2026-12-25T18:00:00Z",
        ],
    )
    assert out.exit_code == 0, out.output
    assert "resumed with the decision" in out.output
    wait_state(run_id, lambda s: s.is_completed(), "completed")

    kinds = [
        e.kind
        for e in events(engine, "A-D1")
        if e.kind in ("review", "cure_notice", "decision", "vendor_order")
    ]
    assert kinds == ["review", "cure_notice", "decision", "vendor_order"]
    [review] = rows(engine, review_t, "A-D1")
    assert (review.decision, review.reviewer) == ("repossess", "Ana Ruiz")
