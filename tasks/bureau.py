"""Bureau tasks: build, validate, write and submit the monthly Metro 2 file, and record it.

The provider for the run is opened once around the submission (`tasks.providers.bureau_session`):
the configured one, or a sandbox bureau started for the run when the `sandbox` provider has no
base URL.

Settings are the `bureau_*` fields of `arrears.settings.Settings` (`ARREARS_BUREAU_*` variables).

    ARREARS_BUREAU_PROVIDER       entry-point name (default `sandbox`)
    ARREARS_BUREAU_BASE_URL       the bureau's API root; unset with `sandbox`: one is started
    ARREARS_BUREAU_CREDENTIALS    JSON of the provider's settings, e.g. {"subscriber_code": …, "api_key": …}
    ARREARS_BUREAU_FURNISHER_ID   Identification Number the bureaus assigned (base segment, 20 chars)
    ARREARS_BUREAU_REPORTER_NAME / _REPORTER_ADDRESS / _REPORTER_PHONE   header record (name: lender_name)
    ARREARS_BUREAU_EQUIFAX_PROGRAM / _EXPERIAN_PROGRAM / _TRANSUNION_PROGRAM / _INNOVIS_PROGRAM
    ARREARS_BUREAU_CHUNK_SIZE     accounts read per query round (default 5,000)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import SecretStr

from arrears.clock import business_date
from arrears.files import atomic_write, private_directory
from arrears.metro2 import Furnisher, FurnishFile, Period, Problem, build_file, validate
from arrears.models import utcnow
from arrears.settings import Settings, get_settings
from arrears.storage import bureau as store
from arrears.storage import migrate
from integrations.bureau.protocol import FurnishRequest, FurnishResult
from integrations.errors import ConfigError, Transient, UnknownOutcome
from tasks.database import engine
from tasks.providers import current_bureau

__all__ = [
    "PLACEHOLDER_FURNISHER_ID",
    "BureauSettings",
    "FurnishingRefused",
    "build_furnish_file",
    "bureau_settings",
    "check_furnisher",
    "furnish_key",
    "record_furnish",
    "record_refusal",
    "submit_furnish_file",
    "validate_furnish_file",
    "write_furnish_file",
]


@dataclass(frozen=True, slots=True)
class BureauSettings:
    """The `bureau_*` fields of `arrears.settings.Settings`, under their short names."""

    provider: str
    base_url: str | None
    credentials: dict[str, SecretStr]
    furnisher_id: str
    reporter_name: str | None
    reporter_address: str
    reporter_phone: str
    equifax_program: str
    experian_program: str
    transunion_program: str
    innovis_program: str
    chunk_size: int

    def furnisher(self, lender_name: str) -> Furnisher:
        return Furnisher(
            identification_number=self.furnisher_id,
            reporter_name=self.reporter_name or lender_name,
            reporter_address=self.reporter_address,
            reporter_telephone=self.reporter_phone,
            equifax_program=self.equifax_program,
            experian_program=self.experian_program,
            transunion_program=self.transunion_program,
            innovis_program=self.innovis_program,
        )


def bureau_settings() -> BureauSettings:
    settings = get_settings()
    return BureauSettings(**{f: getattr(settings, f"bureau_{f}") for f in BureauSettings.__slots__})


# The furnisher id arrears ships with: the sandbox bureau takes it, a real one assigned another.
PLACEHOLDER_FURNISHER_ID = Settings.model_fields["bureau_furnisher_id"].default


def check_furnisher() -> None:
    """ConfigError when a bureau that is not the sandbox would be sent a file under the furnisher
    id arrears ships with: the bureau would refuse the month's file, or take its tradelines as
    another furnisher's. Nothing is built or sent before it is set."""
    s = bureau_settings()
    if s.provider != "sandbox" and s.furnisher_id == PLACEHOLDER_FURNISHER_ID:
        raise ConfigError(
            f"ARREARS_BUREAU_FURNISHER_ID is {PLACEHOLDER_FURNISHER_ID!r}, the sandbox's: set the Metro 2 "
            f"identification number the bureaus assigned before furnishing to {s.provider!r}"
        )


