"""The fault counters every sandbox state carries, apart from the servers' FastAPI machinery
(`integrations._sandbox`): the sandbox providers' clients import their kind's state (for its
credentials) in every process that sends, and those processes never serve a sandbox app.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CallbackFaults", "FaultState", "SandboxFaults"]

# The counters, in the order a request consumes them: unexecuted faults first.
_COUNTED = ("http_429", "http_503", "http_500", "timeouts")


class SandboxFaults(BaseModel):
    """Faults to inject (`POST /_sandbox/faults`); counters count down per request.

    A kind adds the field that says which requests they hit (`scope_field`, "all" or one name)
    and faults of its own."""

    model_config = ConfigDict(extra="forbid")
    scope_field: ClassVar[str] = "route"

    latency_ms: int = Field(default=0, ge=0, description="Added before every answer.")
    http_429: int = Field(
        default=0, ge=0, description="The next N requests answer 429 with Retry-After, unexecuted."
    )
    http_503: int = Field(
        default=0, ge=0, description="The next N requests answer 503 with Retry-After, unexecuted."
    )
    http_500: int = Field(default=0, ge=0, description="The next N requests are executed, then answer 500.")
    timeouts: int = Field(
        default=0, ge=0, description="The next N requests are executed, then held timeout_ms."
    )
    timeout_ms: int = Field(default=3_000, ge=0)
    retry_after: float = Field(default=1.0, ge=0, description="Seconds in Retry-After of 429 and 503.")

    def applies(self, target: str) -> bool:
        return getattr(self, self.scope_field) in ("all", target)

    def take(self, target: str) -> str | None:
        """The fault a request to `target` gets, if any, consuming one from its counter."""
        if not self.applies(target):
            return None
        for name in _COUNTED:
            left = getattr(self, name)
            if left:
                setattr(self, name, left - 1)
                return name
        return None


class CallbackFaults(SandboxFaults):
    """The faults of a sandbox that pushes callbacks: some are lost, some arrive twice.

    A counter is consumed per callback the sandbox is about to push (and scoped like the other
    faults), so `drop_callbacks: 2` loses the next two pushes, whichever messages they are about."""

    drop_callbacks: int = Field(default=0, ge=0, description="The next N callbacks are not sent (lost).")
    duplicate_callbacks: int = Field(default=0, ge=0, description="The next N callbacks are sent twice.")

    def take_callback(self, target: str) -> str | None:
        """ "drop", "duplicate" or None for the next callback to `target`, consuming one."""
        if not self.applies(target):
            return None
        if self.drop_callbacks:
            self.drop_callbacks -= 1
            return "drop"
        if self.duplicate_callbacks:
            self.duplicate_callbacks -= 1
            return "duplicate"
        return None


class FaultState:
    """Mixin of the sandbox states: counters, the faults in force, the clock."""

    faults: SandboxFaults
    counters: dict[str, int]

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    @contextmanager
    def answering(self) -> Iterator[None]:
        """One request in the sandbox's hands: `in_flight` while it is, and the most at once
        as `in_flight_peak`, show how many a client keeps waiting at a time."""
        self.count("in_flight")
        peak = max(self.counters.get("in_flight_peak", 0), self.counters["in_flight"])
        self.counters["in_flight_peak"] = peak
        try:
            yield
        finally:
            self.count("in_flight", -1)

    def take_fault(self, target: str) -> str | None:
        """The fault this request gets, if any, consuming one from its counter."""
        name = self.faults.take(target)
        if name is not None:
            self.count(f"faults.{name}")
        return name

    def take_callback_fault(self, target: str) -> str | None:
        """The fault ("drop", "duplicate") the next callback to `target` gets, if the faults have any."""
        take = getattr(self.faults, "take_callback", None)
        name = take(target) if take is not None else None
        if name is not None:
            self.count(f"faults.{name}_callbacks")
        return name

    def now(self) -> datetime:
        return datetime.now(UTC)
