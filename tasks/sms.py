"""The SMS provider for this process: built from settings, or a sandbox the cycle starts itself.

A flow opens one provider around its dispatch (`sms_session`) and every dispatch task of the run
uses it, so connections and the sandbox process are shared instead of rebuilt per batch.
"""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from arrears.settings import get_settings
from integrations.errors import ConfigError
from integrations.sandbox import start_sandbox
from integrations.sms.factory import build_provider
from integrations.sms.protocol import SmsProvider

__all__ = ["sms_session", "current_sms"]

_current: SmsProvider | None = None


@contextmanager
def sms_session() -> Iterator[SmsProvider]:
    """The configured provider; with the sandbox provider and no URL, a sandbox server started here."""
    global _current
    settings = get_settings()
    with ExitStack() as stack:
        if settings.sms_base_url is None:
            if settings.sms_provider != "sandbox":
                raise ConfigError(f"ARREARS_SMS_BASE_URL is required for the {settings.sms_provider!r} SMS provider")
            sandbox = stack.enter_context(start_sandbox())
            base_url, credentials = sandbox.base_url, dict(sandbox.credentials)
        else:
            base_url = settings.sms_base_url
            credentials = {k: v.get_secret_value() for k, v in settings.sms_credentials.items()}
        provider = stack.enter_context(build_provider(settings.sms_provider, base_url, credentials))
        previous, _current = _current, provider
        try:
            yield provider
        finally:
            _current = previous


def current_sms() -> SmsProvider:
    if _current is None:
        raise RuntimeError("no SMS provider is open: dispatch runs inside sms_session()")
    return _current
