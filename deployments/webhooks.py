"""The webhook server: provider callbacks in, each verified by its own provider (DESIGN §6).

Routes: `POST /{kind}/{provider}/{event}`, e.g. `/sms/twilio/status`, `/sms/aliyun/inbound`,
`/court/ecf/status`. The server knows no vendor: it hands the headers, the body and the URL the
vendor called to the provider registered under `{kind}/{provider}`, whose `parse_callback`
authenticates the callback as its vendor does (a Twilio signature, the secret token in an Aliyun
callback URL, a court gateway's HMAC) and reads it; the server stores what it returns and answers
with the provider's own `acknowledge` (empty TwiML, Aliyun's `{"code": 0, "msg": "成功"}`).

- a callback that does not verify: 403, nothing changes;
- authentic but malformed: 400;
- authentic, about something we do not know (a message id, a filing id), or an item that cannot
  be read (a reply whose sender is no phone number): acknowledged, and kept in the audit trail
  for operators (a refusal would only make the vendor push it again, or lose the rest of it);
- the database busy past `ARREARS_WEBHOOK_STORE_WAIT` (an import holding SQLite's lock): kept in
  the spool and acknowledged; stored in order once the lock frees (`deployments.callback_spool`);
- storing failed otherwise: 500, the one answer that asks every vendor to deliver again.

Bodies are capped at `MAX_BODY` while they stream in (413), before anything reads them whole.
At start-up every registered provider must be able to authenticate its callbacks
(`check_callbacks`): an empty signing key or token refuses the start, naming the setting.

After a reply or a court status change, `account_lifecycle` runs for the account in a background
thread (one at a time, coalesced per account), so the webhook answers at once; under
`arrears serve`, `run_lifecycle_deployment()` hands it to the served `account-lifecycle/account`.

    app = create_app(engine=engine, providers={"sms": {"twilio": provider}})
    with WebhookServer(app, port=8787):   # uvicorn in a thread, as `arrears serve` runs it
        ...
    python -m deployments.webhooks        # or on its own, configured like `arrears serve`
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arrears.inbound import inbound_address, storable, whole_characters
from arrears.settings import get_settings
from arrears.spool import webhook_spool
from arrears.storage import bounded_writer, get_engine, is_busy
from deployments.callback_spool import ITEM_TYPES, Drainer, Received, store_received
from deployments.mail_webhooks import mail_providers_from_settings, mail_router
from integrations._masking import scrub
from integrations.callbacks import UnreadableItem
from integrations.errors import ConfigError, InvalidCallback, UnverifiedCallback
from integrations.providers import build_provider
from integrations.sms.protocol import InboundMessage

__all__ = [
    "BODY_TIMEOUT",
    "MAX_BODY",
    "BodyLimit",
    "LifecycleRunner",
    "WebhookConfig",
    "WebhookConfigError",
    "WebhookNotStarted",
    "WebhookServer",
    "create_app",
    "main",
    "providers_from_settings",
    "run_lifecycle_deployment",
    "webhook_config",
    "webhook_server",
]

log = logging.getLogger("arrears.webhooks")

MAX_BODY = 1 << 20  # an Aliyun report array of a busy minute fits many times over
# A vendor sends a callback whole in well under a second, and gives up on the answer after
# seconds (Twilio 15 s); a client still trickling its body after this is holding a connection.
BODY_TIMEOUT = 30.0
KINDS = ("sms", "court")  # the kinds whose provider settings the server reads
STORED = frozenset(ITEM_TYPES.values())  # what a provider's parse_callback may return


class WebhookConfigError(RuntimeError):
    """The webhook server cannot start as configured; the message names the setting."""


class WebhookNotStarted(RuntimeError):
    """The webhook server did not start listening (its port taken, its host not this machine's)."""


# -- the body cap ---------------------------------------------------------------------------------


class BodyLimit:
    """Pure ASGI middleware: a request body over `max_body` bytes is answered 413 as soon as the
    declared length or the chunks received so far exceed it, never read whole; one not received
    whole within `body_timeout` seconds (a client sending a byte now and then) is answered 408 and
    its connection closed. The body under the cap is buffered and replayed to the app (it reads it
    whole anyway, to verify it)."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY, body_timeout: float = BODY_TIMEOUT) -> None:
        self.app = app
        self.max_body = max_body
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body:
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                log.warning("callback refused (408): body not received within %.0f s", self.body_timeout)
                await _answer_and_close(send, 408, b'{"detail":"callback body too slow"}')
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await self._refuse(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        log.warning("callback refused (413): body over %d bytes", self.max_body)
        await _answer_and_close(send, 413, b'{"detail":"callback body too large"}')


async def _answer_and_close(send: Send, status: int, payload: bytes) -> None:
    """A JSON answer, asking the server to close the connection after it (the rest of the body is
    never read)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


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
    providers: Mapping[str, Mapping[str, Any]] | None = None,
    sms_providers: Mapping[str, Any] | None = None,
    court_providers: Mapping[str, Any] | None = None,
    public_url: str | None = None,
    lifecycle: LifecycleRunner | None = None,
    clock: Callable[[], float] = time.time,
    max_body: int = MAX_BODY,
    body_timeout: float = BODY_TIMEOUT,
    mail_providers: Mapping[str, Mapping[str, Any]] | None = None,
    store_wait: float | None = None,
    spool_dir: Path | None = None,
) -> FastAPI:
    """The webhook app over `engine`, routing callbacks to the providers given.

    - `providers`: kind → route name → provider (built against the vendor, or a sandbox in
      tests); `sms_providers` and `court_providers` add to its `sms` and `court` kinds.
    - `public_url`: the scheme and host the vendors call (behind a proxy, the URL we see is not
      the URL a vendor signed); without it, `X-Forwarded-Proto` and `X-Forwarded-Host` are used.
    - `lifecycle`: where lifecycle runs go (default: a `LifecycleRunner` of `account_lifecycle`);
      the app closes the one it makes, not one it was given.

    Raises `ConfigError` if a provider (a letters or agency one too) cannot authenticate its
    callbacks (`check_callbacks`).
    - `mail_providers`: kind (`letters`, `agency`) → route name → provider (`deployments.mail_webhooks`).
    - `max_body`, `body_timeout`: the largest body taken (413 beyond), and how long its sender
      may take to send it (408 beyond).
    - `store_wait`, `spool_dir`: how long a callback waits to be stored before it is spooled and
      acknowledged, and where the spool is (`deployments.callback_spool`; default: the settings
      `ARREARS_WEBHOOK_STORE_WAIT`, `ARREARS_WEBHOOK_SPOOL_DIR`, else beside the SQLite database).
    """
    routes: dict[str, dict[str, Any]] = {kind: dict(named) for kind, named in (providers or {}).items()}
    routes.setdefault("sms", {}).update(sms_providers or {})
    routes.setdefault("court", {}).update(court_providers or {})
    for kind, named in [*routes.items(), *(mail_providers or {}).items()]:
        for name, provider in named.items():
            check = getattr(provider, "check_callbacks", None)
            if check is not None:
                try:
                    check()
                except ConfigError as e:
                    raise ConfigError(f"{kind}/{name}: {e.reason}", code=e.code) from None
    own_runner = lifecycle is None
    runner = lifecycle or LifecycleRunner()
    settings = get_settings()
    wait = settings.webhook_store_wait if store_wait is None else store_wait
    spool = webhook_spool(
        engine.url.render_as_string(hide_password=False), spool_dir or settings.webhook_spool_dir
    )
    drainer = Drainer(engine, spool, runner.submit, wait=wait)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        drainer.start()  # first, what a crash left in the spool
        yield
        await run_in_threadpool(drainer.stop)
        if own_runner:
            await run_in_threadpool(runner.close)

    app = FastAPI(
        title="arrears webhooks", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.add_middleware(BodyLimit, max_body=max_body, body_timeout=body_timeout)
    app.state.lifecycle = runner
    app.state.spool = spool

    def now() -> datetime:
        return datetime.fromtimestamp(clock(), UTC)

    def url_of(request: Request) -> str:
        query = request.url.query
        tail = request.url.path + (f"?{query}" if query else "")
        if public_url:
            return public_url.rstrip("/") + tail
        # A signature still needs the vendor's key: these only say which URL it covers. Either
        # may come alone: a TLS proxy that passes the public Host through says only the scheme.
        forwarded = request.headers.get("x-forwarded-host")
        proto = request.headers.get("x-forwarded-proto")
        if forwarded or proto:
            scheme = (proto or request.url.scheme).split(",")[0].strip()
            host = forwarded.split(",")[0].strip() if forwarded else request.url.netloc
            return f"{scheme}://{host}{tail}"
        return str(request.url)

    def store_or_spool(received: Received) -> bool:
        """Store `received` now, waiting at most `store_wait` in all; or, when the database stays
        busy that long (or callbacks already wait in the spool, to be stored first), keep it in
        the spool for the drainer. True if spooled. Raises what storing raises otherwise."""
        if not spool.pending():
            try:
                with bounded_writer(engine, wait) as writer:
                    store_received(writer, received, runner.submit)
                return False
            except Exception as e:
                if not is_busy(e):
                    raise
        spool.put(received.to_document())
        return True

    async def store(received: Received) -> None:
        """Store or spool `received` off the event loop. A failure answers 500 (every vendor
        retries) and is logged in one line with numbers masked: a driver's error text carries the
        statement's parameters, and uvicorn's own traceback would print them whole."""
        try:
            spooled = await run_in_threadpool(store_or_spool, received)
        except Exception as e:
            first_line = (scrub(str(e)).splitlines() or [""])[0][:300]
            log.error("storing a callback failed: %s: %s", type(e).__name__, first_line)
            raise _Refused(500, "internal error; retry later") from None
        if spooled:
            drainer.wake()
            log.warning(
                "%s: the database is busy: callback kept in the spool (%d waiting) and acknowledged",
                received.route,
                len(spool.pending()),
            )

    @app.exception_handler(_Refused)
    async def _refused(request: Request, error: _Refused) -> Response:
        # Anything else is a 500 (Starlette's own), which every vendor retries.
        # Quoted: the path and the reason may hold what the caller put in the URL, newlines included,
        # and a line of ours must not be forged by it.
        log.warning("%r refused (%d): %r", request.url.path, error.status, error.reason)
        return JSONResponse({"detail": error.reason}, status_code=error.status)

    # Letters and agencies first: the catch-all route below would take their paths.
    app.include_router(mail_router(engine, mail_providers or {}))

    @app.post("/{kind}/{name}/{event}")
    async def callback(kind: str, name: str, event: str, request: Request) -> Response:
        provider = routes.get(kind, {}).get(name)
        if provider is None:
            raise _Refused(404, f"no {kind!r} provider {name!r}")
        route = f"{kind}/{name}/{event}"
        body = await request.body()  # BodyLimit has capped it
        try:
            items = list(
                provider.parse_callback(dict(request.headers), body, url=url_of(request), event=event)
            )
        except UnverifiedCallback as e:
            raise _Refused(403, str(e)) from None
        except InvalidCallback as e:
            raise _Refused(400, str(e)) from None
        for n, item in enumerate(items):
            if type(item) not in STORED:
                log.error("%s: the provider returned %s, which nothing stores", route, type(item).__name__)
                raise _Refused(500, "internal error; retry later")
            item = items[n] = _storable(item)
            if isinstance(item, InboundMessage) and inbound_address(item.sender) is None:
                # Kept for operators, like an item the provider could not read: refused, the
                # callback would take the rest of its array (a STOP among them) with it.
                items[n] = _unreadable_reply(item)
        info = getattr(provider, "info", None)
        await store(Received.of(kind, name, event, info.name if info else name, now(), body, items))
        answer = provider.acknowledge(event)
        return Response(answer.body, status_code=answer.status, media_type=answer.media_type)

    return app


def _storable(item: Any) -> Any:
    """`item` with each NUL and lone surrogate in its texts made U+FFFD (`storable`). A gateway
    that cut a long text between the halves of an emoji pushes one as a JSON escape, and a form
    may carry %00; neither the database (PostgreSQL's text refuses NUL) nor the spool's UTF-8 file
    can hold them, so the whole callback was answered 500 at every push, and lost with every
    opt-out in it once the vendor gave up. An id so changed is no message's: its report is kept
    as unmatched, for operators. A borrower's words keep their NULs until they are stored
    (`inbound.storable`): read before, "S\x00TOP" is a STOP, as the borrower's phone showed it."""
    fixed = {}
    for f in dataclasses.fields(item):
        if isinstance(value := getattr(item, f.name), str):
            words = isinstance(item, InboundMessage) and f.name == "text"
            if (kept := whole_characters(value) if words else storable(value)) != value:
                fixed[f.name] = kept
    return dataclasses.replace(item, **fixed) if fixed else item


def _unreadable_reply(item: InboundMessage) -> UnreadableItem:
    said = {"sender": item.sender, "text": item.text, "message_id": item.message_id}
    return UnreadableItem(
        "an inbound message's sender is not a phone number", json.dumps(said, ensure_ascii=False)
    )


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# -- running it -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookConfig:
    """Where the server listens, and the public URL vendors call (`ARREARS_WEBHOOK_*`)."""

    host: str = "127.0.0.1"
    port: int = 8787
    public_url: str | None = None


def webhook_config() -> WebhookConfig:
    settings = get_settings()
    if settings.webhook_secret is not None:
        # Documented once as the secret of `X-Arrears-Signature`, but no provider ever read it: a
        # deployment that set it believed it protected a callback it did not. Said, not refused.
        log.warning(
            "ARREARS_WEBHOOK_SECRET is not used: each provider verifies its callbacks with its own "
            "secret in its credentials (the court's callback_secret, the letters and agency providers' "
            "webhook_secret, the SMS callback_token or auth token); unset it"
        )
    return WebhookConfig(
        host=settings.webhook_host, port=settings.webhook_port, public_url=settings.webhook_public_url
    )


def providers_from_settings() -> dict[str, dict[str, Any]]:
    """The configured provider of each kind that calls back, under its settings name, built as
    `tasks.providers` builds it; none for a kind without a base URL (the embedded sandbox: the
    cycle starts its own, and nothing calls back). Raises `WebhookConfigError` naming the setting
    when a provider cannot be built or could not authenticate its callbacks."""
    settings = get_settings()
    built: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        base_url = getattr(settings, f"{kind}_base_url", None)
        if base_url is None:
            continue
        name = getattr(settings, f"{kind}_provider")
        stored = getattr(settings, f"{kind}_credentials")
        credentials = {k: v.get_secret_value() for k, v in stored.items()}
        prefix = f"ARREARS_{kind.upper()}"
        try:
            provider = build_provider(kind, name, base_url, credentials)
        except ConfigError as e:
            raise WebhookConfigError(f"{prefix}_BASE_URL or {prefix}_CREDENTIALS: {e.reason}") from None
        check = getattr(provider, "check_callbacks", None)
        try:
            if check is not None:
                check()
        except ConfigError as e:
            provider.close()
            raise WebhookConfigError(f"{prefix}_CREDENTIALS: {e.reason}") from None
        built[kind] = {name: provider}
    return built


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
                config = self._server.config
                raise WebhookNotStarted(
                    f"the webhook server did not start on {config.host}:{config.port} "
                    "(ARREARS_WEBHOOK_HOST, ARREARS_WEBHOOK_PORT): is the port free?"
                )
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
        providers = _entered(stack, providers_from_settings())
        engine = get_engine(get_settings().database_url)
        app = create_app(
            engine=engine,
            providers=providers,
            public_url=config.public_url,
            lifecycle=lifecycle,
            mail_providers=mail_providers_from_settings(stack),
        )
        yield stack.enter_context(WebhookServer(app, host=config.host, port=config.port))


def _entered(stack: ExitStack, providers: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {kind: {n: stack.enter_context(p) for n, p in named.items()} for kind, named in providers.items()}


def no_telemetry() -> None:
    """A lifecycle run started by a callback loads Prefect in this process: it sends no analytics
    from a lender's machine (as `arrears` itself, `deployments.cli`), unless the operator said so."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def main() -> None:
    """`python -m deployments.webhooks`: the webhook server alone, in the foreground."""
    no_telemetry()
    from arrears.settings import describe_error

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request's URL at INFO, a password in a provider's base URL with it
    # (https://user:pass@host: `arrears providers list` masks it); a lifecycle run sends from here.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        get_settings()
    except ValueError as e:  # a bad ARREARS_* value: the fields named, never their values
        raise SystemExit(f"the webhook server cannot start: invalid settings: {describe_error(e)}") from None
    try:
        config = webhook_config()
        engine = _migrated_engine()
        with ExitStack() as stack:
            providers = _entered(stack, providers_from_settings())
            app = create_app(
                engine=engine,
                providers=providers,
                public_url=config.public_url,
                mail_providers=mail_providers_from_settings(stack),
            )
            uvicorn.run(app, host=config.host, port=config.port, log_level="info", access_log=False)
    except (WebhookConfigError, ConfigError) as e:
        raise SystemExit(f"the webhook server cannot start: {e}") from None


def _migrated_engine() -> Engine:
    """The database, upgraded as `arrears serve` upgrades it (a new SQLite file created 0600 in a
    0700 directory, as `arrears` creates it). One that cannot be opened (the server
    down, a file that cannot be made) or that a newer arrears upgraded is a `WebhookConfigError`
    naming the setting and the cause, the URL's password masked: it was a traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    from arrears.settings import redact_urls
    from arrears.storage import SchemaTooNew, migrate

    url = get_settings().database_url
    try:
        engine = get_engine(url)  # a new SQLite file private from its first byte
        migrate(engine)
    except (SQLAlchemyError, OSError, ImportError, SchemaTooNew) as e:
        cause = redact_urls(str(getattr(e, "orig", None) or e).splitlines()[0])
        raise WebhookConfigError(
            f"cannot open the database of ARREARS_DATABASE_URL ({redact_urls(url)}): {cause}"
        ) from None
    return engine


if __name__ == "__main__":
    main()
