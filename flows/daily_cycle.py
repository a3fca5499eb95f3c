"""The daily cycle (DESIGN §4): refresh, advance in shards, the later stages, dispatch in batches, report.

After advance come the steps that act on what advance decided: bureau pulls for accounts that
entered negotiation and skip traces for the unreachable (their ability and numbers move the
segment at the next advance), then the reviews (opened, notified, one run each on the served
review deployment) and the legal referrals (one run each on the referral deployment). Without
those deployments served, reviews are still opened and notified, and decided with `arrears
review decide`. Dispatch comes last, then the report.

There is never a flow run or a task run per account: shards of thousands of accounts and
batches of thousands of messages are the unit of orchestration (PREFECT.md).
"""

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import date, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from arrears.clock import as_of_or_now, business_date
from arrears.models import utcnow
from arrears.settings import get_settings
from arrears.storage import cycle_runs
from flows._prefect import synced
from flows._results import FAILURE_TEXT
from flows._waiting import PAGE, deployment_exists, start_run
from flows.legal_referral import start_referrals
from flows.repossession_review import follow_letters_and_orders, start_reviews, start_waiting_reviews
from tasks.bureau_pull import pull_bureau_profiles
from tasks.cycle import (
    CycleRunning,
    Shard,
    advance_shard,
    begin_cycle,
    close_cycle,
    cycle_report,
    fail_cycle,
    plan_shards,
    refresh,
    run_exclusively,
    run_token,
    start_shard_workers,
)
from tasks.database import engine, installation
from tasks.dispatch import (
    announce_outage,
    dispatch_batch,
    mark_outage_waiting,
    plan_dispatch,
    reconcile_in_doubt,
)
from tasks.drill import crash_point
from tasks.logs import run_logger
from tasks.mailing import cycle_letters, mail_letters
from tasks.providers import check_settings, sms_session
from tasks.receipts import (
    announce_sender_faults,
    expire_early_reports,
    failing_senders,
    receipts_to_reconcile,
    reconcile_receipts,
)
from tasks.report import report_cycle
from tasks.workers import keeping_workers, worker_processes

__all__ = ["cycle_shard", "daily_cycle", "dispatch_outbox", "run_dispatch", "watch_progress"]

# In-process listeners (the CLI's progress bar): phase, units done, units in all.
_listeners: list[Callable[[str, int, int], None]] = []


