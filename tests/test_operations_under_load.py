"""Prefect operations under the conditions operations meet: a decision arriving for an account
that has left review, runs resumed by someone else while the cycle wakes them, and a portfolio's
worth of paused review runs."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.later_stage_helpers import (
    at,
    events,
    in_thread,
    pay,
    put_in_review,
    review_run_id,
    review_t,
    rows,
    wait_paused,
)

CA = {"jurisdiction": "US-CA", "timezone": "America/Los_Angeles"}  # no notice owed: the form at once


@pytest.fixture
def later_db(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, sms_sandbox: Any, letters_sandbox: Any
) -> Engine:
    from arrears.settings import get_settings

    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    return engine


def _resume_as_the_ui(run_id: str, run_input: dict[str, Any]) -> str:
    """POST /flow_runs/{id}/resume with the form's values, as the UI's Resume button does."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return str(client.resume_flow_run(uuid.UUID(run_id), run_input=run_input).status.value)


@pytest.mark.usefixtures("prefect_harness")
def test_a_form_decision_for_an_account_that_paid_and_left_review_is_not_recorded(
    later_db: Engine, tmp_path: Path
) -> None:
    """The borrower pays the whole amount to cure while the run waits for its reviewer; the
    payment's account run cures the account (the review stays open until the next cycle). The
    reviewer then approves the repossession in the form: nothing is recorded (the CLI refuses the
    same decision), no vendor order is placed, the review closes and the run ends Cancelled."""
    from prefect.exceptions import CancelledRun

    from flows.account_lifecycle import account_lifecycle
    from flows.repossession_review import repossession_review

    put_in_review(later_db, tmp_path, "A-PO1", **CA)
    running = in_thread(repossession_review, "A-PO1", "2026-12-01T17:00:00Z")
    run_id = review_run_id(later_db, "A-PO1")
    wait_paused(run_id, "decision")
    pay(later_db, tmp_path, "A-PO1", "825.00", "2026-12-02T15:00:00Z")
    account_lifecycle("A-PO1", as_of="2026-12-02T16:00:00Z", reason="payment")
    answer = {"decision": "repossess", "reviewer": "Ana Ruiz", "reason": "no contact"}
    assert _resume_as_the_ui(run_id, answer) == "ACCEPT"
    with pytest.raises(CancelledRun):
        running.result(timeout=60)
    [review] = rows(later_db, review_t, "A-PO1")
    assert review.decision is None and (review.reason or "").startswith("closed: account is now")
    assert events(later_db, "A-PO1", "decision") == []
    assert events(later_db, "A-PO1", "vendor_order") == []


