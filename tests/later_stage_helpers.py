"""Helpers for the later-stage tests (promises, plans, reviews, referrals, the segment walks).

`day(engine, as_of)` runs one simulated day: the daily cycle, which refreshes the later stages
(replies, promises, plans, vendor orders), advances, pulls bureau profiles, starts and wakes the
review and referral runs, and dispatches.
"""

import asyncio
import contextvars
import threading
import zlib
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, update

from arrears.clock import business_date, parse_instant
from arrears.importing import Kind, open_source
from arrears.models import Account, AuditEvent, ContactPoint, Plan, Promise, Referral, Review
from arrears.settings import get_settings
from arrears.storage.importer import run_import
from tests.factories import account_record, payment_record, unique_id, write_csv

account_t = Account.__table__  # type: ignore[attr-defined]
audit_t = AuditEvent.__table__  # type: ignore[attr-defined]
plan_t = Plan.__table__  # type: ignore[attr-defined]
promise_t = Promise.__table__  # type: ignore[attr-defined]
review_t = Review.__table__  # type: ignore[attr-defined]
referral_t = Referral.__table__  # type: ignore[attr-defined]
contact_t = ContactPoint.__table__  # type: ignore[attr-defined]


def import_rows(
    engine: Engine,
    tmp_path: Path,
    records: list[dict[str, str]],
    kind: Kind = Kind.ACCOUNTS,
    now: datetime | None = None,
) -> Any:
    path = write_csv(tmp_path / f"{unique_id(kind.value)}.csv", records)
    summary = run_import(engine, open_source(path, kind), now=now)
    assert summary.rejected == 0, summary.first_rejections
    return summary


def us_account(account_id: str, **kw: str) -> dict[str, str]:
    """An Iowa borrower (20-day right to cure), one instalment behind since 30 November 2026."""
    base = {
        "account_id": account_id,
        "jurisdiction": "US-IA",
        "timezone": "America/Chicago",
        "phone": f"(515) 281-{zlib.crc32(account_id.encode()) % 10_000:04d}",
        "oldest_due_date": "2026-11-30",
        "balance": "18450.00",
        "installment_amount": "412.50",
        "past_due_amount": "412.50",
        "vin": "1HGCM82633A004352",
        "vehicle_value": "15000.00",
        "address_line1": "12 Elm Street",
        "city": "Des Moines",
        "state": "IA",
        "postal_code": "50309",
    }
    return account_record(**(base | kw))


def put_in_review(
    engine: Engine, tmp_path: Path, account_id: str, since: str = "2026-12-01T16:00:00Z", **kw: str
) -> None:
    """An account a cycle moved into repossession review at `since`, 825.00 past due."""
    import_rows(
        engine,
        tmp_path,
        [us_account(account_id, past_due_amount="825.00", oldest_due_date="2026-10-01", **kw)],
    )
    with engine.begin() as c:
        c.execute(
            update(account_t)
            .where(account_t.c.account_id == account_id)
            .values(stage="repossession_review", stage_since=at(since), episode=3, days_past_due=61)
        )


def pay(
    engine: Engine,
    tmp_path: Path,
    account_id: str,
    amount: str,
    received_at: str,
    imported_at: str | None = None,
) -> None:
    """A payment file with one payment, imported when it was received unless `imported_at` says
    otherwise (a payment value-dated ahead): the test's timeline, not the wall clock, says what
    the import and each refresh see."""
    import_rows(
        engine,
        tmp_path,
        [payment_record(account_id=account_id, amount=amount, received_at=received_at)],
        Kind.PAYMENTS,
        now=parse_instant(imported_at or received_at),
    )


def reply(engine: Engine, account_id: str, text: str, at: str) -> None:
    """An inbound SMS from the account's number, recorded as the webhook does."""
    from arrears.models import ContactPoint
    from tasks.inbound import record_inbound_sms

    cp = ContactPoint.__table__  # type: ignore[attr-defined]
    with engine.connect() as c:
        number = (
            c.execute(
                select(cp.c.address)
                .join(account_t, account_t.c.borrower_id == cp.c.borrower_id)
                .where(account_t.c.account_id == account_id)
                .order_by(cp.c.is_primary.desc(), cp.c.id)
            )
            .scalars()
            .first()
        )
    result = record_inbound_sms(
        engine,
        address=number,
        text=text,
        at=parse_instant(at),
        provider="sandbox",
        callback_id=unique_id("cb"),
    )
    assert not result.recorded.duplicate


def set_scores(
    engine: Engine, account_id: str, *, ability: float | None = None, willingness: float | None = None
) -> None:
    """Stand in for the bureau pull (ability) or earlier contact (willingness)."""
    with engine.begin() as c:
        c.execute(
            update(account_t)
            .where(account_t.c.account_id == account_id)
            .values(ability=ability, willingness=willingness)
        )


def refresh_later(engine: Engine, as_of: str) -> dict[str, int]:
    """The cycle's refresh step alone (payments, replies, promises, plans, vendor orders, days past due)."""
    from tasks.cycle import refresh

    instant = parse_instant(as_of)
    return refresh.fn(instant, business_date(instant, get_settings().lender_timezone), None)


