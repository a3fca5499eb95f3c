"""Flow runs that wait (DESIGN §7): a review on its reviewer, a referral on its court.

The run's side: `follow` takes a step, and while the step has no outcome yet waits for a `Wake`
under numbered keys (`cure-wait-1`, `cure-wait-2`, …, or `court-wait-…`), so a run re-started
from the top replays the wakes it already got, in order, and goes on where it stopped. A wait
is a suspension under a deployment (no process held) and a pause in the process without one.

The cycle's side: start runs of a deployment in bounded batches that never fail the cycle
(`start_runs`), find the runs that died or never started (`dead_runs`), find runs by state
(`runs_in`, `paused_runs`, `live_runs`) and read what a paused run waits for (`pause_key`).

A suspension is not an error: Prefect's engine logs "Finished in state Suspended" at ERROR, and
at portfolio scale that line was nearly every log line on the server; `_SuspensionIsInfo`
lowers it to INFO in every process that imports this module (the served review and referral
runs do).
"""

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from prefect import get_run_logger
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.context import FlowRunContext
from prefect.flow_runs import apause_flow_run, asuspend_flow_run
from prefect.input import RunInput
from pydantic import Field

from arrears.clock import parse_instant
from arrears.masking import mask_text
from flows._prefect import synced
from tasks.logs import run_logger

__all__ = [
    "RunRequest",
    "Started",
    "Wake",
    "cancel_each",
    "cycle_link",
    "cycle_run_id",
    "cycle_tags",
    "dead_runs",
    "deployment_exists",
    "follow",
    "later_of",
    "live_runs",
    "now_of",
    "pause_key",
    "paused_runs",
    "resume_each",
    "runs_in",
    "start_run",
    "start_runs",
    "ui_url",
    "wait_for",
]

# Without a deployment a waiting run keeps its process: bounded, so a forgotten demo run ends.
PAUSE_TIMEOUT_SECONDS = 24 * 3600
POLL_SECONDS = 2  # how often a paused run asks whether it was resumed
PAGE = 200  # flow runs read per request
# Starting runs (DESIGN §7): a batch of runs is looked up by key and created, a few at a time,
# then bound to its reviews before the next batch; a server that refuses (503, out of database
# connections) defers the rest to the next cycle instead of failing this one.
START_BATCH = 100
START_CONCURRENCY = 2
RETRY_PAUSE_SECONDS = 5.0  # first pause after the server refused a batch; doubles up to a minute
START_BUDGET_SECONDS = 300.0  # past this, the rest waits for the next cycle: the cycle goes on
# A run still Pending (Submitting) this long after its last state never started: its process died.
STUCK_AFTER = timedelta(minutes=15)

R = TypeVar("R", bound=RunInput)
S = TypeVar("S")
T = TypeVar("T")


class Wake(RunInput):
    """A nudge to look again: the cure period has ended, or the account has changed."""

    as_of: str | None = Field(
        default=None, description="The instant the waker ran as of (ISO 8601 with offset); empty means now."
    )


def now_of(as_of: str | None) -> datetime:
    return parse_instant(as_of) if as_of else datetime.now(UTC)


def later_of(now: datetime, as_of: str | None) -> datetime:
    return max(now, parse_instant(as_of)) if as_of else datetime.now(UTC)


def _deployed() -> bool:
    context = FlowRunContext.get()
    return bool(context and context.flow_run and context.flow_run.deployment_id)


async def wait_for(model: type[R], *, key: str) -> R:
    """Wait for `model`'s input under `key` (lowercase letters, digits and dashes: PREFECT.md):
    suspended under a deployment, paused in this process without one."""
    if _deployed():
        return await asuspend_flow_run(wait_for_input=model, key=key, timeout=None)
    return await apause_flow_run(
        wait_for_input=model, key=key, timeout=PAUSE_TIMEOUT_SECONDS, poll_interval=POLL_SECONDS
    )


