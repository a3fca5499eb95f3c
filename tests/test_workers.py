"""Scale-out on an existing engine (DESIGN §4): the daily cycle with its shards advanced by Prefect
workers of a process work pool, on PostgreSQL, decides exactly what the in-process cycle decides.

The short version of benchmarks/workers.py: 20,000 accounts, the cycle once in process and once
fanned out to two `prefect worker start --type process` workers, each on a copy of one portfolio.
"""

from pathlib import Path

import pytest

from benchmarks.workers import compare_runs

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ACCOUNTS = 20_000
SHARD_SIZE = 10_000  # one shard per worker: a shard run pays a process start and Prefect's imports


@pytest.mark.timeout(1200)
def test_cycle_on_two_process_workers_decides_as_in_process(postgres_admin_url: str, tmp_path: Path) -> None:
    """Fanned out to two process workers, every shard runs as a flow run of the shard deployment
    in a process one of the workers started, and stages, outbox rows and audit events come out
    the same as in one process."""
    figures = compare_runs(
        postgres_admin_url,
        accounts=ACCOUNTS,
        workers=2,
        shard_size=SHARD_SIZE,
        workdir=tmp_path,
        prefect_db="sqlite",
        one_worker=False,
    )
    fanned = figures["runs"]["n_workers"]
    assert figures["same_decisions"], figures["sameness"]
    assert figures["sameness"]["n_workers"]["rows"]["account"] == ACCOUNTS
    assert figures["sameness"]["n_workers"]["rows"]["message"] > 0
    assert fanned["shards"] == ACCOUNTS // SHARD_SIZE
    assert fanned["shard_runs"] == fanned["shards"] == fanned["shard_runs_completed"]
    assert fanned["shard_runs_on_deployment"] == fanned["shards"]
    assert fanned["shard_runs_unmatched"] == []
    # Each worker takes one run at a time (--limit 1) and a run lasts seconds: both took part.
    assert sorted(fanned["shard_runs_by_worker"].values()) == [1, 1]
    assert figures["runs"]["in_process"]["shard_runs"] == 0
