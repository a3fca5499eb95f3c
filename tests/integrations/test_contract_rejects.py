"""The contract suites reject a provider that breaks the protocol (a suite that passes it is a defect)."""

import inspect
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from integrations.bureau.contract import BAD_SECRET as BAD_BUREAU_SECRET
from integrations.bureau.contract import BureauProviderContract
from integrations.bureau.protocol import PullRequest
from integrations.bureau.sandbox import start_bureau_sandbox
from integrations.court.contract import BAD_SECRET as BAD_COURT_SECRET
from integrations.court.contract import CourtProviderContract
from integrations.court.ecf import EcfCourtProvider
from integrations.court.protocol import FilingEnvelope
from integrations.court.sandbox import CourtSandbox, start_court_sandbox
from integrations.errors import InvalidAddress, Permanent, ProviderError
from integrations.providers import build_provider
from integrations.sandbox import SandboxHandle
from integrations.sms import SmsProvider, SmsRequest, SmsResult
from integrations.sms.contract import SmsProviderContract


def _twilio_callback(sandbox: SandboxHandle) -> Callable[..., tuple[dict[str, str], bytes, str]]:
    def render(event: str, number: str, text: str = "") -> tuple[dict[str, str], bytes, str]:
        url = f"https://hooks.example/sms/twilio/{event}"
        fields: dict[str, Any] = {"to": number} if event == "status" else {"sender": number, "text": text}
        answer = sandbox.admin.post(
            "/_sandbox/render", json={"route": "twilio", "event": event, "url": url, **fields}
        ).json()
        return answer["headers"], answer["body"].encode(), answer["url"]

    return render


class _AcceptsAnySignature:
    """Refuses a callback without a signature, but never compares it with its own secret."""

    def __init__(self, verifier: SmsProvider) -> None:
        self._verifier = verifier  # holds the vendor's real secret, whatever this one was given

    def parse_callback(
        self, headers: Any, body: bytes, *, url: str | None = None, event: str = "status"
    ) -> Any:
        return self._verifier.parse_callback(headers, body, url=url, event=event)


def test_sms_contract_rejects_a_provider_that_only_checks_a_signature_is_there(
    make_provider: Callable[..., SmsProvider], sandbox: SandboxHandle
) -> None:
    suite = SmsProviderContract()
    honest = make_provider("twilio", bad=True)
    suite.test_callback_authenticated_with_another_secret_is_unverified(honest, _twilio_callback(sandbox))
    broken = _AcceptsAnySignature(make_provider("twilio"))
    with pytest.raises(pytest.fail.Exception):
        suite.test_callback_authenticated_with_another_secret_is_unverified(
            broken,  # type: ignore[arg-type]
            _twilio_callback(sandbox),
        )


_REJECTED = (AssertionError, pytest.fail.Exception, ProviderError)  # how a contract test fails


@pytest.fixture(autouse=True)
def _records_as_the_plugin_writes_them() -> Iterator[None]:
    """Python's own log records, not arrears' masked ones: `install_log_masking` (the CLI and the
    dispatch install it, process-wide) masks numbers and national ids in every record created, so
    once an earlier test in the worker had installed it a broken plugin's logged SSN reached caplog
    as `***-**-6789` and the plugin passed the check. A plugin author's run has no such factory."""
    factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    try:
        yield
    finally:
        logging.setLogRecordFactory(factory)


def _rejects(
    check: Callable[..., None], honest: Any, broken: Any, reset: Callable[[], None], **fixtures: Any
) -> None:
    """`check` (a contract test, given the `fixtures` it names) passes `honest` and fails `broken`:
    an assertion fails, or the provider's error escapes it."""
    wanted = {k: v for k, v in fixtures.items() if k in inspect.signature(check).parameters}
    check(honest, **wanted)
    reset()
    if "caplog" in wanted:
        wanted["caplog"].clear()
    with pytest.raises(_REJECTED):
        check(broken, **wanted)