@contextmanager
def watch_progress(listener: Callable[[str, int, int], None]) -> Iterator[None]:
    """Call `listener(phase, done, total)` as shards and batches finish, while inside the block."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def _progress(phase: str, done: int, total: int) -> None:
    for listener in _listeners:
        listener(phase, done, total)


def _threads(workers: int) -> TaskRunner[PrefectFuture[Any]]:
    """A thread pool of `workers` threads (Prefect's default has no limit: PREFECT.md)."""
    # TaskRunner's future type is invariant, so Prefect's own ThreadPoolTaskRunner (a runner of
    # PrefectConcurrentFuture) does not match the PrefectFuture runner `@flow` is typed to take.
    return ThreadPoolTaskRunner(max_workers=workers)  # type: ignore[return-value]


def _instant_named(text: Any) -> datetime | None:
    """The run's `as_of` for its name; None when it is no instant. A name function that raised
    left the run Pending on the server for good, its error nowhere in the UI (an `as_of` typed in
    the UI's form): the flow's body refuses it instead, and the run fails saying why."""
    try:
        return as_of_or_now(text)
    except ValueError:
        return None


def _cycle_name() -> str:
    as_of = _instant_named(flow_run.parameters.get("as_of"))
    if as_of is None:
        return "daily-cycle (as_of not an instant)"
    return f"daily-cycle {business_date(as_of, get_settings().lender_timezone).isoformat()}"


@flow(
    name="daily-cycle",
    flow_run_name=_cycle_name,
    # Shards decide in parallel and queue only for their write; dispatch batches mostly wait on
    # the provider. Four threads keep both cores busy despite the GIL.
    task_runner=_threads(4),
    description="Refresh, advance every account in shards, reviews and referrals, dispatch with the "
    "bureau pulls and the letters' mailing beside it, report.",
    persist_result=False,
    result_serializer=FAILURE_TEXT,
)
def daily_cycle(as_of: str | None = None, fan_out: str | None = None) -> dict[str, Any]:
    """Run the cycle as of `as_of` (ISO 8601 with offset; now when omitted).

    One cycle (or dispatch) at a time per database: while another one runs this one waits for it
    (`LOCK_WAIT_SECONDS`), then raises `CycleRunning`; a scheduled run that waited runs as of the
    moment it starts.
    Running it again for an instant whose cycle finished changes nothing: it finds that cycle and
    returns at once; so does a scheduled run (no `as_of`) that starts after a cycle finished as of
    its scheduled time or later (late runs of missed days: one cycle, as of now). A cycle that
    crashed is closed as `crashed` by the next run, which carries on where it stopped
    (transitions already taken are not taken again, outbox keys and bureau pull keys already
    present are skipped, and what the crashed run may have sent is looked up before anything is
    decided at send time). With `fan_out` (a deployment of `cycle_shard`,
    e.g. "cycle-shard/shard"), each shard is advanced by its own flow run on that deployment's
    workers instead of in this process; PostgreSQL must then be shared.
    """
    settings = get_settings()
    instant = as_of_or_now(as_of)
    day = business_date(instant, settings.lender_timezone)
    stats: dict[str, Any] = {"as_of": instant.isoformat(), "business_date": day.isoformat()}
    check_settings("sms")  # a provider the dispatch would refuse, refused before the advance
    if fan_out:
        _check_fan_out(fan_out)
    # A run without an instant, from the schedule, was due at its scheduled start: the machine
    # off at the cron time leaves one late run per missed day, all starting together.
    due = None if as_of else flow_run.scheduled_start_time
    with _exclusively_waiting("cycle"):
        if as_of is None:  # as of now: after any wait for the lock
            instant = as_of_or_now(None)
            day = business_date(instant, settings.lender_timezone)
            stats |= {"as_of": instant.isoformat(), "business_date": day.isoformat()}
        opened = begin_cycle(instant, day, due)
        if opened.crashed:
            stats["crashed_cycles_closed"] = opened.crashed
        if opened.cycle_id is None:
            get_run_logger().info(
                "cycle %s already finished for this instant or since this run was due (%s): nothing to do",
                opened.finished,
                due,
            )
            return stats | _nothing_to_do(opened.finished)
        try:
            return _run_cycle(as_of, instant, day, opened.cycle_id, fan_out, stats)
        except BaseException as error:
            fail_cycle(opened.cycle_id, error)
            raise


# How long a cycle run waits for the database's run lock, and how often it tries again. The outbox
# run of `arrears serve` takes the lock every quarter hour, from an anchor of its own, for
# minutes at portfolio scale (the morning's deferred messages, review runs deferred): a scheduled
# cycle that found it held failed at once, the day's cycle not run. (The CLI takes the lock itself
# before the flow, and refuses at once, exit 2.) Read at call time, so a test can shorten them.
LOCK_WAIT_SECONDS = 1800.0
LOCK_POLL_SECONDS = 5.0


@contextmanager
def _exclusively_waiting(what: str) -> Iterator[None]:
    """`run_exclusively(what)`, waiting up to `LOCK_WAIT_SECONDS` for the run holding it to end;
    `CycleRunning` (saying who holds it) after that."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    said = False
    while True:
        with ExitStack() as stack:
            try:
                stack.enter_context(run_exclusively(what))
            except CycleRunning as running:
                if time.monotonic() >= deadline:
                    raise
                if not said:
                    get_run_logger().info(
                        "waiting up to %.0f s for the run lock: %s", LOCK_WAIT_SECONDS, running
                    )
                    said = True
                time.sleep(LOCK_POLL_SECONDS)
                continue
            yield
            return


def _check_fan_out(deployment: str) -> None:
    """A `fan_out` given in the UI that names no deployment is refused before anything is done
    (it failed the cycle after its refresh, as `ObjectNotFound None`)."""
    try:
        found = deployment_exists(deployment)
    except ValueError:  # not FLOW/DEPLOYMENT at all: "0", "1000"
        found = False
    if not found:
        raise ValueError(
            f"fan_out {deployment!r} names no deployment on the Prefect server (it takes a deployment "
            "of cycle_shard, as 'cycle-shard/shard'): nothing was done"
        )


def _nothing_to_do(finished: int | None) -> dict[str, Any]:
    return {
        "already_finished": finished,
        "refresh": {"payments_applied": 0, "accounts_refreshed": 0},
        "advance": {"shards": 0, "accounts": 0, "transitions": 0, "messages": 0, "held": 0},
        "dispatch": {"batches": 0},
        "report": cycle_report(finished) if finished is not None else {},
    }


def _run_cycle(
    as_of: str | None, instant: datetime, day: date, cycle_id: int, fan_out: str | None, stats: dict[str, Any]
) -> dict[str, Any]:
    settings = get_settings()
    stats["cycle_id"] = cycle_id
    with keeping_workers():  # the advance's worker processes do the dispatch too
        start_shard_workers(fan_out)  # their start overlaps the refresh
        stats["refresh"] = refresh(instant, day, cycle_id)
        stats["advance"] = _advance(instant, day, cycle_id, fan_out)

        stats["reviews"] = start_reviews(instant, as_of, cycle_id)
        stats["referrals"] = start_referrals(instant, as_of, cycle_id)
        _log_counts("reviews", stats["reviews"] | stats["referrals"])
        # Pulls wait on the bureau, one profile at a time, and letters on the letters provider; what
        # they find moves segments (or closes an account) only at the next advance, so they run
        # beside the dispatch (which waits on the SMS gateway) rather than before it. Not beside
        # the reviews: those hold the write lock and want both cores.
        pulls = (
            pull_bureau_profiles.submit(instant, cycle_id, limit=settings.bureau_pulls_per_cycle)
            if settings.bureau_pulls_per_cycle
            else None
        )
        mailing = mail_letters.submit(instant, cycle_id)
        stats["dispatch"] = run_dispatch(instant, cycle_id, live=as_of is None)
    if pulls is not None:
        stats["bureau"] = pulls.result()
        _log_counts("bureau", stats["bureau"])
    # Sent over every run of this instant (a killed run's letters too); the other counts are this run's.
    stats["letters"] = mailing.result() | cycle_letters(instant)
    _log_counts("letters", stats["letters"])
    stats["report"] = report_cycle(cycle_id, day.isoformat())
    crash_point("report")
    if "outage" in stats["dispatch"]:
        stats["outage"] = stats["dispatch"].pop("outage")
    close_cycle(cycle_id, stats)
    if "outage" in stats:
        announce_outage(stats["outage"], instant)
    return stats


def _advance(instant: datetime, day: date, cycle_id: int, fan_out: str | None) -> dict[str, int]:
    """Advance every account, shard by shard: in this process, or one flow run per shard on the
    `fan_out` deployment. Progress goes to an artifact and to the in-process listeners."""
    shards = plan_shards(get_settings().shard_size)
    progress = synced(
        create_progress_artifact(0.0, key="daily-cycle-progress", description=f"Advance of {day}")
    )
    totals: dict[str, int] = {}
    # One process per core decides while the others write (tasks.workers); a single shard is
    # not worth starting them for.
    with worker_processes(get_settings().shard_workers if len(shards) > 1 and not fan_out else 1):
        if fan_out:
            results = fan_out_shards(fan_out, shards, instant, cycle_id)
        else:
            futures = [advance_shard.submit(s, instant, day, cycle_id) for s in shards]
            results = (f.result() for f in futures)
        for done, result in enumerate(results, start=1):
            _add(totals, result)
            update_progress_artifact(progress, 100.0 * done / max(1, len(shards)))
            _progress("advance", done, len(shards))
    get_run_logger().info(
        "advanced %d accounts in %d shards: %d transitions, %d new messages",
        totals.get("accounts", 0),
        len(shards),
        totals.get("transitions", 0),
        totals.get("messages", 0),
    )
    return {"shards": len(shards), **totals}


def _add(totals: dict[str, int], counts: dict[str, int]) -> None:
    for key, value in counts.items():
        totals[key] = totals.get(key, 0) + value


def fan_out_shards(
    deployment: str, shards: list[Shard], instant: datetime, cycle_id: int
) -> Iterator[dict[str, int]]:
    """Start one `cycle_shard` run per shard on `deployment`, then wait for each in turn.

    The idempotency key makes a retried cycle reuse the shard runs it already started; it carries
    the installation id, because a key is unique across the whole Prefect server and cycle ids
    are not (two databases on one server both have a cycle 1: DESIGN §3). Each
    run's counts stay with that run (its result lives on the worker); the cycle's report reads
    the outcome from the database both share.
    """
    base = installation()
    runs = [
        start_run(
            deployment,
            parameters={
                "as_of": instant.isoformat(),
                "cycle_id": cycle_id,
                "index": s.index,
                "lo": s.lo,
                "hi": s.hi,
            },
            name=f"cycle-shard {s.index} of cycle {cycle_id}",
            tags=["stage:advance", f"shard:{s.index}"],
            key=f"{base}-cycle-{cycle_id}-shard-{s.index}",
        )
        for s in shards
    ]
    try:
        for _ in _shards_finished(deployment, [run.id for run in runs]):
            yield {}
    finally:
        # A cycle that stops waiting (a shard failed, no worker, the cycle cancelled) leaves no
        # shard run behind for a worker to start later, advancing for a cycle that is over.
        _cancel_unfinished([run.id for run in runs])


# How long the shard runs may all wait for a worker before the cycle fails saying so: a worker
# never started, killed, or serving another pool (read at call time, so a test can shorten it).
SHARD_START_SECONDS = 600.0
# And how long the cycle waits for its shard runs in all (Prefect's own default): a worker killed
# mid-shard leaves its run Running on the server for good.
SHARD_WAIT_SECONDS = 3 * 3600.0
SHARD_POLL_SECONDS = 2.0


def _shards_finished(deployment: str, ids: list[Any]) -> Iterator[None]:
    """Yield once per shard run as each completes, in order; raise when one ended otherwise, or
    when none has started or finished for `SHARD_START_SECONDS` while none runs (no worker takes
    them: without this the cycle waited three hours, Prefect's default, holding the run lock)."""
    from prefect.client.orchestration import get_client

    done = 0
    progress = began = time.monotonic()
    seen: tuple[int, int] = (0, 0)
    with get_client(sync_client=True) as client:
        while done < len(ids):
            found = {r.id: r for r in _flow_runs(client, ids[done:])}
            runs = [*[None] * done, *(found.get(i) for i in ids[done:])]
            while done < len(runs) and (run := runs[done]) is not None and run.state is not None:
                if not run.state.is_final():
                    break
                if not run.state.is_completed():
                    raise RuntimeError(f"shard run {run.name} ended {run.state.name}")
                done += 1
                yield
            if done == len(ids):
                return
            states = [r.state for r in runs[done:] if r is not None and r.state is not None]
            moving = sum(1 for state in states if state.is_running())
            waiting = len(ids) - done - sum(1 for state in states if state.is_running() or state.is_final())
            if (moving, waiting) != seen or moving:
                seen, progress = (moving, waiting), time.monotonic()
            elif time.monotonic() - progress > SHARD_START_SECONDS:
                raise RuntimeError(
                    f"no worker started a shard run of {deployment} in {SHARD_START_SECONDS:.0f} s "
                    f"({waiting} waiting): is a worker running for its pool (prefect worker start)?"
                )
            if time.monotonic() - began > SHARD_WAIT_SECONDS:
                raise RuntimeError(
                    f"shard runs of {deployment} not finished in {SHARD_WAIT_SECONDS:.0f} s "
                    f"({len(ids) - done} of {len(ids)} left): was a worker killed?"
                )
            time.sleep(SHARD_POLL_SECONDS)


def _cancel_unfinished(ids: list[Any]) -> None:
    """Cancel the shard runs that have not ended: those waiting at once, running ones through
    their worker (Cancelling)."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Cancelling, State

    try:
        with get_client(sync_client=True) as client:
            for run in _flow_runs(client, ids):
                if run.state is None or run.state.is_final():
                    continue
                state: State[Any] = Cancelling() if run.state.is_running() else Cancelled()
                client.set_flow_run_state(run.id, state, force=True)
    except Exception as error:  # the server gone: the cycle's own error matters more
        run_logger().warning("could not cancel the cycle's shard runs: %s", error)


def _flow_runs(client: Any, ids: list[Any]) -> list[Any]:
    """The flow runs of these ids, read `PAGE` at a time: Prefect's API refuses a larger limit (its
    default, 200), and a ten-million-account book fans out into a thousand shards."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    return [
        run
        for start in range(0, len(ids), PAGE)
        for run in client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids[start : start + PAGE])), limit=PAGE
        )
    ]