def day(engine: Engine, as_of: str) -> dict[str, Any]:
    """One simulated day: the daily cycle, with its later-stage steps; `later` gathers their counts."""
    from flows.daily_cycle import daily_cycle

    stats = daily_cycle(as_of=as_of)
    # A rerun of an instant whose cycle finished does nothing: it starts no reviews or referrals.
    later = {
        **stats["refresh"],
        **stats.get("bureau", {}),
        **stats.get("reviews", {}),
        **stats.get("referrals", {}),
    }
    return {"cycle": stats, "later": later}


def account(engine: Engine, account_id: str) -> Any:
    with engine.connect() as c:
        return c.execute(select(account_t).where(account_t.c.account_id == account_id)).one()


def events(engine: Engine, account_id: str, kind: str | None = None) -> list[Any]:
    with engine.connect() as c:
        q = select(audit_t).where(audit_t.c.account_id == account_id).order_by(audit_t.c.at, audit_t.c.id)
        if kind:
            q = q.where(audit_t.c.kind == kind)
        return list(c.execute(q).all())


def rows(engine: Engine, table: Any, account_id: str) -> list[Any]:
    with engine.connect() as c:
        return list(
            c.execute(select(table).where(table.c.account_id == account_id).order_by(table.c.id)).all()
        )


def in_thread(fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, **kwargs: Any) -> Future[Any]:
    """Run an async flow in its own thread with this context (the Prefect test harness's settings),
    so the test can resume it through the API while it waits."""
    future: Future[Any] = Future()
    context = contextvars.copy_context()

    def target() -> None:
        try:
            future.set_result(context.run(asyncio.run, fn(*args, **kwargs)))
        except BaseException as error:  # handed to the test through the future
            future.set_exception(error)

    threading.Thread(target=target, daemon=True).start()
    return future


def wait_paused(flow_run_id: Any, key: str, timeout: float = 60) -> Any:
    """Poll until the flow run is paused (or suspended) under `key`; returns the run."""
    import time

    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if run.state and run.state.is_paused() and run.state.state_details.pause_key == key:
                return run
            if run.state and run.state.is_final():
                raise AssertionError(
                    f"run ended {run.state.name} before pausing on {key}: {run.state.message}"
                )
            time.sleep(0.3)
    raise AssertionError(f"run {flow_run_id} did not pause on {key} within {timeout}s")


def review_run_id(engine: Engine, account_id: str, timeout: float = 60) -> str:
    """The flow run recorded on the account's review, once the run has opened it."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r.flow_run_id for r in rows(engine, review_t, account_id) if r.flow_run_id]
        if found:
            return found[-1]
        time.sleep(0.2)
    raise AssertionError(f"no review run recorded for {account_id}")


def at(text: str) -> datetime:
    return parse_instant(text)


_SERVE = """
from prefect import serve
from deployments.serve import deployments
serve(*[d for d in deployments() if d.name in ("review", "referral")])
"""


def drop_queued_runs() -> int:
    """Delete every flow run still scheduled or pending on the session's Prefect server; how many.

    The server outlives each test: a run another test queued and never ran (a reply's
    `account-lifecycle` run, say) would be picked up by the next test that serves that deployment,
    and run against that test's database (the fan-out test's cycle once found an account it had
    not advanced already messaged). The test that queues such a run drops it; the fan-out test
    calls this before it serves."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    waiting = FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING])
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=waiting)))
        for run in runs:
            client.delete_flow_run(run.id)
    return len(runs)


class Served:
    """`repossession-review/review` and `legal-referral/referral` served by a runner in another
    process, against the harness's Prefect server and the test's database."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        import os
        import subprocess
        import sys

        from prefect.settings import PREFECT_API_URL

        full = {
            **os.environ,
            **env,
            "PREFECT_API_URL": PREFECT_API_URL.value(),
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
        self.log = cwd / f"{unique_id('serve')}.log"
        self._out = self.log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-c", _SERVE], env=full, cwd=cwd, stdout=self._out, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 120) -> None:
        import time

        from prefect.client.orchestration import get_client

        deadline = time.monotonic() + timeout
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"serve exited: {self.log.read_text()[-3000:]}")
                try:
                    client.read_deployment_by_name("repossession-review/review")
                    client.read_deployment_by_name("legal-referral/referral")
                    return
                except Exception:  # not registered yet
                    time.sleep(0.5)
        raise AssertionError("the deployments were not registered in time")

    def busy(self) -> bool:
        """Whether the runner has a flow-run process alive (a suspended run holds none)."""
        import psutil

        return any(
            p.is_running() and p.status() != psutil.STATUS_ZOMBIE
            for p in psutil.Process(self.process.pid).children(recursive=True)
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except Exception:
            self.process.kill()
        self._out.close()


def wait_state(flow_run_id: Any, predicate: Callable[[Any], bool], what: str, timeout: float = 90) -> Any:
    """Poll the run until `predicate(state)` holds; returns the run."""
    import time

    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and predicate(run.state):
                return run
            time.sleep(0.3)
    raise AssertionError(f"run {flow_run_id} never reached {what}; last state {run.state}")
