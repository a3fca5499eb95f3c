"""Flow runs that wait (DESIGN §7): a review on its reviewer, a referral on its court.

The run's side: `follow` takes a step, and while the step has no outcome yet waits for a `Wake`
under numbered keys (`cure-wait-1`, `cure-wait-2`, …, or `court-wait-…`), so a run re-started
from the top replays the wakes it already got, in order, and goes on where it stopped. A wait
is a suspension under a deployment (no process held) and a pause in the process without one.

The cycle's side: start one run of a deployment (`start_run`), find runs by state
(`runs_in`, `paused_runs`, `live_runs`) and read what a paused run waits for (`pause_key`).
"""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from prefect.client.schemas.objects import FlowRun, StateType
from prefect.context import FlowRunContext
from prefect.flow_runs import apause_flow_run, asuspend_flow_run
from prefect.input import RunInput
from pydantic import Field

from arrears.clock import parse_instant
from flows._prefect import synced

__all__ = [
    "Wake",
    "deployment_exists",
    "follow",
    "later_of",
    "live_runs",
    "now_of",
    "pause_key",
    "paused_runs",
    "runs_in",
    "start_run",
    "wait_for",
]

# Without a deployment a waiting run keeps its process: bounded, so a forgotten demo run ends.
PAUSE_TIMEOUT_SECONDS = 24 * 3600
POLL_SECONDS = 2  # how often a paused run asks whether it was resumed
PAGE = 200  # flow runs read per request

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
        now = later_of(now, wake.as_of)
        state = reload(state)


# -- the cycle's side -------------------------------------------------------------------------------


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


def runs_in(flow_name: str, states: list[StateType]) -> list[FlowRun]:
    """Every run of `flow_name` in one of these states, a page at a time."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )

    found: list[FlowRun] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states))
                ),
                limit=PAGE,
                offset=len(found),
            )
            found += page
            if len(page) < PAGE:
                return found


def paused_runs(flow_name: str) -> list[FlowRun]:
    """Every paused (or suspended) run of `flow_name`."""
    return runs_in(flow_name, [StateType.PAUSED])


def live_runs(flow_name: str) -> list[FlowRun]:
    """Runs of `flow_name` that have not ended (scheduled, pending, running, paused)."""
    return runs_in(
        flow_name,
        [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING],
    )


def pause_key(run: FlowRun) -> str:
    """The key a paused run waits under (`cure-wait-2`, `decision`, …); empty when it has none."""
    return str(run.state.state_details.pause_key or "") if run.state else ""
