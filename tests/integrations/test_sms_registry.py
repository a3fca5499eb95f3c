"""Finding and building SMS providers by name."""

import pytest

from integrations import registry
from integrations.errors import ConfigError
from integrations.providers import DEFAULT_PROVIDER, available_providers, build_provider
from integrations.sandbox import SandboxHandle
from integrations.sms import SmsProvider


@pytest.mark.parametrize("name", ["sandbox", "twilio", "aliyun", "sms.twilio"])
def test_builtin_providers_build(name: str, sandbox: SandboxHandle) -> None:
    """Each built-in name (with or without the kind prefix) builds a provider from the sandbox's mapping."""
    with build_provider("sms", name, sandbox.base_url, sandbox.credentials) as provider:
        assert isinstance(provider, SmsProvider)
        assert provider.info.entry_point == (name if "." in name else f"sms.{name}")


def test_default_is_the_batch_provider() -> None:
    """The embedded default sends batches of 100 per request."""
    assert available_providers("sms")[DEFAULT_PROVIDER].batch_size == 100


def test_unknown_name() -> None:
    """An unknown provider name is a LookupError that lists the known ones."""
    with pytest.raises(LookupError, match=r"sms\.twilio"):
        build_provider("sms", "carrier-pigeon", "http://x", {})


def test_missing_settings_name_fields_not_values() -> None:
    """Invalid settings raise ConfigError naming the fields, never echoing the values given."""
    with pytest.raises(ConfigError) as caught:
        build_provider("sms", "twilio", "http://x", {"account_sid": "AC1", "auth_token": "tok-9f8e7d"})
    assert "from_number" in str(caught.value) and "tok-9f8e7d" not in str(caught.value)
    with pytest.raises(ConfigError, match="access_key_secret"):
        build_provider("sms", "aliyun", "http://x", {"access_key_id": "LTAI", "sign_name": "S"})


def test_secret_fields_are_declared() -> None:
    """Each provider's metadata flags its secrets, so tools know what never to print."""
    infos = available_providers("sms")
    assert infos["twilio"].secret_fields() == ["auth_token", "api_key_secret"]
    assert infos["aliyun"].secret_fields() == ["access_key_secret", "callback_token"]


def test_broken_plugin_is_reported_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider that fails to load or lacks protocol methods is reported; the others still load."""
    monkeypatch.setitem(registry.BUILTIN, "sms.gone", "integrations.sms.nowhere:Provider")
    monkeypatch.setitem(registry.BUILTIN, "sms.partial", "integrations.errors:ProviderError")
    found, failures = registry.discover("sms")
    assert {"sandbox", "twilio", "aliyun"} <= set(found)
    assert {f.name for f in failures} == {"sms.gone", "sms.partial"}
    with pytest.raises(TypeError, match="send_batch"):
        registry.load("sms", "partial")


def test_entry_point_name_must_match_the_declared_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """A class registered under another name than its `info.name` is refused (docs/adding-a-provider.md §2):
    settings select it by the entry point's name, while arrears records it under `info.name`."""
    monkeypatch.setitem(registry.BUILTIN, "sms.misnamed", "integrations.sms.twilio:TwilioSmsProvider")
    found, failures = registry.discover("sms")
    assert "misnamed" not in found and "sms.misnamed" in {f.name for f in failures}
    with pytest.raises(TypeError, match="declares name 'twilio'"):
        registry.load("sms", "misnamed")


def test_a_selected_plugin_that_fails_to_import_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """`arrears cycle` with a plugin that fails to import selected says so in one line (exit 2),
    as for an unknown name, rather than a traceback."""
    from arrears.settings import get_settings
    from tasks.providers import check_settings

    monkeypatch.setitem(registry.BUILTIN, "sms.gone", "integrations.sms.nowhere:Provider")
    monkeypatch.setenv("ARREARS_SMS_PROVIDER", "gone")
    monkeypatch.setenv("ARREARS_SMS_BASE_URL", "http://127.0.0.1:9")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"ARREARS_SMS_PROVIDER: sms\.gone .*ModuleNotFoundError"):
            check_settings("sms")
    finally:
        get_settings.cache_clear()
