"""Bureau pulls in the cycle: ability for accounts entering negotiation, skip tracing for the unreachable.

One task per cycle (after advance), never one per account: it names the accounts to ask about in
a few queries, opens the bureau provider once (`tasks.providers.bureau_session`: the configured
bureau, or a sandbox one started for the run), pulls the profiles several at a time
(`bureau_concurrency`), each under its idempotency key (`<installation>-pull-<account>-<episode>`
/ `<installation>-skip-<account>-<episode>`, so a retried task makes no second inquiry), and stores
the answers a block at a time as they come (`arrears.storage.bureau_pulls.record_pulls`), keyed by
the same key: a pull recorded already (a rerun after a crash) is not recorded again.
The ability a pull gives, and the numbers a skip trace finds, move the segment at the next advance.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from arrears.settings import get_settings
from arrears.storage import bureau_pulls, read_only
from arrears.storage.bureau_pulls import Pulled, PullSubject
from integrations.bureau.protocol import COLLECTION_PURPOSE, BureauProfile, BureauProvider, PullRequest
from integrations.errors import ConfigError, Permanent, ProviderError
from tasks.agency import call_off_overtaken
from tasks.breaker import FailuresInARow
from tasks.database import engine, policy
from tasks.providers import bureau_session
from tasks.workers import in_own_process

__all__ = ["GIVE_UP_AFTER", "OWN_PROCESS_FROM", "pull_all", "pull_bureau_profiles"]


@task(
    name="pull-bureau-profiles",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=1,
    retry_delay_seconds=60,
)
def pull_bureau_profiles(at: datetime, cycle_id: int | None = None, limit: int = 1_000) -> dict[str, int]:
    """Pull the profiles due (at most `limit` a business day, counting the pulls of a cycle of the
    same day that crashed or ran before); counts by outcome. A transient failure leaves the
    account for the next cycle; a refusal (no file) is recorded and not asked again. Once
    `GIVE_UP_AFTER` pulls in a row have failed the bureau is down: the rest are not asked, and
    wait for the next cycle (`bureau_waiting`); so do all when it refuses our settings."""
    with read_only(engine()) as connection:
        earlier = 0 if cycle_id is None else bureau_pulls.pulls_of_the_day(connection, cycle_id=cycle_id)
        subjects = bureau_pulls.pull_subjects(connection, limit=limit - earlier) if earlier < limit else []
    if earlier:
        get_run_logger().info(
            "%d of the day's %d bureau pulls were made already (a run killed or tried before)", earlier, limit
        )
    if not subjects:
        return dict.fromkeys(_COUNTS, 0)
    asked = [s for s in subjects if s.phone is not None]
    # Many pulls take minutes of threads waiting on the bureau: in a process of their own, so the
    # dispatch beside them does not queue for this process's GIL at every SQLite row.
    log = get_run_logger()
    try:
        if len(asked) >= OWN_PROCESS_FROM:
            pulled, failures = in_own_process(pull_all, asked, at)
        else:
            pulled, failures = pull_all(asked, at)
    except ConfigError as refused:
        # Every pull would be refused alike until a person fixes the settings: the pulls wait for
        # the next cycle, and the cycle (beside whose dispatch they run) goes on to its report, as
        # the letters do. Raised, it failed the cycle after its dispatch, a minute's retry later.
        log.error(
            "the bureau refused our settings (%s): no pull until ARREARS_BUREAU_* are right; "
            "%d pulls wait for the next cycle",
            refused,
            len(asked),
        )
        return dict.fromkeys(_COUNTS, 0) | {"bureau_waiting": len(asked)}
    for key, reason in failures:
        log.warning("bureau pull %s failed: %s", key, reason)
    if pulled["bureau_waiting"]:
        log.warning(
            "the bureau failed %d pulls in a row: not asked again this cycle; %d pulls wait for the next",
            GIVE_UP_AFTER,
            pulled["bureau_waiting"],
        )
    pulled["bureau_failed"] += len(subjects) - len(asked)
    if pulled["vendor_orders_cancelled"]:
        # A bankruptcy or death the bureau reported overtook repossession orders: the agency hears
        # of it now, not at the next push. The cancels are stored: a push that fails here leaves
        # them to the next one, and never fails the pulls.
        log.warning(
            "%d repossession orders cancelled on the bureau's holds", pulled["vendor_orders_cancelled"]
        )
        try:
            call_off_overtaken()
        except Exception as failed:
            log.warning("the agency was not told yet (the next push tells it): %s", type(failed).__name__)
    return pulled


OWN_PROCESS_FROM = 1_000  # pulls: fewer are over before a process is started for them
# Failed pulls in a row (no answer between) after which the bureau is taken for down this cycle.
# Each failed pull has spent its retries (up to the client's 30 s), so a thousand pulls to a bureau
# that does not answer held the cycle some half an hour for nothing.
GIVE_UP_AFTER = 20
_COUNTS = (
    "bureau_pulls",
    "skip_traces",
    "bureau_no_file",
    "bureau_failed",
    "bureau_waiting",
    "numbers_found",
    "vendor_orders_cancelled",
)


def pull_all(asked: list[PullSubject], at: datetime) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Pull every subject and store the answers; counts by outcome and the (key, reason) of each
    failed pull. Picklable in and out: it may run in a process of its own."""
    counts = dict.fromkeys(_COUNTS, 0)
    failures: list[tuple[str, str]] = []
    # The bureau answers in a few hundred milliseconds a pull: several are in flight at once,
    # and their answers are stored a block at a time, so the pulls never queue one by one behind
    # the dispatch's writes for the database.
    breaker = FailuresInARow(GIVE_UP_AFTER)
    with (
        bureau_session() as provider,
        ThreadPoolExecutor(max_workers=get_settings().bureau_concurrency) as pool,
    ):
        answers = pool.map(lambda subject: _ask_unless_down(breaker, provider, subject), asked)
        block: list[tuple[PullSubject, _Answer]] = []
        try:
            for subject, answer in zip(asked, answers, strict=True):
                block.append((subject, answer))
                if len(block) == _BLOCK:
                    _record(block, at, counts, failures)
                    block = []
        finally:  # a configuration error stops the pulls: those answered are stored first
            _record(block, at, counts, failures)
    return counts, failures


