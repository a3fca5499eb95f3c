"""Bureau pulls in the cycle: ability for accounts entering negotiation, skip tracing for the unreachable.

One task per cycle (after advance), never one per account: it names the accounts to ask about in
a few queries, opens the bureau provider once (`tasks.providers.bureau_session`: the configured
bureau, or a sandbox one started for the run), pulls each profile under its idempotency key
(`pull-<account>-<episode>` / `skip-<account>-<episode>`, so a retried task makes no second
inquiry) and stores each result as it comes (`arrears.storage.bureau.record_pull`), keyed by the
same key: a pull recorded already (a rerun after a crash) is not recorded again.
The ability a pull gives, and the numbers a skip trace finds, move the segment at the next advance.
"""

from datetime import datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from arrears.storage import bureau
from integrations.bureau.protocol import COLLECTION_PURPOSE, PullRequest
from integrations.errors import ConfigError, Permanent, ProviderError
from tasks.database import engine
from tasks.providers import bureau_session

__all__ = ["pull_bureau_profiles"]


@task(name="pull-bureau-profiles", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=60)
def pull_bureau_profiles(at: datetime, cycle_id: int | None = None, limit: int = 1_000) -> dict[str, int]:
    """Pull the profiles due (at most `limit` a cycle); counts by outcome. A transient failure
    leaves the account for the next cycle; a refusal (no file) is recorded and not asked again."""
    counts = {
        "bureau_pulls": 0,
        "skip_traces": 0,
        "bureau_no_file": 0,
        "bureau_failed": 0,
        "numbers_found": 0,
    }
    with engine().connect() as connection:
        subjects = bureau.pull_subjects(connection, limit=limit)
    if not subjects:
        return counts
    with bureau_session() as provider:
        for subject in subjects:
            if subject.phone is None:
                counts["bureau_failed"] += 1
                continue
            request = PullRequest(
                idempotency_key=subject.key,
                account_ref=subject.account_id,
                name=subject.name,
                purpose=COLLECTION_PURPOSE,
                phone=subject.phone,
            )
            try:
                profile = provider.pull(request)
            except ConfigError:
                raise  # wrong credentials or URL: every pull would fail the same way
            except Permanent as refused:
                with engine().begin() as connection:
                    bureau.record_pull_refusal(
                        connection, subject=subject, at=at, purpose=COLLECTION_PURPOSE, reason=str(refused)
                    )
                counts["bureau_no_file"] += 1
                continue
            except ProviderError as failed:  # transient or unknown: the next cycle asks again, same key
                get_run_logger().warning("bureau pull %s failed: %s", subject.key, type(failed).__name__)
                counts["bureau_failed"] += 1
                continue
            with engine().begin() as connection:
                stored = bureau.record_pull(
                    connection,
                    subject=subject,
                    at=at,
                    purpose=profile.purpose,
                    report_id=profile.report_id,
                    score_band=profile.score_band,
                    income_estimate=profile.income_estimate,
                    phones=[(p.number, p.confidence, p.line_type) for p in profile.phones],
                    bankruptcy_chapter=profile.bankruptcy.chapter if profile.bankruptcy else None,
                    bankrupt=profile.bankrupt,
                    deceased=profile.deceased,
                )
            if stored.get("duplicate"):  # a concurrent or earlier run recorded this pull already
                continue
            counts["skip_traces" if subject.reason == "skip_trace" else "bureau_pulls"] += 1
            counts["numbers_found"] += int(stored["numbers_found"])
    return counts
