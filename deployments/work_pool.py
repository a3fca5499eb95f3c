"""The work pool that `deployments/prefect.yaml` deploys to, bounded like `arrears serve`.

A pool without a limit starts every flow run a worker can take (the operator check of 2026-12-02:
94 review runs at once, 11.3 GB), so the pool gets the served process's bound, `SERVE_LIMIT`,
from one place: changing it and deploying again changes the pool.

`prefect deploy` refuses a deployment whose work pool does not exist, and checks that before it
runs any build step (Prefect 3.9, `prefect/cli/deploy/_core.py`): on a new server the pool is
made first with `python -m deployments.work_pool`. The build step `work_pool_step` then keeps
the limit on every deploy. The pool's type is `process`: workers run each flow run in a
process of their own, as `arrears serve` does.
"""

from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.client.schemas.objects import WorkPool
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from deployments.limits import SERVE_LIMIT

__all__ = ["POOL", "POOL_TYPE", "apply_work_pool", "work_pool_step"]

# The name every deployment of prefect.yaml names in `work_pool.name`.
POOL = "arrears"
POOL_TYPE = "process"


def apply_work_pool(name: str = POOL, limit: int = SERVE_LIMIT) -> WorkPool:
    """Create the pool with its limit, or set the limit of the pool there is. Only the limit is
    changed on an existing pool: the operator may have edited its job template (environment,
    working directory) and that stays theirs."""
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            try:
                return client.create_work_pool(
                    WorkPoolCreate(
                        name=name, type=POOL_TYPE, base_job_template=template, concurrency_limit=limit
                    )
                )
            except ObjectAlreadyExists:  # another deploy made it meanwhile: set its limit below
                pool = client.read_work_pool(name)
        if pool.concurrency_limit != limit:
            client.update_work_pool(name, WorkPoolUpdate(concurrency_limit=limit))
            pool = client.read_work_pool(name)
        return pool


def work_pool_step() -> dict[str, Any]:
    """`prefect deploy`'s build step: a Python step runs in the `prefect` process itself, with
    no `python` on PATH to find. Its outputs can be named in prefect.yaml as
    `{{ work-pool.name }}` and `{{ work-pool.concurrency_limit }}`."""
    pool = apply_work_pool()
    print(f"work pool {pool.name!r} ({pool.type}): at most {pool.concurrency_limit} flow runs at once")
    return {"name": pool.name, "concurrency_limit": pool.concurrency_limit}


if __name__ == "__main__":  # once on a new server, before the first `prefect deploy`
    work_pool_step()
