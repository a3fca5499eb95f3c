"""Example arrears SMS provider plugin: a generic JSON-over-HTTP SMS gateway (`sms.jsonhttp`)."""

from arrears_sms_example.provider import JsonHttpSettings, JsonHttpSmsProvider

__all__ = ["JsonHttpSettings", "JsonHttpSmsProvider"]