@flow(
    name="cycle-shard",
    description="Advance one shard of the daily cycle: for workers on a pool.",
    persist_result=False,
    result_serializer=FAILURE_TEXT,
)
def cycle_shard(as_of: str, cycle_id: int, index: int, lo: str, hi: str | None = None) -> dict[str, int]:
    instant = as_of_or_now(as_of)
    day = business_date(instant, get_settings().lender_timezone)
    return advance_shard(Shard(index, lo, hi), instant, day, cycle_id)


# The rows of the batch that goes first, alone, to find out whether the provider answers: a few
# requests' worth (a batch API takes 100 numbers a call). A full batch there kept every worker
# waiting (1.6 s for 5,000 rows at a million accounts).
PROBE_ROWS = 500


def run_dispatch(
    instant: datetime, cycle_id: int | None, account_id: str | None = None, *, live: bool = False
) -> dict[str, Any]:
    """Send what is due at `instant` (for one account, if given), batch by batch, through one
    provider session. `live` (a run as of now, not of a given instant): each batch is checked and
    sent at the wall clock, which is what counts for a text (`tasks.sending`).

    A cycle or dispatch run (no `account_id`, under the run lock) first looks up what a crashed
    run may have sent. The first batch goes alone, and small (`PROBE_ROWS`): if it finds the
    provider unreachable, nothing else is tried and every due message waits, and the counts carry
    an `outage` entry (the provider and how many messages wait) for the caller to make loud.
    """
    settings = get_settings()
    counts: dict[str, Any] = {"batches": 0}
    owner = run_token(cycle_id) if account_id is None else None
    if owner is not None and settings.sms_base_url is not None:
        # The embedded sandbox (no URL) is started per session and remembers nothing to look up.
        with sms_session():
            recovered = reconcile_in_doubt(instant, cycle_id, owner)
        counts |= {k: v for k, v in recovered.items() if v}
    batches = plan_dispatch(
        instant, settings.dispatch_batch, account_id, owner, first=min(PROBE_ROWS, settings.dispatch_batch)
    )
    if not batches:
        _log_dispatch(counts)
        return counts
    with sms_session() as provider:
        first = dispatch_batch(batches[0], instant, cycle_id, live)
        _add(counts, first)
        _progress("dispatch", 1, len(batches))
        if first.get("outage"):
            counts["waiting"] = counts.get("waiting", 0) + mark_outage_waiting(
                instant, provider.info.name, account_id
            )
        elif len(batches) > 1:
            # As in advance: each batch's lease, checks and writes in a worker process.
            with worker_processes(settings.shard_workers):
                futures = [dispatch_batch.submit(b, instant, cycle_id, live) for b in batches[1:]]
                for done, future in enumerate(futures, start=2):
                    _add(counts, future.result())
                    _progress("dispatch", done, len(batches))
        if counts.pop("outage", 0):
            counts["outage"] = {"provider": provider.info.name, "waiting": counts.pop("waiting", 0)}
    counts["batches"] = len(batches)
    _log_dispatch(counts)
    return counts


