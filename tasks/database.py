"""The database as the tasks see it: one engine per process, built from settings."""

from sqlalchemy import Engine

from arrears.policy import Policy, load_policy
from arrears.settings import get_settings
from arrears.storage import get_engine

__all__ = ["engine", "policy"]


def engine() -> Engine:
    """The engine for the configured database; migrations are the entry point's job."""
    return get_engine(get_settings().database_url)


def policy() -> Policy:
    return load_policy(get_settings().policy_file)