def _paused_copy(run: Any, key: str, parameters: dict[str, Any] | None = None) -> Any:
    """The run as a cycle read it a moment ago: paused under `key`."""
    from prefect.states import Paused

    update: dict[str, Any] = {"state": Paused(pause_key=key)}
    if parameters is not None:
        update["parameters"] = parameters
    return run.model_copy(update=update)


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_resumed_by_a_reviewer_while_the_cycle_wakes_the_others_does_not_fail_the_cycle(
    later_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two reviews decided on the command line while their runs could not be resumed; the cycle
    reads both runs as paused, and one is resumed (by the UI's form, `arrears review decide`) before
    the cycle gets to it. The cycle wakes the other and goes on: it raised `NotPausedError`, which
    failed the daily cycle after its advance, before any message was sent."""
    import flows.repossession_review as review_flow
    from tasks.review import decide_review

    running = {}
    for account_id in ("A-PO2", "A-PO3"):
        put_in_review(later_db, tmp_path, account_id, **CA)
        running[account_id] = in_thread(review_flow.repossession_review, account_id, "2026-12-01T17:00:00Z")
    runs = {a: review_run_id(later_db, a) for a in running}
    for account_id, run_id in runs.items():
        wait_paused(run_id, "decision")
        decide_review(
            later_db,
            account_id=account_id,
            decision="legal",
            reviewer="Bo Li",
            reason="refuses contact",
            at=at("2026-12-02T17:00:00Z"),
        )
    read = review_flow.paused_runs

    def racing(flow_name: str) -> list[Any]:
        found = read(flow_name)
        decision = {"decision": "legal", "reviewer": "Bo Li", "reason": "refuses contact"}
        assert _resume_as_the_ui(runs["A-PO2"], decision) == "ACCEPT"
        return found

    monkeypatch.setattr(review_flow, "paused_runs", racing)
    woken, cancelled = review_flow.wake_reviews(at("2026-12-02T18:00:00Z"), "2026-12-02T18:00:00Z")
    assert (woken, cancelled) == (1, 0)
    assert [running[a].result(timeout=60)["decision"] for a in ("A-PO2", "A-PO3")] == ["legal", "legal"]


@pytest.mark.usefixtures("prefect_harness")
def test_a_referral_run_that_is_no_longer_paused_is_skipped_by_the_wake(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cycle read a referral run as paused on its court; it has moved on since (a person
    resumed it in the UI): the wake skips it rather than failing the daily cycle."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Completed

    import flows.legal_referral as referral_flow

    @flow(name="legal-referral-stand-in")
    def stand_in() -> None:
        """Never run: a flow for the run the test creates."""

    with get_client(sync_client=True) as client:
        moved_on = client.create_flow_run(stand_in, state=Completed())
    read_as_paused = _paused_copy(moved_on, "court-wait-1", {"account_id": "A-PO4"})
    monkeypatch.setattr(referral_flow, "paused_runs", lambda flow_name: [read_as_paused])
    assert referral_flow._wake({"A-PO4"}, None) == 0


def test_the_reviews_of_a_portfolios_paused_runs_are_read_in_one_query(sqlite_engine: Engine) -> None:
    """The cycle looks up the review of every paused review run at once (`wake_reviews`): a
    million accounts open about 250,000 reviews. Each run id was bound as its own parameter, past
    what SQLite (250,000 here) and PostgreSQL (65,535) take: "too many SQL variables" failed the
    cycle."""
    from arrears.storage.reviews import reviews_by_run

    ids = [str(uuid.uuid4()) for _ in range(260_000)]
    with sqlite_engine.connect() as connection:
        assert reviews_by_run(connection, ids) == {}


@pytest.mark.usefixtures("prefect_harness")
def test_the_outbox_run_closes_the_row_of_a_killed_cycle(later_db: Engine) -> None:
    """A cycle killed mid-run leaves its row `running`; the next `arrears dispatch` (under `arrears
    serve`, the outbox run a quarter hour later) closes it as crashed, as README promises, instead
    of it showing as running, and naming a dead process to a second start, until the next day's cycle."""
    from sqlalchemy import select

    from arrears.storage.cycle_runs import start_cycle
    from arrears.storage.tables import cycle_run
    from flows.daily_cycle import dispatch_outbox

    killed_at = at("2026-12-01T16:00:00Z")
    with later_db.begin() as c:
        killed = start_cycle(c, as_of=killed_at, business_date=killed_at.date(), owner="gone:4242")
    counts = dispatch_outbox(as_of="2026-12-01T16:15:00Z")
    with later_db.connect() as c:
        row = c.execute(select(cycle_run).where(cycle_run.c.id == killed)).one()
    assert (row.status, row.running) == ("crashed", None)
    assert counts["crashed_cycles_closed"] == 1


_HOLD_LOCK = """
import sys, time
from arrears.storage import get_engine
from arrears.storage.cycle_runs import exclusive_run
with exclusive_run(get_engine(sys.argv[1]), "dispatch"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


@contextmanager
def _lock_held(db_url: str, *, seconds: float) -> Iterator[None]:
    """The database's run lock held by another process for `seconds` (or until the block ends)."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, db_url, str(seconds)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()  # a holder that slept its time out has exited: nothing to kill
        holder.wait(timeout=60)


@pytest.mark.usefixtures("prefect_harness")
def test_a_scheduled_cycle_waits_for_the_outbox_run_holding_the_lock(
    later_db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbox run of `arrears serve` (every quarter hour, minutes long at portfolio scale)
    holds the run lock when the cycle's cron fires: the cycle waits for it, then runs. It failed
    at once with `CycleRunning`, the day's cycle not run and the on-call paged."""
    import flows.daily_cycle as cycle_flow
    from tests.later_stage_helpers import import_rows, us_account

    import_rows(later_db, tmp_path, [us_account("A-PO5")])
    monkeypatch.setattr(cycle_flow, "LOCK_POLL_SECONDS", 0.2)
    with _lock_held(db_url, seconds=3):
        stats = cycle_flow.daily_cycle(as_of="2026-12-01T16:00:00Z")
    assert stats["cycle_id"] and stats["advance"]["accounts"] == 1


@pytest.mark.usefixtures("prefect_harness")
def test_an_outbox_run_finding_a_cycle_running_ends_completed_having_done_nothing(
    later_db: Engine, db_url: str, tmp_path: Path
) -> None:
    """The quarter-hourly outbox run of `arrears serve` while the cycle runs (minutes at portfolio
    scale): it does nothing and says why, Completed; it was a Failed run every quarter hour."""
    from flows.daily_cycle import dispatch_outbox

    with _lock_held(db_url, seconds=30):
        state = dispatch_outbox(as_of="2026-12-01T16:00:00Z", return_state=True)
    assert state.is_completed()
    assert list(state.result()) == ["skipped"] and "running" in state.result()["skipped"]