def _log_counts(step: str, counts: dict[str, Any]) -> None:
    """A step's counts at INFO in the run's log (DESIGN §9): counts only, never a person."""
    done = ", ".join(f"{k} {v:,}" for k, v in counts.items() if isinstance(v, int) and v)
    run_logger().info("%s: %s", step, done or "nothing to do")


def _log_dispatch(counts: dict[str, Any]) -> None:
    """What dispatch did, in counts, at INFO to the run's log in the Prefect API (DESIGN §9):
    the UI's logs tab is where operations look first, and a message's number never goes there."""
    outcome = ", ".join(f"{k} {v}" for k, v in counts.items() if k != "batches" and isinstance(v, int))
    run_logger().info("dispatch: %d batches; %s", counts["batches"], outcome or "nothing due")


def _close_crashed_cycles() -> int:
    """Close the cycle rows of killed runs (call it under the run lock); returns how many."""
    with engine().begin() as connection:
        return len(cycle_runs.close_crashed_cycles(connection, now=utcnow()))


def _dispatch_name() -> str:
    as_of = _instant_named(flow_run.parameters.get("as_of"))
    return "dispatch (as_of not an instant)" if as_of is None else f"dispatch {as_of:%Y-%m-%dT%H:%MZ}"


@flow(
    name="dispatch-outbox",
    flow_run_name=_dispatch_name,
    task_runner=_threads(2),
    persist_result=False,
    result_serializer=FAILURE_TEXT,
)
def dispatch_outbox(as_of: str | None = None) -> dict[str, Any]:
    """Send messages that became due since the cycle (those deferred to the borrower's morning),
    then look up the outcome of messages whose delivery receipt never came; start the review
    runs a cycle had to defer (the Prefect server refused them) and replace those that died; warn
    in its log of a provider whose day of reports failed for our message or sender
    (`tasks.receipts.failing_senders`: the cycle's report makes it an event).

    Never beside a cycle or another dispatch on the same database: each takes over the leases of
    a crashed one at once, which is only safe when no other is alive. A run that finds the lock
    held (the quarter-hourly run of `arrears serve` while the cycle runs, for minutes) does
    nothing and ends Completed, saying so in its log and counts (`skipped`): the cycle's own
    dispatch sends what is due, and a Failed run every quarter hour would say nothing true.
    `arrears dispatch` takes the lock itself first, and refuses at once (exit 2)."""
    instant = as_of_or_now(as_of)
    check_settings("sms")
    with ExitStack() as locked:
        try:
            locked.enter_context(run_exclusively("dispatch"))
        except CycleRunning as running:
            run_logger().warning("skipped: %s", running)
            return {"skipped": str(running)}
        # The lock held proves a cycle row still running is a killed run's: closed as crashed now,
        # as the next cycle would (README), not left showing as running until tomorrow's cycle.
        crashed = _close_crashed_cycles()
        counts = run_dispatch(instant, None, live=as_of is None)
        if crashed:
            counts["crashed_cycles_closed"] = crashed
        if expired := expire_early_reports(instant):
            counts["early_reports_expired"] = expired
        counts |= follow_letters_and_orders(instant)  # letters and repossession orders, as for SMS receipts
        counts |= start_waiting_reviews(instant, as_of)  # the review runs a cycle deferred, minutes later
        # The embedded sandbox (no URL) is started per session and remembers nothing to look up.
        if get_settings().sms_base_url is not None and receipts_to_reconcile(instant, limit=1):
            with sms_session():
                counts |= reconcile_receipts(instant)
        if faulty := failing_senders(instant):  # logged here; the cycle's report raises the event
            # a count, as every other (`arrears dispatch` prints each with its thousands)
            counts["sender_faults"] = sum(f.sender_faults for f in faulty)
            announce_sender_faults(faulty, instant, event=False)
    if "outage" in counts:
        announce_outage(counts["outage"], instant)
    return counts
