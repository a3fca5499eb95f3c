"""The webhook server: provider callbacks in, verified before anything changes (DESIGN §6).

Routes:

- `POST /sms/{provider}/status`: delivery receipts (Twilio form callbacks, Aliyun SmsReport arrays)
- `POST /sms/{provider}/inbound`: borrowers' replies; STOP words opt out before the next send
- `POST /court/{provider}/status`: court filing status changes

`{provider}` names an SMS provider given to `create_app` (the settings' `sms_provider` when built
from settings). A Twilio-shaped provider's callbacks are verified by their `X-Twilio-Signature`;
every other callback must carry our own `X-Arrears-Signature: t=<unix>,v1=<hex>`, the hex
HMAC-SHA256 of `f"{t}.{body}"` under the webhook secret, at most five minutes old. A callback
that does not verify is answered 403 and changes nothing; one told twice changes nothing the
second time. Numbers are masked in every log line; texts are never logged.

After a reply or a court status change, `account_lifecycle` runs for the account in a background
thread (one at a time, coalesced per account), so the webhook answers at once; under
`arrears serve`, `run_lifecycle_deployment()` hands it to the served `account-lifecycle/account`.

    app = create_app(engine=engine, sms_providers={"twilio": provider}, secret="...")
    with WebhookServer(app, port=8787):   # uvicorn in a thread, as `arrears serve` runs it
        ...
    python -m deployments.webhooks        # or on its own, configured like `arrears serve`
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol, Self
from urllib.parse import parse_qsl

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from arrears.clock import parse_instant
from arrears.inbound import inbound_address
from arrears.masking import mask_phone
from arrears.settings import get_settings
from arrears.storage import get_engine
from deployments.mail_webhooks import mail_providers_from_settings, mail_router
from integrations._masking import scrub
from integrations.errors import InvalidCallback
from integrations.providers import build_provider
from integrations.sms import SmsProvider
from integrations.sms._signing import twilio_signature
from integrations.sms.aliyun import AliyunSmsProvider
from integrations.sms.twilio import TwilioSmsProvider
from tasks import inbound as record

__all__ = [
    "MAX_AGE",
    "SIGNATURE_HEADER",
    "CourtCallbacks",
    "CourtUpdate",
    "LifecycleRunner",
    "SignatureError",
    "WebhookConfig",
    "WebhookServer",
    "create_app",
    "main",
    "providers_from_settings",
    "run_lifecycle_deployment",
    "sign",
    "verify_signature",
    "webhook_config",
    "webhook_server",
]

log = logging.getLogger("arrears.webhooks")

SIGNATURE_HEADER = "X-Arrears-Signature"
MAX_AGE = timedelta(minutes=5)  # older signatures are replays
MAX_SKEW = timedelta(seconds=30)  # a sender's clock may run this far ahead of ours
MAX_BODY = 1 << 20  # an Aliyun report array of a busy minute fits many times over
CHINA = timezone(timedelta(hours=8))  # Aliyun's times are Beijing time, without an offset
_TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
_COURT_STATUS = re.compile(r"^[a-z][a-z_-]{0,15}$")  # fits Referral.status (16 characters)


# -- our own signature --------------------------------------------------------------------------


class SignatureError(Exception):
    """A callback whose signature is missing, wrong, too old or from the future: answer 403."""


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The `X-Arrears-Signature` value for `body` (what a sender, or a test, puts on a callback)."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify_signature(
    secret: str | None, header: str | None, body: bytes, *, now: float | None = None
) -> None:
    """Raise `SignatureError` unless `header` signs `body` under `secret` within `MAX_AGE`.

    Several `v1=` values may be given (a sender rotating secrets); one matching is enough.
    """
    if not secret:
        raise SignatureError("no webhook secret is configured: signed callbacks are refused")
    if not header:
        raise SignatureError(f"{SIGNATURE_HEADER} is missing")
    stamp: int | None = None
    given: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                stamp = int(value)
            except ValueError:
                raise SignatureError("signature timestamp is not a number") from None
        elif key == "v1":
            given.append(value)
    if stamp is None or not given:
        raise SignatureError("signature lacks t= or v1=")
    current = time.time() if now is None else now
    if current - stamp > MAX_AGE.total_seconds():
        raise SignatureError("signature is too old (a replay?)")
    if stamp - current > MAX_SKEW.total_seconds():
        raise SignatureError("signature is from the future")
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, v) for v in given):
        raise SignatureError("signature does not verify")


# -- court callbacks ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CourtUpdate:
    """One status change of a filing, as a court provider's `parse_callback` would return it."""

    filing_id: str
    status: str
    at: datetime
    reason: str | None = None


