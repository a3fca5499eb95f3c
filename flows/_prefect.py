"""Prefect's sync-or-async functions, called from sync code."""

from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["synced"]

T = TypeVar("T")


def synced(result: T | Coroutine[Any, Any, T]) -> T:
    """The result of a Prefect function wrapped in its `async_dispatch` (`run_deployment`,
    `create_progress_artifact`, …), called from sync code. Prefect types such a result as "the
    value, or a coroutine in async code"; from sync code it is the value."""
    if isinstance(result, Coroutine):
        result.close()
        raise TypeError("called from async code: await the function's async twin instead")
    return result