async def follow(
    kind: str,
    state: S,
    now: datetime,
    *,
    step: Callable[[S, datetime], tuple[S, T | None]],
    reload: Callable[[S], S],
) -> T:
    """Take `step` until it gives an outcome. In between, wait for a `Wake` keyed
    `{kind}-wait-1`, `{kind}-wait-2`, …, move `now` on to the waker's instant and `reload`
    the state (what changed meanwhile is in our tables, never in the run)."""
    waits = 0
    while True:
        state, outcome = step(state, now)
        if outcome is not None:
            return outcome
        waits += 1
        wake = await wait_for(Wake, key=f"{kind}-wait-{waits}")
        try:
            now = later_of(now, wake.as_of)
        except ValueError as error:  # typed into the UI's form, which takes any text: not a reason to fail
            logger = get_run_logger()
            logger.warning("%s-wait-%d: as_of ignored, looked again as of now: %s", kind, waits, error)
            now = later_of(now, None)
        state = reload(state)


class _SuspensionIsInfo(logging.Filter):
    """Log "Finished in state Suspended/Paused" at INFO: a run waiting for a person is not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and str(record.msg).startswith(
            ("Finished in state Suspended", "Finished in state Paused")
        ):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


if not any(isinstance(f, _SuspensionIsInfo) for f in logging.getLogger("prefect.flow_runs").filters):
    logging.getLogger("prefect.flow_runs").addFilter(_SuspensionIsInfo())


# -- the cycle's side -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunRequest:
    """One run to start: its idempotency key (namespaced by the installation id), name,
    parameters and tags."""

    key: str
    name: str
    parameters: dict[str, Any]
    tags: tuple[str, ...] = ()


@dataclass(slots=True)
class Started:
    """What `start_runs` did, counted truthfully: `runs` maps each request's key to the run
    that now works on it; `created` runs are new, `found` ones an earlier attempt had created
    (their binding was lost with it); `deferred` requests got no run and wait for the next cycle."""

    runs: dict[str, str] = field(default_factory=dict)
    created: int = 0
    found: int = 0
    deferred: int = 0
    error: str | None = None


def cycle_run_id() -> str | None:
    """The flow run we are in (the cycle's, when the cycle starts runs), or None outside a run."""
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


def cycle_tags(business_date: str, cycle_id: int | None) -> list[str]:
    """Tags that trace a run to the cycle that started it: the business date, our cycle id and,
    inside the cycle's flow run, that run's id (the UI filters runs by a tag when it is clicked)."""
    tags = [f"cycle:{business_date}"]
    if cycle_id is not None:
        tags.append(f"cycle-id:{cycle_id}")
    if run_id := cycle_run_id():
        tags.append(f"cycle-run:{run_id}")
    return tags


def cycle_link(cycle_run: str | None) -> str:
    """A markdown line linking a review or referral to the cycle run that started it (a link
    when a UI is configured); empty when it was started outside a cycle. A tag only filters: this
    is the way back to the cycle's own page, its logs and its artifacts."""
    if not cycle_run:
        return ""
    url = ui_url(cycle_run)
    run = f"[{cycle_run}]({url})" if url else f"`{cycle_run}`"
    return (
        f"Started by flow run {run}: the daily cycle's, or the outbox run's for a start the cycle deferred."
    )


def ui_url(flow_run_id: str) -> str | None:
    """The run's page in the Prefect UI, when a UI is configured (a server, not ephemeral mode)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    base = PREFECT_UI_URL.value()
    if not base or not PREFECT_API_URL.value():
        return None
    return f"{str(base).rstrip('/')}/runs/flow-run/{flow_run_id}"


def start_runs(
    deployment: str,
    requests: Sequence[RunRequest],
    *,
    bind: Callable[[dict[str, str]], None],
    batch: int = START_BATCH,
    budget_seconds: float | None = None,
) -> Started:
    """Start a run of `deployment` for each request, batch by batch, calling `bind(key -> run
    id)` after each batch so a crash later loses no binding. A run already created under a key
    is found, not created again. Never raises for the server's sake: when it refuses, the
    requests left are `deferred` (the next cycle starts them) and `error` says why. The budget
    is `START_BUDGET_SECONDS` unless given (read at call time, so a test can shorten it)."""
    from prefect.exceptions import ObjectNotFound
    from prefect.utilities.asyncutils import run_coro_as_sync

    started = Started()
    budget = START_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    deadline = time.monotonic() + budget
    pending = list(requests)
    pause = RETRY_PAUSE_SECONDS
    while pending and time.monotonic() < deadline:
        chunk, pending = pending[:batch], pending[batch:]
        try:
            # run_coro_as_sync's result type is left unsolved by mypy ("R?"): name it.
            outcome: _Batch | None = run_coro_as_sync(_start_batch(deployment, chunk))
            found, created, refused = outcome or ({}, {}, [])
        except ObjectNotFound as error:  # no such deployment: nothing to retry
            started.error = f"{type(error).__name__}: {error}"
            pending = chunk + pending
            break
        except Exception as error:  # the server refused or is gone: the batch is retried
            found, created, refused = {}, {}, [(r, error) for r in chunk]
        runs = found | created
        if runs:
            bind(runs)  # before the next batch: a crash from here on loses no binding
            started.runs |= runs
        started.found += len(found)
        started.created += len(created)
        if refused:
            # An overloaded server (503, out of database connections): back off, then retry
            # the refused requests (their keys make a retry safe) while the budget lasts.
            started.error = f"{type(refused[0][1]).__name__}: {refused[0][1]}"
            pending = [r for r, _ in refused] + pending
            if time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)
            pause = min(2 * pause, 60.0)
        else:
            pause = RETRY_PAUSE_SECONDS
    started.deferred = len(pending)
    if not started.deferred:
        started.error = None  # every refusal was retried successfully
    elif started.error is None:
        started.error = f"start budget of {budget:.0f}s spent"
    return started


_Batch = tuple[dict[str, str], dict[str, str], list[tuple[RunRequest, BaseException]]]


async def _start_batch(deployment: str, chunk: list[RunRequest]) -> _Batch:
    """One batch: (runs found under their key, runs created, the requests the server refused)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterIdempotencyKey

    gate = asyncio.Semaphore(START_CONCURRENCY)
    async with get_client() as client:
        deployment_id = (await client.read_deployment_by_name(deployment)).id
        existing = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                idempotency_key=FlowRunFilterIdempotencyKey(any_=[r.key for r in chunk])
            ),
            limit=len(chunk),
        )
        found = {str(r.idempotency_key): str(r.id) for r in existing}
        todo = [r for r in chunk if r.key not in found]

        async def create(request: RunRequest) -> FlowRun:
            async with gate:
                return await client.create_flow_run_from_deployment(
                    deployment_id,
                    parameters=request.parameters,
                    name=request.name,
                    tags=list(request.tags),
                    idempotency_key=request.key,
                )

        made = await asyncio.gather(*(create(r) for r in todo), return_exceptions=True)
    created = {r.key: str(m.id) for r, m in zip(todo, made, strict=True) if isinstance(m, FlowRun)}
    return found, created, [(r, m) for r, m in zip(todo, made, strict=True) if isinstance(m, BaseException)]