class CourtCallbacks(Protocol):
    """What the webhook needs of a court provider (`integrations/court/`, being written): parse
    and verify one callback, raising `InvalidCallback` if it does not verify. Its items need
    `filing_id`, `status`, `at` and `reason` attributes."""

    def parse_callback(
        self, headers: Mapping[str, str], body: bytes, *, url: str | None = None
    ) -> Sequence[Any]: ...


def _parse_court_json(body: bytes, now: datetime) -> list[CourtUpdate]:
    """Until the court provider exists: `{filing_id, status, reason, at}`, or an array of them."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("court callback is not JSON") from None
    items = payload if isinstance(payload, list) else [payload]
    updates = []
    for item in items:
        if not isinstance(item, dict) or not item.get("filing_id") or not item.get("status"):
            raise ValueError("court callback item lacks filing_id or status")
        at = parse_instant(str(item["at"])) if item.get("at") else now
        reason = str(item["reason"]) if item.get("reason") else None
        updates.append(CourtUpdate(str(item["filing_id"]), str(item["status"]), at, reason))
    return updates


# -- the lifecycle in the background ------------------------------------------------------------


def _run_account_lifecycle(account_id: str, reason: str) -> Any:
    from flows.account_lifecycle import account_lifecycle  # Prefect loads on first use, not at import

    return account_lifecycle(account_id=account_id, reason=reason)


def run_lifecycle_deployment(deployment: str = "account-lifecycle/account") -> Callable[[str, str], Any]:
    """A `LifecycleRunner` job that hands the run to a served deployment instead of running it
    here: one API call, then the runner of `arrears serve` (or a worker) executes it, with the
    run named, tagged and retried like any other. Returns the created flow run."""

    def run(account_id: str, reason: str) -> Any:
        from prefect.deployments import run_deployment

        return run_deployment(
            deployment,
            parameters={"account_id": account_id, "reason": reason},
            timeout=0,
            as_subflow=False,
            flow_run_name=f"account {account_id}",
            tags=[f"account:{account_id.lower()}", f"reason:{reason}"],
        )

    return run


class LifecycleRunner:
    """Runs `account_lifecycle` for accounts named by callbacks, one at a time, off the request.

    One worker: replies are rare, and two runs for one account at once would both advance it.
    An account already waiting is not queued again. The runs see the context the runner was
    made in (Prefect settings included), not the request thread's.
    """

    def __init__(self, run: Callable[[str, str], Any] = _run_account_lifecycle) -> None:
        self._run = run
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhook-lifecycle")
        self._context = contextvars.copy_context()
        self._lock = threading.Lock()
        self._waiting: dict[str, Future[Any]] = {}
        self._futures: list[Future[Any]] = []

    def submit(self, account_id: str, reason: str) -> Future[Any]:
        with self._lock:
            waiting = self._waiting.get(account_id)
            if waiting is not None:
                return waiting
            future = self._executor.submit(self._context.copy().run, self._job, account_id, reason)
            self._waiting[account_id] = future
            self._futures = [f for f in self._futures if not f.done()] + [future]
            return future

    def _job(self, account_id: str, reason: str) -> Any:
        with self._lock:
            self._waiting.pop(account_id, None)  # from here on, a new event queues a new run
        try:
            return self._run(account_id, reason)
        except Exception:
            log.exception(
                "account_lifecycle for %s (%s) failed; the daily cycle catches up", account_id, reason
            )
            raise

    def drain(self, timeout: float | None = None) -> list[Any]:
        """Wait for every run submitted so far; their results (tests, shutdown)."""
        with self._lock:
            futures = list(self._futures)
        deadline = None if timeout is None else time.monotonic() + timeout
        results = []
        for future in futures:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            results.append(future.result(left))
        return results

    def close(self) -> None:
        """Finish the run in progress; drop the queued ones (the next cycle covers them)."""
        with self._lock:
            dropped = sum(1 for f in self._waiting.values() if f.cancel())
        if dropped:
            log.warning("shutting down: %d queued account_lifecycle runs dropped", dropped)
        self._executor.shutdown(wait=True, cancel_futures=True)


# -- the app --------------------------------------------------------------------------------------


def create_app(
    *,
    engine: Engine,
    sms_providers: Mapping[str, SmsProvider],
    secret: str | None,
    court_providers: Mapping[str, CourtCallbacks] | None = None,
    twilio_signed: Collection[str] | None = None,
    public_url: str | None = None,
    lifecycle: LifecycleRunner | None = None,
    clock: Callable[[], float] = time.time,
    mail_providers: Mapping[str, Mapping[str, Any]] | None = None,
) -> FastAPI:
    """The webhook app over `engine`, verifying callbacks with the providers given.

    - `sms_providers`: route name → provider (built against the vendor, or the sandbox in tests).
    - `secret`: the `X-Arrears-Signature` key; None refuses every callback that needs it.
    - `court_providers`: route name → court provider whose `parse_callback` verifies its own
      callbacks; other court routes take the HMAC-signed JSON of `_parse_court_json`.
    - `twilio_signed`: SMS routes whose callbacks carry `X-Twilio-Signature`, verified with the
      provider's auth token (default: the Twilio-shaped providers); the others need our signature.
    - `public_url`: the scheme and host the vendor calls (behind a proxy, the URL we see is not
      the URL Twilio signed).
    - `lifecycle`: where lifecycle runs go (default: a `LifecycleRunner` of `account_lifecycle`);
      the app closes the one it makes, not one it was given.
    - `mail_providers`: kind (`letters`, `agency`) → route name → provider (`deployments.mail_webhooks`).
    """
    courts = dict(court_providers or {})
    signed_by_vendor = (
        set(twilio_signed)
        if twilio_signed is not None
        else {name for name, p in sms_providers.items() if isinstance(p, TwilioSmsProvider)}
    )
    own_runner = lifecycle is None
    runner = lifecycle or LifecycleRunner()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        if not secret:
            log.warning(
                "no webhook secret (ARREARS_WEBHOOK_SECRET): callbacks without a vendor signature are refused"
            )
        yield
        if own_runner:
            await run_in_threadpool(runner.close)

    app = FastAPI(
        title="arrears webhooks", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.lifecycle = runner

    def now() -> datetime:
        return datetime.fromtimestamp(clock(), UTC)

    def url_of(request: Request) -> str:
        if not public_url:
            return str(request.url)
        query = request.url.query
        return public_url.rstrip("/") + request.url.path + (f"?{query}" if query else "")

    async def read(request: Request) -> bytes:
        declared = request.headers.get("content-length", "0")
        if declared.isdigit() and int(declared) > MAX_BODY:
            raise _Refused(413, "callback body too large")
        body = await request.body()
        if len(body) > MAX_BODY:
            raise _Refused(413, "callback body too large")
        return body

    def verify_ours(request: Request, body: bytes) -> None:
        try:
            verify_signature(secret, request.headers.get(SIGNATURE_HEADER), body, now=clock())
        except SignatureError as e:
            raise _Refused(403, str(e)) from None

    async def store(fn: Callable[..., Any], /, **kw: Any) -> Any:
        """`fn(engine, **kw)` off the event loop. A failure answers 500 (every vendor retries)
        and is logged in one line with numbers masked: a driver's error text carries the
        statement's parameters, and uvicorn's own traceback would print them whole."""
        try:
            return await run_in_threadpool(fn, engine, **kw)
        except Exception as e:
            first_line = (scrub(str(e)).splitlines() or [""])[0][:300]
            log.error("storing a callback failed: %s: %s", type(e).__name__, first_line)
            raise _Refused(500, "internal error; retry later") from None

    def sms_provider(name: str) -> SmsProvider:
        provider = sms_providers.get(name)
        if provider is None:
            raise _Refused(404, f"no SMS provider {name!r}")
        return provider

    @app.exception_handler(_Refused)
    async def _refused(request: Request, error: _Refused) -> Response:
        # Anything else is a 500 (Starlette's own), which every vendor retries.
        log.warning("%s refused (%d): %s", request.url.path, error.status, error.reason)
        return JSONResponse({"detail": error.reason}, status_code=error.status)

    @app.post("/sms/{provider}/status")
    async def sms_status(provider: str, request: Request) -> Response:
        sms = sms_provider(provider)
        body = await read(request)
        headers = dict(request.headers)
        if provider in signed_by_vendor:
            if "x-twilio-signature" not in headers:
                raise _Refused(403, "X-Twilio-Signature is missing")
            try:
                reports = sms.parse_callback(headers, body, url=url_of(request))
            except InvalidCallback as e:
                raise _Refused(403, str(e)) from None
        else:
            verify_ours(request, body)
            try:
                reports = sms.parse_callback(headers, body, url=url_of(request))
            except InvalidCallback as e:
                raise _Refused(400, str(e)) from None
        applied = await store(record.record_delivery_reports, provider=sms.info.name, reports=reports)
        log.info(
            "sms.%s status: %d reports, %d moved, %d already there, %d unknown",
            provider,
            len(reports),
            len(applied.changed),
            applied.unchanged,
            len(applied.unmatched),
        )
        if isinstance(sms, AliyunSmsProvider):
            if applied.unmatched:
                # Maybe a report faster than dispatch's write of the provider id: a non-zero code
                # makes the vendor push again (1, 5 and 10 minutes later); repeats change nothing.
                unknown = len(applied.unmatched)
                return JSONResponse({"code": 1, "msg": f"{unknown} unknown, retry later"})
            return JSONResponse({"code": 0, "msg": "成功"})
        if isinstance(sms, TwilioSmsProvider):
            return Response(status_code=200)
        return JSONResponse({"ok": True, "changed": len(applied.changed)})

    @app.post("/sms/{provider}/inbound")
    async def sms_inbound(provider: str, request: Request) -> Response:
        sms = sms_provider(provider)
        body = await read(request)
        received = now()
        if provider in signed_by_vendor:
            messages = _twilio_inbound(sms, request, body, url_of(request))
        else:
            verify_ours(request, body)
            messages = _json_inbound(body, received)
        lifecycle_accounts: list[str] = []
        for address, text, at, callback_id in messages:
            result = await store(
                record.record_inbound_sms,
                address=address,
                text=text,
                at=min(at, received),
                provider=sms.info.name,
                callback_id=callback_id,
            )
            log.info(
                "sms.%s inbound from %s: %s%s, %d accounts",
                provider,
                mask_phone(address),
                result.classified.kind,
                " (repeat)" if result.recorded.duplicate else "",
                len(result.recorded.accounts),
            )
            lifecycle_accounts += result.lifecycle_accounts
        for account_id in dict.fromkeys(lifecycle_accounts):
            runner.submit(account_id, "reply")
        if provider in signed_by_vendor:  # Twilio: empty TwiML, so no auto-reply goes out
            return Response(_TWIML_EMPTY, media_type="text/xml")
        if isinstance(sms, AliyunSmsProvider):
            return JSONResponse({"code": 0, "msg": "成功"})
        return JSONResponse({"ok": True})

    @app.post("/court/{provider}/status")
    async def court_status(provider: str, request: Request) -> Response:
        body = await read(request)
        court = courts.get(provider)
        if court is not None:
            try:
                updates: Sequence[Any] = court.parse_callback(
                    dict(request.headers), body, url=url_of(request)
                )
            except InvalidCallback as e:
                raise _Refused(403, str(e)) from None
        else:
            verify_ours(request, body)
            try:
                updates = _parse_court_json(body, now())
            except ValueError as e:
                raise _Refused(400, str(e)) from None
        for u in updates:
            if not _COURT_STATUS.match(str(u.status)):
                raise _Refused(400, f"court status {str(u.status)[:40]!r} is not a short lower-case word")
        digest = hashlib.sha256(body).hexdigest()
        known = 0
        for i, u in enumerate(updates):
            result = await store(
                record.record_court_status,
                filing_id=str(u.filing_id),
                status=str(u.status),
                at=min(u.at, now()),
                provider=provider,
                callback_id=f"sha256:{digest}:{i}",
                reason=getattr(u, "reason", None),
            )
            known += result.known
            if result.changed and result.account_id:
                runner.submit(result.account_id, "court")
        if updates and not known:
            raise _Refused(404, "no referral has this filing id")
        return JSONResponse({"ok": True})

    app.include_router(mail_router(engine, mail_providers or {}))
    return app


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


Received = tuple[str, str, datetime, str]  # E.164 sender, text, when sent, callback id


def _twilio_inbound(sms: SmsProvider, request: Request, body: bytes, url: str) -> list[Received]:
    """Verify a Twilio inbound form (`X-Twilio-Signature`, as for status callbacks) and read it.

    Not through `parse_callback`: that reads delivery reports and wants a MessageStatus."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise _Refused(403, "inbound callback is not form-encoded") from None
    token = sms.settings.auth_token.get_secret_value()  # type: ignore[attr-defined]
    given = request.headers.get("x-twilio-signature", "")
    expected = twilio_signature(token, url, pairs)
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise _Refused(403, "inbound callback signature does not verify")
    form = dict(pairs)
    address = inbound_address(form.get("From", ""))
    if address is None or "Body" not in form:
        raise _Refused(400, "inbound callback lacks a From number or a Body")
    callback_id = form.get("MessageSid") or form.get("SmsSid") or f"sha256:{hashlib.sha256(body).hexdigest()}"
    return [(address, form["Body"], datetime.now(UTC), callback_id)]