class FurnishingRefused(RuntimeError):
    """The file was not submitted (our validator) or not taken (the bureau); `problems` say why."""

    def __init__(self, message: str, problems: list[tuple[int, str, str]]) -> None:
        super().__init__(message, problems)
        self.message = message
        self.problems = problems

    def __str__(self) -> str:
        shown = "; ".join(f"record {n}: {name}: {why}" for n, name, why in self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        return f"{self.message}: {shown}{more}"


def furnish_key(period: str, content_sha256: str) -> str:
    """The submission's idempotency key: the same file for the same period is one submission."""
    return f"metro2-{period}-{content_sha256[:24]}"


# -- tasks ------------------------------------------------------------------------------------------


@task(name="build-metro2", cache_policy=NO_CACHE, persist_result=False, retries=1, retry_delay_seconds=5)
def build_furnish_file(period: str, created: date | None = None) -> FurnishFile:
    """Gather every US account in chunks (a few queries per chunk) and build the period's file."""
    settings = get_settings()
    bureau = bureau_settings()
    p = Period.parse(period)
    migrate(engine())
    created = created or business_date(utcnow(), settings.lender_timezone)
    with engine().connect() as connection:
        chunks = store.furnish_chunks(connection, size=bureau.chunk_size)
        accounts = [
            account
            for lo, hi in chunks
            for account in store.load_furnish_accounts(
                connection, period=p, lo=lo, hi=hi, lender_timezone=settings.lender_timezone
            )
        ]
    return build_file(accounts, p, bureau.furnisher(settings.lender_name), created=created)


@task(name="validate-metro2", cache_policy=NO_CACHE, persist_result=False)
def validate_furnish_file(content: bytes) -> list[Problem]:
    """Every field of the file that breaks the layout (empty: the file may be submitted)."""
    return validate(content)


@task(name="write-metro2", cache_policy=NO_CACHE, persist_result=False)
def write_furnish_file(content: bytes, path: str) -> str:
    """Write the file where the operator asked: 0600 (it carries names, addresses and amounts
    owed) and atomically (a partial file never has the name)."""
    target = Path(path).expanduser()
    private_directory(target.parent)
    with atomic_write(target, "wb") as file:
        file.write(content)
    return str(target)


def _retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retries only what the provider could not finish: throttling, outages, unknown outcomes.
    A refusal or a configuration error will not change by waiting."""
    return isinstance(state.result(raise_on_failure=False), (Transient, UnknownOutcome))


@task(
    name="submit-metro2",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=2,
    retry_delay_seconds=[30, 120],
    retry_condition_fn=_retry_transient,
)
def submit_furnish_file(period: str, content: bytes) -> FurnishResult:
    """Submit the file under a key derived from its content, so a retry is the same submission."""
    key = furnish_key(period, hashlib.sha256(content).hexdigest())
    return current_bureau().furnish(FurnishRequest(idempotency_key=key, period=period, content=content))


@task(name="record-metro2", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=5)
def record_furnish(file: FurnishFile, result: FurnishResult) -> int:
    """One furnish record per account and one audit event for the accepted submission."""
    summary = {
        "statuses": file.status_counts(),
        "skipped": len(file.skipped),
        "warnings": len(file.warnings),
        "bureau_records": result.records,
    }
    with engine().begin() as connection:
        return store.record_furnishing(
            connection,
            period=file.period,
            reported=file.reported,
            submission_id=result.submission_id,
            idempotency_key=result.idempotency_key,
            sha256=hashlib.sha256(file.content).hexdigest(),
            now=utcnow(),
            summary=summary,
        )


@task(name="record-metro2-refusal", cache_policy=NO_CACHE, persist_result=False)
def record_refusal(period: str, reason: str, problems: list[tuple[int, str, str]]) -> None:
    """An audit event for a file that was not furnished, with the first problems."""
    with engine().begin() as connection:
        store.record_refusal(
            connection, period=Period.parse(period), reason=reason, problems=problems, now=utcnow()
        )