_BLOCK = 100  # answers stored per transaction


@dataclass(frozen=True, slots=True)
class _Answer:
    """What one pull came back with: the profile, or why not (refused: no file; failed: ask again;
    waiting: not asked, the bureau being down)."""

    profile: BureauProfile | None = None
    refused: str | None = None
    failed: str | None = None
    waiting: bool = False


def _ask_unless_down(breaker: FailuresInARow, provider: BureauProvider, subject: PullSubject) -> _Answer:
    """A pull, unless `GIVE_UP_AFTER` in a row have failed: then it is not made and waits for the
    next cycle (not recorded, so it is due again then). A refusal (no file) is an answer: the
    bureau is up."""
    if breaker.tripped:
        return _Answer(waiting=True)
    answer = _ask(provider, subject)
    breaker.record(failed=answer.failed is not None)
    return answer


def _ask(provider: BureauProvider, subject: PullSubject) -> _Answer:
    request = PullRequest(
        idempotency_key=subject.key,
        account_ref=subject.account_id,
        name=subject.name,
        purpose=COLLECTION_PURPOSE,
        phone=subject.phone or "",
    )
    try:
        return _Answer(profile=provider.pull(request))
    except ConfigError:
        raise  # wrong credentials or URL: every pull would fail the same way
    except Permanent as refused:
        return _Answer(refused=str(refused))
    except ProviderError as failed:  # transient or unknown: the next cycle asks again, same key
        return _Answer(failed=type(failed).__name__)
    except Exception as failed:  # a provider's bug on one subject is that pull's failure alone
        # (DESIGN §4), never the other pulls' nor the cycle's; its text may hold the subject's data
        return _Answer(failed=f"{type(failed).__name__} (not a provider error: a bug of the provider)")


def _record(
    block: list[tuple[PullSubject, _Answer]],
    at: datetime,
    counts: dict[str, int],
    failures: list[tuple[str, str]],
) -> None:
    """Store a block of answers in one transaction; count them, and note the failed pulls."""
    if not block:
        return
    profiles: list[Pulled] = []
    with engine().begin() as connection:
        for subject, answer in block:
            if answer.waiting:
                counts["bureau_waiting"] += 1
                continue
            if answer.refused is not None:
                bureau_pulls.record_pull_refusal(
                    connection, subject=subject, at=at, purpose=COLLECTION_PURPOSE, reason=answer.refused
                )
                counts["bureau_no_file"] += 1
                continue
            profile = answer.profile
            if profile is None:
                failures.append((subject.key, answer.failed or "failed"))
                counts["bureau_failed"] += 1
                continue
            profiles.append(
                Pulled(
                    subject,
                    purpose=profile.purpose,
                    report_id=profile.report_id,
                    score_band=profile.score_band,
                    income_estimate=profile.income_estimate,
                    phones=[(p.number, p.confidence, p.line_type) for p in profile.phones],
                    bankruptcy_chapter=profile.bankruptcy.chapter if profile.bankruptcy else None,
                    bankrupt=profile.bankrupt,
                    deceased=profile.deceased,
                    unreadable_phones=profile.unreadable_phones,
                )
            )
        for pulled, stored in zip(
            profiles,
            bureau_pulls.record_pulls(connection, profiles, at=at, policy=policy().segmentation),
            strict=True,
        ):
            if stored.get("duplicate"):  # a concurrent or earlier run recorded this pull already
                continue
            counts["skip_traces" if pulled.subject.reason == "skip_trace" else "bureau_pulls"] += 1
            counts["numbers_found"] += int(stored["numbers_found"])
            counts["vendor_orders_cancelled"] += int(stored["vendor_orders_cancelled"])
