"""The embedded default: the Aliyun-shaped batch client, pointed at our own sandbox server.

It is the fast path (100 numbers per request) and needs nothing but the sandbox's base URL and
credentials, which `integrations.sandbox.start_sandbox` hands out. A real deployment chooses
`sms.aliyun` or `sms.twilio` in settings instead.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from integrations.metadata import ProviderInfo
from integrations.sms._base import HttpProviderSettings
from integrations.sms.aliyun import AliyunSettings, AliyunSmsProvider

__all__ = ["SERVER", "SandboxSettings", "SandboxSmsProvider"]

SERVER = "integrations.sms.sandbox_server"  # what `integrations.sandbox.start_sandbox` runs by default


class SandboxSettings(AliyunSettings):
    base_url: str = Field(description="Base URL of a running sandbox (`SandboxHandle.base_url`).")
    sign_name: str = Field(default="arrears", min_length=1, description="Signature the sandbox accepts.")
    timeout_seconds: float = Field(default=5.0, gt=0, description="Read timeout of one HTTP request.")


class SandboxSmsProvider(AliyunSmsProvider):
    info: ClassVar[ProviderInfo] = ProviderInfo(
        name="sandbox",
        kind="sms",
        title="Sandbox SMS (Aliyun-shaped batches against the local sandbox server)",
        settings=SandboxSettings,
        batch_size=100,
        deduplicates=False,
        simulated=True,
    )
    settings_model: ClassVar[type[HttpProviderSettings]] = SandboxSettings
