"""The provider of each kind for this process: built from settings, or a sandbox started for the run.

A flow opens one provider of a kind around the steps that use it (`sms_session()` around
dispatch, `bureau_session()` around the pulls or the monthly file, `court_session()` around a
referral, `letters_session()` and `agency_session()` around notices and repossession orders) and
every task of the run reaches it with `current_sms()` / `current_bureau()` / `current_court()` /
`current_letters()` / `current_agency()`, so connections and the sandbox process are shared
instead of rebuilt per task. `letters_provider()` / `agency_provider()` give the open one, or
open one for the block: letters and assignments are few, and are sent from several places.

Settings are `ARREARS_<KIND>_PROVIDER`, `_BASE_URL` and `_CREDENTIALS` (`arrears.settings`). With
the `sandbox` provider and no base URL a sandbox server is started for the session: fine in one
process; a suspended review or referral resumes in another, so a real deployment names the
vendor (or a long-running `arrears sandbox`) in the base URL.
"""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, cast

from arrears.settings import get_settings
from integrations.agency.protocol import AgencyProvider
from integrations.agency.sandbox import start_agency_sandbox
from integrations.bureau.protocol import BureauProvider
from integrations.bureau.sandbox import start_bureau_sandbox
from integrations.court.protocol import CourtProvider
from integrations.court.sandbox import start_court_sandbox
from integrations.errors import ConfigError
from integrations.letters.protocol import LettersProvider
from integrations.letters.sandbox import start_letters_sandbox
from integrations.providers import build_provider, provider_class
from integrations.sandbox import start_sandbox
from integrations.sms.protocol import SmsProvider

__all__ = [
    "ProviderConfig",
    "agency_provider",
    "agency_session",
    "bureau_session",
    "check_settings",
    "court_session",
    "current_agency",
    "current_bureau",
    "current_court",
    "current_letters",
    "current_sms",
    "letters_provider",
    "letters_session",
    "sms_config",
    "sms_for",
    "sms_session",
]

Kind = Literal["sms", "bureau", "court", "letters", "agency"]

_SANDBOX: dict[Kind, Callable[[], AbstractContextManager[Any]]] = {
    "sms": start_sandbox,
    "bureau": start_bureau_sandbox,
    "court": start_court_sandbox,
    "letters": start_letters_sandbox,
    "agency": start_agency_sandbox,
}
_open: dict[Kind, Any] = {}


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """What builds the provider of an open session again, in another process: a worker process
    (tasks.workers) reaches the same vendor, or the session's sandbox server, by its URL."""

    kind: Kind
    name: str
    base_url: str
    credentials: tuple[tuple[str, str], ...]


_configs: dict[Kind, ProviderConfig | None] = {}
_built: dict[ProviderConfig, Any] = {}  # providers built in this process from a config, kept open


@contextmanager
def _session(kind: Kind) -> Iterator[Any]:
    settings = get_settings()
    name: str = getattr(settings, f"{kind}_provider")
    base_url: str | None = getattr(settings, f"{kind}_base_url")
    with ExitStack() as stack:
        if base_url is None:
            check_settings(kind)  # a provider other than the sandbox needs its URL
            sandbox = stack.enter_context(_SANDBOX[kind]())
            base_url, credentials = sandbox.base_url, dict(sandbox.credentials)
        else:
            credentials = {
                k: v.get_secret_value() for k, v in getattr(settings, f"{kind}_credentials").items()
            }
        provider = stack.enter_context(build_provider(kind, name, base_url, credentials))
        previous = _open.get(kind), _configs.get(kind)
        _open[kind] = provider
        _configs[kind] = ProviderConfig(kind, name, base_url, tuple(sorted(credentials.items())))
        try:
            yield provider
        finally:
            _open[kind], _configs[kind] = previous


def check_settings(kind: Kind) -> None:
    """Refuse, before a run changes anything, the provider settings a session would refuse
    halfway: `ConfigError` naming the setting or the fields at fault (never their values). A
    misnamed SMS provider, or Twilio without its account, stopped a cycle after its advance,
    with the outbox written and its cycle row failed. Starts no sandbox and makes no request."""
    settings = get_settings()
    name: str = getattr(settings, f"{kind}_provider")
    base_url: str | None = getattr(settings, f"{kind}_base_url")
    try:
        provider_class(kind, name)
    except (LookupError, TypeError) as error:  # none installed under that name, or a broken one
        raise ConfigError(f"ARREARS_{kind.upper()}_PROVIDER: {error}") from None
    if base_url is None:
        if name != "sandbox":
            raise ConfigError(f"ARREARS_{kind.upper()}_BASE_URL is required for the {name!r} {kind} provider")
        return
    credentials = {k: v.get_secret_value() for k, v in getattr(settings, f"{kind}_credentials").items()}
    with build_provider(kind, name, base_url, credentials):
        pass


def _current(kind: Kind, opener: str) -> Any:
    provider = _open.get(kind)
    if provider is None:
        raise RuntimeError(f"no {kind} provider is open: these steps run inside {opener}()")
    return provider


def sms_session() -> AbstractContextManager[SmsProvider]:
    return cast(AbstractContextManager[SmsProvider], _session("sms"))


def sms_config() -> ProviderConfig:
    """The config of the open SMS session, for `sms_for` in a worker process."""
    _current("sms", "sms_session")
    config = _configs.get("sms")
    assert config is not None  # set with every open session
    return config


def sms_for(config: ProviderConfig) -> SmsProvider:
    """The SMS provider of `config`: the open session's in the process that opened it, else one
    built once per process (a worker's), open until the process ends."""
    if _configs.get("sms") == config:
        return current_sms()
    provider = _built.get(config)
    if provider is None:
        manager = build_provider("sms", config.name, config.base_url, dict(config.credentials))
        provider = _built[config] = manager.__enter__()
    return cast(SmsProvider, provider)


def bureau_session() -> AbstractContextManager[BureauProvider]:
    return cast(AbstractContextManager[BureauProvider], _session("bureau"))


def court_session() -> AbstractContextManager[CourtProvider]:
    return cast(AbstractContextManager[CourtProvider], _session("court"))


def current_sms() -> SmsProvider:
    return cast(SmsProvider, _current("sms", "sms_session"))


def current_bureau() -> BureauProvider:
    return cast(BureauProvider, _current("bureau", "bureau_session"))


def current_court() -> CourtProvider:
    return cast(CourtProvider, _current("court", "court_session"))


def letters_session() -> AbstractContextManager[LettersProvider]:
    return cast(AbstractContextManager[LettersProvider], _session("letters"))


def agency_session() -> AbstractContextManager[AgencyProvider]:
    return cast(AbstractContextManager[AgencyProvider], _session("agency"))


def current_letters() -> LettersProvider:
    return cast(LettersProvider, _current("letters", "letters_session"))


def current_agency() -> AgencyProvider:
    return cast(AgencyProvider, _current("agency", "agency_session"))


@contextmanager
def _open_or_current(kind: Kind) -> Iterator[Any]:
    provider = _open.get(kind)
    if provider is not None:
        yield provider
        return
    with _session(kind) as opened:
        yield opened


def letters_provider() -> AbstractContextManager[LettersProvider]:
    """The letters provider open in this run, or one opened for the block."""
    return cast(AbstractContextManager[LettersProvider], _open_or_current("letters"))


def agency_provider() -> AbstractContextManager[AgencyProvider]:
    """The agency provider open in this run, or one opened for the block."""
    return cast(AbstractContextManager[AgencyProvider], _open_or_current("agency"))
