"""The database as the tasks see it: one engine per process, built from settings."""

from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine

from arrears.policy import Policy, load_policy
from arrears.settings import get_settings
from arrears.storage import get_engine
from arrears.storage.installation import installation_id

__all__ = ["engine", "installation", "policy"]


def engine() -> Engine:
    """The engine for the configured database; migrations are the entry point's job."""
    return get_engine(get_settings().database_url)


def installation() -> str:
    """This database's installation id: every key that leaves the database carries it (the
    idempotency keys of the runs it starts, the references of its messages), so two databases on
    one Prefect server or one provider account never take each other's for their own (DESIGN §3)."""
    with engine().begin() as connection:
        return installation_id(connection)


def policy() -> Policy:
    """The lender's policy: the configured file over the defaults, read again only when the file
    changes. Steps ask for it per batch and some per review, and reading, merging and validating
    the file each time cost more than the work it governs; one object also keeps its resolved
    profiles, which key the content check's caches."""
    path = get_settings().policy_file
    if path is None:
        return load_policy(None)
    try:
        stat = Path(path).stat()
    except OSError:
        return load_policy(path)  # raises PolicyError naming the file
    return _policy_read(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _policy_read(path: str, _mtime_ns: int, _size: int) -> Policy:
    """The policy file at `path` as it was at this modification time and size."""
    return load_policy(Path(path))