def dead_runs(run_ids: Sequence[str], *, now: datetime | None = None) -> set[str]:
    """Of these runs, those that will never finish their work: ended without completing (failed,
    crashed, cancelled), missing from the server, or stuck Pending (Submitting) for longer than
    `STUCK_AFTER` (marked Crashed here, so that no runner picks them up later)."""
    if not run_ids:
        return set()
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.states import Crashed

    now = now or datetime.now(UTC)
    dead: set[str] = set()
    with get_client(sync_client=True) as client:
        for start in range(0, len(run_ids), PAGE):
            ids = list(run_ids[start : start + PAGE])
            seen: set[str] = set()
            for run in client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(r) for r in ids])), limit=PAGE
            ):
                seen.add(str(run.id))
                state = run.state
                if state is None:
                    continue
                if state.is_final() and not state.is_completed():
                    dead.add(str(run.id))
                elif (
                    state.is_pending() and state.timestamp is not None and now - state.timestamp > STUCK_AFTER
                ):
                    client.set_flow_run_state(
                        run.id, Crashed(message="never started: replaced by the daily cycle"), force=True
                    )
                    dead.add(str(run.id))
            dead |= set(ids) - seen
    return dead


def deployment_exists(name: str) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(name)
            return True
        except ObjectNotFound:
            return False


