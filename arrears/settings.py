"""Runtime settings, from `ARREARS_*` environment variables and an optional `arrears.toml`.

Built through the cached `get_settings()`, never at import time, so that importing a flow on a
machine without configuration still works (STYLE.md).
"""

import re
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = ["Settings", "default_home", "describe_error", "get_settings", "redact_url", "redact_urls"]

# scheme://user:password@host: the password part, wherever a URL is quoted in a message.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/:@'\"]*:)(?P<secret>[^\s@/'\"]*)(?=@)")


def default_home() -> Path:
    """Where the embedded default keeps its SQLite database: `~/.arrears`, or `$ARREARS_HOME`."""
    import os

    return Path(os.environ.get("ARREARS_HOME", Path.home() / ".arrears")).expanduser()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARREARS_", toml_file="arrears.toml", extra="ignore")

    database_url: str = Field(
        default_factory=lambda: f"sqlite:///{default_home() / 'arrears.db'}",
        description="SQLAlchemy URL; SQLite under ARREARS_HOME by default, PostgreSQL in production.",
    )
    lender_timezone: str = Field(
        default="Asia/Shanghai",
        description="IANA zone of the lender: the business date and the daily schedule follow it.",
    )
    lender_name: str = Field(
        default="Arrears Auto Finance", description="How every message identifies the lender."
    )
    cycle_cron: str = Field(default="0 9 * * *", description="When the daily cycle runs (served, deployed).")
    policy_file: Path | None = Field(
        default=None, description="TOML or JSON file overriding the default policy."
    )
    sms_provider: str = Field(default="sandbox", description="Entry-point name of the SMS provider.")
    sms_base_url: str | None = Field(
        default=None,
        description="Base URL of the SMS provider; unset with the sandbox provider: the cycle starts one.",
    )
    sms_credentials: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='The SMS provider\'s settings as JSON, e.g. {"account_sid": ..., "auth_token": ...}.',
    )
    sender_fault_alert_share: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description=(
            "The share of an SMS provider's delivery reports of the day before that failed for our message"
            " or sender (a filtered template, an unregistered sender) at which the cycle raises an alert."
        ),
    )
    sender_fault_alert_min: int = Field(
        default=10,
        ge=1,
        description="The fewest such failures in a day that raise the alert, whatever their share.",
    )
    blocked_alert_threshold: int = Field(
        default=50,
        ge=0,
        description=(
            "Messages blocked in one cycle above which the cycle raises the `arrears.messages.blocked` alert."
        ),
    )
    review_deadline_days: int = Field(
        default=3,
        ge=0,
        description=(
            "Days a review may wait for its reviewer after its cure period before the cycle calls it overdue."
        ),
    )
    court_provider: str = Field(
        default="sandbox", description="Entry-point name of the court e-filing provider."
    )
    court_base_url: str | None = Field(
        default=None,
        description="Base URL of the court gateway; unset with the sandbox provider: a sandbox court starts.",
    )
    court_credentials: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='The court provider\'s settings as JSON: {"filer_id", "api_key", "callback_secret"}.',
    )
    bureau_provider: str = Field(
        default="sandbox", description="Entry-point name of the credit bureau provider."
    )
    bureau_base_url: str | None = Field(
        default=None,
        description="Base URL of the bureau; unset with the sandbox provider, a sandbox bureau is started.",
    )
    bureau_credentials: dict[str, SecretStr] = Field(
        default_factory=dict, description="The bureau provider's settings as JSON."
    )
    bureau_furnisher_id: str = Field(
        default="ARREARS-SANDBOX", max_length=20, description="Metro 2 identification number."
    )
    bureau_reporter_name: str | None = Field(
        default=None, description="Metro 2 header reporter name (default: lender_name)."
    )
    bureau_reporter_address: str = ""
    bureau_reporter_phone: str = Field(default="", pattern=r"^(\d{10})?$")
    bureau_equifax_program: str = ""
    bureau_experian_program: str = ""
    bureau_transunion_program: str = ""
    bureau_innovis_program: str = ""
    bureau_chunk_size: int = Field(default=5_000, ge=1)
    bureau_pulls_per_cycle: int = Field(
        default=1_000,
        ge=0,
        description=(
            "Profiles pulled a cycle (entering negotiation, skip traces), counted over its business day:"
            " a rerun after a crash pulls only what is left; 0: none, the rest wait."
        ),
    )
    bureau_concurrency: int = Field(
        default=8, ge=1, description="Bureau pulls in flight at once (within the bureau's rate limit)."
    )
    letters_provider: str = Field(
        default="sandbox", description="Entry-point name of the print-and-mail letters provider."
    )
    letters_base_url: str | None = Field(
        default=None,
        description="Base URL of the letters provider; unset with the sandbox provider, one is started.",
    )
    letters_credentials: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='The letters provider\'s settings as JSON, e.g. {"api_key": ..., "webhook_secret": ...}.',
    )
    letters_per_run: int = Field(
        default=500,
        ge=1,
        description=(
            "Letters rendered and handed to the letters provider a run (the cycle, `arrears dispatch`,"
            " every quarter hour under `arrears serve`); the rest wait for the next run."
        ),
    )
    letters_concurrency: int = Field(
        default=8,
        ge=1,
        description=(
            "Letters in the provider's hands at once: each waits out its upload and the provider's"
            " checks (Lob: under a second), so one at a time a run of 500 takes minutes. A 429 from"
            " the provider's rate limit is waited out and retried."
        ),
    )
    letters_mail_type: str = Field(
        default="usps_first_class_certified",
        description="How notices are mailed: certified gives a tracking number and proof of mailing.",
    )
    lender_address: str = Field(
        default="1 Lender Plaza|Des Moines|IA|50309|US",
        description="The lender's return address on letters: line1|city|state|postal code|country.",
    )
    letters_senders: dict[str, str] = Field(
        default_factory=dict,
        description=(
            'Return addresses by the country a letter goes to, as JSON: {"GB": "line1|city||postal code|GB"};'
            " letters to any other country go from lender_address. Where a notice is served by post"
            " (GB, IE), a letters provider that does not say where it posts is taken to post from"
            " the country of this address."
        ),
    )
    fca_default_sheet: Path | None = Field(
        default=None,
        description=(
            "The PDF of the FCA's current default information sheet, enclosed with every GB default"
            " notice (Consumer Credit Act 1974 s.88(4A)); unset, a GB default notice is blocked, not"
            " mailed. Replace the file when the FCA publishes a new version."
        ),
    )
    fca_arrears_sheet: Path | None = Field(
        default=None,
        description=(
            "The PDF of the FCA's current arrears information sheet, enclosed with every GB notice of"
            " sums in arrears (Consumer Credit Act 1974 ss.86A-86B); unset, such a notice is blocked,"
            " not mailed. Replace the file when the FCA publishes a new version."
        ),
    )
    lender_contact: str = Field(
        default="+1 515 555 0100, 1 Lender Plaza, Des Moines, IA 50309",
        description="The desk that takes payments and questions, printed on every notice.",
    )
    agency_provider: str = Field(
        default="sandbox", description="Entry-point name of the repossession agency provider."
    )
    agency_base_url: str | None = Field(
        default=None,
        description="Base URL of the agency platform; unset with the sandbox provider, a sandbox is started.",
    )
    agency_credentials: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='The agency provider\'s settings as JSON: {"client_id", "api_key", "webhook_secret"}.',
    )
    webhook_host: str = Field(
        default="127.0.0.1", description="Where `arrears serve` listens for provider callbacks."
    )
    webhook_port: int = Field(default=8787, ge=0, le=65535)
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Not used (a warning says so): each provider verifies its callbacks with its own secret.",
    )
    webhook_public_url: str | None = Field(
        default=None, description="The URL providers call (behind a proxy): Twilio signs the full URL."
    )
    webhook_store_wait: float = Field(
        default=5.0,
        gt=0,
        le=10,
        description=(
            "Seconds a callback waits to be stored before it is kept in the spool and acknowledged:"
            " a third of Twilio's 15 s webhook timeout; an import holds SQLite's lock for minutes."
        ),
    )
    webhook_spool_dir: Path | None = Field(
        default=None,
        description=(
            "Where callbacks acknowledged while the database was busy wait to be stored"
            " (default: `webhook-spool` beside the SQLite database, or under ARREARS_HOME)."
        ),
    )
    import_cache_mib: int = Field(
        default=128,
        ge=1,
        description=(
            "SQLite's page cache of an import, in MiB: with less, the pages of the indexes a large"
            " file writes all over (the contact points' numbers) are written out and read back."
        ),
    )
    shard_size: int = Field(default=10_000, ge=1, description="Accounts per advance shard.")
    shard_workers: int = Field(
        default=2,
        ge=1,
        description="Processes that advance shards and send dispatch batches at once (one per core; "
        "1: in the run's own process).",
    )
    dispatch_batch: int = Field(default=10_000, ge=1, description="Outbox rows per dispatch task.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)

    @field_validator("letters_senders")
    @classmethod
    def _senders(cls, value: dict[str, str]) -> dict[str, str]:
        for country, address in value.items():
            if not re.fullmatch(r"[A-Z]{2}", country):
                raise ValueError(f"{country!r} is not an ISO 3166-1 alpha-2 country code")
            parts = address.split("|")
            if len(parts) != 5 or not all(parts[i].strip() for i in (0, 1, 3)):
                raise ValueError(f"the {country} address is not line1|city|state|postal code|country")
            if not re.fullmatch(r"[A-Z]{2}", parts[4]):
                raise ValueError(f"the {country} address does not end in an ISO 3166-1 alpha-2 country code")
        return value

    @field_validator("fca_default_sheet", "fca_arrears_sheet")
    @classmethod
    def _sheet(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        # Here, not at import: it loads the letters package (reportlab), and only where it is set.
        from arrears.letters.enclosures import ENCLOSURES, read_enclosure

        [enclosure] = {e for found in ENCLOSURES.values() for e in found if e.setting == info.field_name}
        path = value.expanduser()
        read_enclosure(enclosure, path)  # ValueError naming the setting and the fault
        return path

    @field_validator("lender_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value


def redact_url(url: str) -> str:
    """`url` with its password masked: `https://user:***@host/`. Other URLs are returned as is."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + "***", url)


def redact_urls(text: str) -> str:
    """`text` with the password of every URL in it masked (an error message quoting a URL)."""
    return redact_url(text)


def describe_error(error: Exception) -> str:
    """A settings error for one line: each field and what is wrong with it, never its value.

    Pydantic's own message quotes the input (`input_value=...`), which for a credentials field or
    a database URL is a secret; so only the field names and the rule they break are kept.
    """
    if isinstance(error, ValidationError):
        parts = [
            f"{'.'.join(str(part) for part in e['loc']) or 'settings'}: {e['msg']}"
            for e in error.errors(include_url=False, include_input=False, include_context=False)
        ]
        return redact_urls("; ".join(parts))
    # pydantic-settings' SettingsError names the field and the source, not the value.
    return redact_urls(str(error).splitlines()[0] if str(error) else type(error).__name__)


@lru_cache
def get_settings() -> Settings:
    return Settings()