def _json_inbound(body: bytes, received: datetime) -> list[Received]:
    """Aliyun-style inbound (SmsUp): `{phone_number, content, send_time[, sequence_id]}` or an array."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _Refused(400, "inbound callback is not JSON") from None
    items = payload if isinstance(payload, list) else [payload]
    messages = []
    for item in items:
        if not isinstance(item, dict) or "content" not in item or not item.get("phone_number"):
            raise _Refused(400, "inbound item lacks phone_number or content")
        address = inbound_address(str(item["phone_number"]), "CN")
        if address is None:
            raise _Refused(400, "inbound item's phone_number is not a number")
        at = _china_time(item.get("send_time")) or received
        sequence = item.get("sequence_id")
        if sequence not in (None, ""):
            callback_id = f"seq:{sequence}"
        else:
            canonical = json.dumps(item, sort_keys=True, ensure_ascii=False).encode()
            callback_id = "sha256:" + hashlib.sha256(canonical).hexdigest()
        messages.append((address, str(item["content"]), at, callback_id))
    return messages


def _china_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA).astimezone(UTC)
    except ValueError:
        try:
            return parse_instant(str(value))
        except ValueError:
            return None


# -- running it -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookConfig:
    """`ARREARS_WEBHOOK_*` until these move into `arrears.settings.Settings`."""

    host: str = "127.0.0.1"
    port: int = 8787
    secret: str | None = None
    public_url: str | None = None

    def __repr__(self) -> str:
        secret = "'***'" if self.secret else None
        return (
            f"WebhookConfig(host={self.host!r}, port={self.port}, secret={secret}, "
            f"public_url={self.public_url!r})"
        )


def webhook_config() -> WebhookConfig:
    settings = get_settings()
    return WebhookConfig(
        host=settings.webhook_host,
        port=settings.webhook_port,
        secret=settings.webhook_secret.get_secret_value() if settings.webhook_secret else None,
        public_url=settings.webhook_public_url,
    )


def providers_from_settings() -> dict[str, SmsProvider]:
    """The configured SMS provider under its settings name, built as `tasks.providers` builds it; none
    for the embedded sandbox (no URL: the cycle starts its own, and nothing calls back)."""
    settings = get_settings()
    if settings.sms_base_url is None:
        return {}
    credentials = {k: v.get_secret_value() for k, v in settings.sms_credentials.items()}
    provider = build_provider("sms", settings.sms_provider, settings.sms_base_url, credentials)
    return {settings.sms_provider: provider}


class WebhookServer:
    """uvicorn serving `app` in a daemon thread: `arrears serve` starts it beside Prefect's runner."""

    def __init__(
        self, app: FastAPI, *, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 10.0
    ) -> None:
        self._server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
        )
        self._thread = threading.Thread(target=self._server.run, name="webhooks", daemon=True)
        self._startup_timeout = startup_timeout
        self.url = ""

    def start(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the webhook server did not start (is the port free?)")
            time.sleep(0.02)
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextmanager
def webhook_server(
    config: WebhookConfig | None = None, *, lifecycle: LifecycleRunner | None = None
) -> Iterator[WebhookServer]:
    """The webhook server as configured (settings, `ARREARS_WEBHOOK_*`) until the block ends;
    `lifecycle` as in `create_app` (closed here too, if given)."""
    config = config or webhook_config()
    with ExitStack() as stack:
        if lifecycle is not None:
            stack.callback(lifecycle.close)
        providers = {name: stack.enter_context(p) for name, p in providers_from_settings().items()}
        engine = get_engine(get_settings().database_url)
        app = create_app(
            engine=engine,
            sms_providers=providers,
            secret=config.secret,
            public_url=config.public_url,
            lifecycle=lifecycle,
            mail_providers=mail_providers_from_settings(stack),
        )
        yield stack.enter_context(WebhookServer(app, host=config.host, port=config.port))


def main() -> None:
    """`python -m deployments.webhooks`: the webhook server alone, in the foreground."""
    from arrears.storage import migrate

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = webhook_config()
    engine = get_engine(get_settings().database_url)
    migrate(engine)
    with ExitStack() as stack:
        providers = {name: stack.enter_context(p) for name, p in providers_from_settings().items()}
        app = create_app(
            engine=engine,
            sms_providers=providers,
            secret=config.secret,
            public_url=config.public_url,
            mail_providers=mail_providers_from_settings(stack),
        )
        uvicorn.run(app, host=config.host, port=config.port, log_level="info", access_log=False)


if __name__ == "__main__":
    main()