class _Delegating:
    """Twilio's provider against the sandbox, whose Twilio route deduplicates by Idempotency-Key
    (so it may declare `deduplicates`); a subclass breaks one duty of the protocol."""

    def __init__(self, inner: SmsProvider) -> None:
        self.inner = inner
        self.info = replace(inner.info, deduplicates=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _ResendsUnderAFreshKey(_Delegating):
    """Declares deduplication but sends each call under a key of its own."""

    def send(self, request: SmsRequest) -> SmsResult:
        return self.inner.send(replace(request, idempotency_key=f"{request.idempotency_key}-{uuid.uuid4()}"))

    def send_batch(self, requests: Sequence[SmsRequest]) -> list[Any]:
        return [self.send(r) for r in requests]


class _RaisesForAForgottenMessage(_Delegating):
    """Raises where the vendor has no record of the id, instead of answering None."""

    def status(self, request: SmsRequest, provider_id: str | None = None) -> SmsResult | None:
        found = self.inner.status(request, provider_id)
        if found is None and provider_id:
            raise Permanent("not_found", f"no message {provider_id}", idempotency_key=request.idempotency_key)
        return found


class _NamesTheNumberInErrors(_Delegating):
    """Puts the refused number into the error's message."""

    def send_batch(self, requests: Sequence[SmsRequest]) -> list[Any]:
        outcomes = self.inner.send_batch(requests)
        return [
            InvalidAddress(o.code or "", f"{o.reason}: {r.to}", idempotency_key=o.idempotency_key)
            if isinstance(o, InvalidAddress)
            else o
            for r, o in zip(requests, outcomes, strict=True)
        ]


class _LogsNumbersAndTexts(_Delegating):
    """Logs each message's number and text at DEBUG."""

    def send(self, request: SmsRequest) -> SmsResult:
        logging.getLogger("plugin").debug("sending %s to %s", request.body, request.to)
        return self.inner.send(request)

    def send_batch(self, requests: Sequence[SmsRequest]) -> list[Any]:
        for request in requests:
            logging.getLogger("plugin").debug("sending %s to %s", request.body, request.to)
        return self.inner.send_batch(requests)


class _CloseDoesNothing(_Delegating):
    """Leaves its connection pool open."""

    def close(self) -> None:
        return None


class _RetriesRefusals(_Delegating):
    """Sends a refused message twice more, as if a refusal were transient."""

    def send_batch(self, requests: Sequence[SmsRequest]) -> list[Any]:
        outcomes = self.inner.send_batch(requests)
        for i, outcome in enumerate(outcomes):
            for _ in range(2):
                if isinstance(outcome, Permanent):
                    outcome = outcomes[i] = self.inner.send_batch([requests[i]])[0]
        return outcomes


@pytest.mark.parametrize(
    ("check", "broken"),
    [
        ("test_the_same_request_twice_is_one_message_where_the_vendor_deduplicates", _ResendsUnderAFreshKey),
        ("test_status_of_a_message_the_vendor_forgot_is_none", _RaisesForAForgottenMessage),
        ("test_invalid_number_fails_alone", _NamesTheNumberInErrors),
        ("test_numbers_and_texts_never_logged", _LogsNumbersAndTexts),
        ("test_close_releases_the_connections", _CloseDoesNothing),
        ("test_a_refused_number_is_not_retried", _RetriesRefusals),
    ],
)
def test_sms_contract_rejects_a_provider_that_breaks_a_duty(
    check: str,
    broken: type[_Delegating],
    make_provider: Callable[..., SmsProvider],
    sandbox: SandboxHandle,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each check passes the honest provider and fails the one that breaks only its duty."""
    _rejects(
        getattr(SmsProviderContract(), check),
        _Delegating(make_provider("twilio")),
        broken(make_provider("twilio")),
        sandbox.reset,
        sandbox=sandbox,
        caplog=caplog,
    )


_PLUGIN_SUITE = """
from integrations import retries
from integrations.agency.contract import AgencyProviderContract
from integrations.bureau.contract import BureauProviderContract
from integrations.court.contract import CourtProviderContract
from integrations.letters.contract import LettersProviderContract
from integrations.sms.contract import SmsProviderContract


class _Probe:
    def test_waits_are_not_slept(self):
        assert retries.is_testing()


class TestSms(_Probe, SmsProviderContract): ...
class TestCourt(_Probe, CourtProviderContract): ...
class TestBureau(_Probe, BureauProviderContract): ...
class TestLetters(_Probe, LettersProviderContract): ...
class TestAgency(_Probe, AgencyProviderContract): ...


class TestOutsideASuite:
    def test_waits_are_slept(self):
        assert not retries.is_testing()
"""


def test_every_contract_suite_turns_waiting_off_in_a_plugins_own_project(tmp_path: Path) -> None:
    """A plugin's test module, without this project's conftest.py, still runs the suites with waits
    off: each contract class does it itself, not the conftest that only our own tests load."""
    (tmp_path / "test_plugin.py").write_text(_PLUGIN_SUITE)
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", os.devnull, "-k", "waits"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and "6 passed" in run.stdout, run.stdout + run.stderr


# -- court and bureau --------------------------------------------------------------------------------


class _Wrapping:
    """Any provider, delegated to; a subclass breaks one duty."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _KeepsItsConnections(_Wrapping):
    def close(self) -> None:
        return None


class _NamesThePartiesInErrors(_Wrapping):
    """Adds the parties' national ids to the text of any error a submission raises."""

    def submit(self, envelope: FilingEnvelope) -> Any:
        try:
            return self.inner.submit(envelope)
        except ProviderError as e:
            e.reason += " (parties: " + ", ".join(p.national_id or "" for p in envelope.parties) + ")"
            raise


class _ResubmitsRefusals(_Wrapping):
    def submit(self, envelope: FilingEnvelope) -> Any:
        for attempt in range(3):
            try:
                return self.inner.submit(envelope)
            except Permanent:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


class _LogsTheSubject(_Wrapping):
    def pull(self, request: PullRequest) -> Any:
        logging.getLogger("plugin").debug("pulling %s, %s", request.national_id, request.phone)
        return self.inner.pull(request)


class _RepullsRefusals(_Wrapping):
    def pull(self, request: PullRequest) -> Any:
        for attempt in range(3):
            try:
                return self.inner.pull(request)
            except Permanent:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def _court() -> Iterator[CourtSandbox]:
    with start_court_sandbox() as court:
        yield court


@pytest.fixture(scope="module")
def _bureau() -> Iterator[SandboxHandle]:
    with start_bureau_sandbox() as handle:
        yield handle


@pytest.mark.parametrize(
    ("check", "broken"),
    [
        ("test_secrets_never_printed", _NamesThePartiesInErrors),
        ("test_refused_filing_is_permanent", _ResubmitsRefusals),
        ("test_close_releases_the_connections", _KeepsItsConnections),
    ],
)
def test_court_contract_rejects_a_provider_that_breaks_a_duty(
    check: str, broken: type[_Wrapping], _court: CourtSandbox
) -> None:
    """Each check passes the ECF provider and fails the one that breaks only its duty."""
    _court.reset()
    good = {**_court.credentials, "timeout_seconds": "0.5"}
    bad = {**good, "api_key": BAD_COURT_SECRET, "callback_secret": BAD_COURT_SECRET}
    with ExitStack() as built:
        honest, inner, bad_provider = (
            built.enter_context(EcfCourtProvider.from_config(_court.base_url, c)) for c in (good, good, bad)
        )
        _rejects(
            getattr(CourtProviderContract(), check),
            honest,
            broken(inner),
            _court.reset,
            court_sandbox=_court,
            bad_provider=bad_provider,
        )


@pytest.mark.parametrize(
    ("check", "broken"),
    [
        ("test_secrets_and_identities_never_printed", _LogsTheSubject),
        ("test_pull_without_permissible_purpose_is_permanent", _RepullsRefusals),
        ("test_close_releases_the_connections", _KeepsItsConnections),
    ],
)
def test_bureau_contract_rejects_a_provider_that_breaks_a_duty(
    check: str, broken: type[_Wrapping], _bureau: SandboxHandle, caplog: pytest.LogCaptureFixture
) -> None:
    """Each check passes the REST bureau provider and fails the one that breaks only its duty."""
    _bureau.reset()
    good = {**_bureau.credentials, "timeout_seconds": "0.5"}
    with ExitStack() as built:
        honest, inner, bad_provider = (
            built.enter_context(build_provider("bureau", "rest", _bureau.base_url, c))
            for c in (good, good, {**good, "api_key": BAD_BUREAU_SECRET})
        )
        _rejects(
            getattr(BureauProviderContract(), check),
            honest,
            broken(inner),
            _bureau.reset,
            sandbox=_bureau,
            bad_provider=bad_provider,
            caplog=caplog,
        )
