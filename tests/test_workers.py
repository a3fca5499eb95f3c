"""Scale-out on an existing engine (DESIGN §4): the daily cycle with its shards advanced by Prefect
workers of a process work pool, on PostgreSQL, decides exactly what the in-process cycle decides.

The short version of benchmarks/workers.py: 20,000 accounts, the cycle once in process and once
fanned out to two `prefect worker start --type process` workers, each on a copy of one portfolio.
"""

from pathlib import Path

import pytest
from sqlalchemy import Engine

from arrears.storage.installation import installation_id, new_installation_id
from arrears.storage.snapshot import decision_rows
from benchmarks.workers import compare_runs

ACCOUNTS = 20_000
SHARD_SIZE = 10_000  # one shard per worker: a shard run pays a process start and Prefect's imports


def test_a_copy_takes_an_installation_id_of_its_own(sqlite_engine: Engine) -> None:
    """A database cloned from a loaded template gets a new installation id, kept from then on, so
    its runs' idempotency keys never meet the original's on a shared Prefect server."""
    with sqlite_engine.begin() as connection:
        original = installation_id(connection)
        renewed = new_installation_id(connection)
    with sqlite_engine.begin() as connection:
        assert installation_id(connection) == renewed != original


def test_the_snapshot_masks_ids_in_audit_details(sqlite_engine: Engine) -> None:
    """Audit details that name a row or provider id compare equal across databases; other numbers
    stay."""
    from arrears.storage.tables import audit

    details = [
        "message 868 sent via sandbox (ab12:cd34)",
        "repossession review 701 opened",
        "dpd 16",
        "right_to_cure letter 3 accepted by sandbox as ltr_2a8c2d670eab4225ba55",
        "repossession order 9 assigned to the agency (sandbox) as ord_77f",
    ]
    with sqlite_engine.begin() as connection:
        connection.execute(audit.insert(), [{"account_id": "A-1", "kind": "k", "detail": d} for d in details])
        rows = list(decision_rows(connection, "audit"))
    assert [r[2] for r in rows] == [
        "dpd 16",
        "message # sent via sandbox (#)",
        "repossession order # assigned to the agency (sandbox) as #",
        "repossession review # opened",
        "right_to_cure letter # accepted by sandbox as #",
    ]


@pytest.mark.postgres
@pytest.mark.slow
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