def start_run(
    deployment: str, *, parameters: dict[str, Any], name: str, tags: list[str], key: str
) -> FlowRun:
    """Start one run of `deployment`, named from the start and not as a subflow (so it may
    suspend), without waiting for it. The same `key` gives back the run it already started."""
    from prefect.deployments import run_deployment

    # From sync code, as the cycle calls it, run_deployment returns the run itself.
    return synced(
        run_deployment(
            deployment,
            parameters=parameters,
            flow_run_name=name,
            tags=tags,
            idempotency_key=key,
            timeout=0,
            as_subflow=False,
        )
    )


def runs_in(flow_name: str, states: list[StateType], names: Sequence[str] | None = None) -> list[FlowRun]:
    """Every run of `flow_name` in one of these states (only those named `names`, where given),
    a page at a time."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterName,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )

    found: list[FlowRun] = []
    state = FlowRunFilterState(type=FlowRunFilterStateType(any_=states))
    run_filter = (
        FlowRunFilter(state=state)
        if names is None
        else FlowRunFilter(state=state, name=FlowRunFilterName(any_=list(names)))
    )
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                flow_run_filter=run_filter,
                limit=PAGE,
                offset=len(found),
            )
            found += page
            if len(page) < PAGE:
                return found


def paused_runs(flow_name: str) -> list[FlowRun]:
    """Every paused (or suspended) run of `flow_name`."""
    return runs_in(flow_name, [StateType.PAUSED])


def live_runs(flow_name: str, names: Sequence[str] | None = None) -> list[FlowRun]:
    """Runs of `flow_name` that have not ended (scheduled, pending, running, paused); only those
    named `names`, where given."""
    return runs_in(
        flow_name,
        [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING],
        names,
    )


# Resumes that fail in a row before the rest are left to the next cycle: the server is down or
# refusing, and thousands of runs each waiting out a timeout would hold the cycle for hours.
WAKE_FAILURES_IN_A_ROW = 5


def resume_each(wakes: Sequence[tuple[FlowRun, dict[str, Any] | None]]) -> int:
    """Resume each run (read as paused) with its input; returns how many were resumed.

    Never raises for one run: the cycle reads thousands of paused runs, then resumes them one by
    one, and meanwhile a reviewer answers a form or `arrears review decide` resumes a run (Prefect
    then raises `NotPausedError`: nothing is left to do), or the server refuses one (its input no
    longer fits the form). Either failed the daily cycle after its advance, before any message
    went out. A run left paused is woken again by the next cycle."""
    from prefect.exceptions import NotPausedError
    from prefect.flow_runs import resume_flow_run

    woken = failed = in_a_row = 0
    first: str | None = None
    for n, (run, run_input) in enumerate(wakes):
        if in_a_row >= WAKE_FAILURES_IN_A_ROW:
            run_logger().warning("%d runs left paused for the next cycle", len(wakes) - n)
            break
        try:
            resume_flow_run(run.id, run_input=run_input)
        except NotPausedError:  # resumed meanwhile by someone else: it is on its way
            in_a_row = 0
            continue
        except Exception as error:
            failed, in_a_row = failed + 1, in_a_row + 1
            first = first or f"{run.name} ({run.id}): {type(error).__name__}: {mask_text(str(error))[:200]}"
            continue
        woken, in_a_row = woken + 1, 0
    if failed:
        run_logger().warning(
            "%d paused runs could not be resumed, the next cycle tries again; first: %s", failed, first
        )
    return woken


def cancel_each(ends: Sequence[tuple[FlowRun, str]]) -> int:
    """Cancel each paused run with its message, one failure never failing the cycle (the next
    cycle finds the run paused and tries again); returns how many were cancelled."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    cancelled = 0
    if not ends:
        return 0
    with get_client(sync_client=True) as client:
        for run, message in ends:
            try:
                client.set_flow_run_state(run.id, Cancelled(message=message), force=True)
            except Exception as error:
                run_logger().warning("could not cancel %s (%s): %s", run.name, run.id, type(error).__name__)
                continue
            cancelled += 1
    return cancelled


def pause_key(run: FlowRun) -> str:
    """The key a paused run waits under (`cure-wait-2`, `decision`, …); empty when it has none."""
    return str(run.state.state_details.pause_key or "") if run.state else ""
