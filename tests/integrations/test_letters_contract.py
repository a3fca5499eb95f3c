"""The built-in letters providers pass the letters contract against the sandbox Lob, over real HTTP."""

from collections.abc import Iterator

import pytest

from integrations import registry
from integrations.letters.contract import BAD_SECRET, LettersProviderContract
from integrations.letters.lob import LobLettersProvider
from integrations.letters.sandbox import LettersSandbox, start_letters_sandbox


@pytest.fixture(scope="module")
def _letters_server() -> Iterator[LettersSandbox]:
    with start_letters_sandbox() as sandbox:
        yield sandbox


class _Built(LettersProviderContract):
    name: str

    @pytest.fixture
    def letters_sandbox(self, _letters_server: LettersSandbox) -> LettersSandbox:
        _letters_server.reset()
        return _letters_server

    @pytest.fixture
    def provider(self, letters_sandbox: LettersSandbox) -> Iterator[LobLettersProvider]:
        cls = registry.load("letters", self.name)
        credentials = {**letters_sandbox.credentials, "timeout_seconds": "0.5"}
        with cls.from_config(letters_sandbox.base_url, credentials) as provider:  # type: ignore[attr-defined]
            yield provider

    @pytest.fixture
    def bad_provider(self, letters_sandbox: LettersSandbox) -> Iterator[LobLettersProvider]:
        cls = registry.load("letters", self.name)
        credentials = {"api_key": BAD_SECRET, "webhook_secret": BAD_SECRET, "timeout_seconds": "0.5"}
        with cls.from_config(letters_sandbox.base_url, credentials) as provider:  # type: ignore[attr-defined]
            yield provider


class TestLobProvider(_Built):
    name = "lob"


class TestSandboxProvider(_Built):
    name = "sandbox"
