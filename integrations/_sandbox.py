"""What the sandbox servers of every provider kind share: faults, JSON answers, controls, `main`.

Each kind's `sandbox_server` imitates its vendors' wire formats, one `APIRouter` per vendor shape;
around them, the pieces here are the same for all: the faults applied (latency, 429/503 with
Retry-After before executing, 500 or a held answer after executing; their counters are in
`integrations._sandbox_faults`, which does not load FastAPI), the
`/_sandbox/health|reset|faults` controls, Bearer-key checks, idempotent replays, the log of
callbacks pushed, and the process entry point that `integrations.sandbox.start_sandbox` runs
(inherited socket, credentials from the environment, exit with the parent).

No `from __future__ import annotations` here: `control_router` gives FastAPI the faults model of
each kind as a real annotation, which string annotations would hide in a local variable.
"""

import argparse
import asyncio
import hmac
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, Self, TypeVar

import httpx
from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from integrations._hmac import combined_header
from integrations._http import SERVER_KEEP_ALIVE_S, tls
from integrations._sandbox_faults import CallbackFaults, FaultState, SandboxFaults

__all__ = [
    "CREDENTIALS_ENV",
    "CallbackFaults",
    "CallbackPusher",
    "CallbackUrl",
    "FaultState",
    "SandboxFaults",
    "SignRequest",
    "bearer_ok",
    "callback_client",
    "control_router",
    "create_sandbox_app",
    "error_response",
    "post_callback",
    "refuser",
    "replayed",
    "serve",
    "signature_header",
    "with_faults",
]

CREDENTIALS_ENV = "ARREARS_SANDBOX_CREDENTIALS"  # JSON object; how start_sandbox hands them over


class _Credentials(Protocol):
    """What a kind's sandbox credentials offer (`BureauCredentials`, `CourtSandboxCredentials`…)."""

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str]) -> Self: ...

    def as_mapping(self) -> dict[str, str]: ...


class _Event(Protocol):
    @property
    def id(self) -> str: ...


C = TypeVar("C", bound=_Credentials)
E = TypeVar("E", bound=_Event)
F = TypeVar("F", bound="SandboxFaults")


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None, *, ensure_ascii: bool = False
) -> Response:
    return Response(
        json.dumps(payload, ensure_ascii=ensure_ascii), status, headers, media_type="application/json"
    )


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """The `{"error": {"code", "message"}}` body the JSON APIs (bureau, court) answer with."""
    return json_response({"error": {"code": code, "message": message}}, status, headers)


def refuser(
    answers: Mapping[int, tuple[str, str]],
) -> Callable[[int, dict[str, str] | None], Response]:
    """`refuse(status, headers)` for `with_faults`: the JSON error of `answers[status]` (code, message)."""

    def refuse(status: int, headers: dict[str, str] | None) -> Response:
        return error_response(status, *answers[status], headers)

    return refuse


def replayed(payload: Any, status: int = 200, *, ensure_ascii: bool = False) -> Response:
    """The first answer again, for a resend under the same idempotency key."""
    return json_response(payload, status, {"Idempotent-Replayed": "true"}, ensure_ascii=ensure_ascii)


def bearer_ok(request: Request, api_key: str) -> bool:
    """True when the request carries `Authorization: Bearer <api_key>` (compared in constant time)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), api_key.encode())


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """`X-Arrears-Signature` value: `t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">` (our webhook's scheme)."""
    return combined_header(secret, timestamp, body)


async def with_faults(
    state: FaultState,
    target: str,
    run: Callable[[], Response],
    refuse: Callable[[int, dict[str, str] | None], Response],
) -> Response:
    """Wrap one request: latency, then 429/503 unexecuted, or execute then 500 / hold past timeout.

    `refuse(status, headers)` is the vendor's own answer for an injected 429, 503 or 500."""
    with state.answering():
        fault = state.take_fault(target)
        if state.faults.latency_ms:
            await asyncio.sleep(state.faults.latency_ms / 1000)
        retry = {"Retry-After": f"{state.faults.retry_after:g}"}
        if fault == "http_429":
            return refuse(429, retry)
        if fault == "http_503":
            return refuse(503, retry)
        response = run()
        if fault == "http_500":
            return refuse(500, None)
        if fault == "timeouts":
            await asyncio.sleep(state.faults.timeout_ms / 1000)
        return response


def create_sandbox_app(title: str, state: FaultState, *routers: APIRouter) -> FastAPI:
    """The app of a sandbox server: `state` on `app.state.sandbox`, one router per vendor shape
    and one for the sandbox's own controls.

    A client that goes away while its request is read (a run killed mid-upload, as the chaos runs
    do) is counted as `disconnects` and answered 499: it is no fault of the server's, and a
    vendor takes nothing from a request it never received whole."""
    app = FastAPI(title=title, docs_url="/_sandbox/docs", openapi_url="/_sandbox/openapi.json")
    app.state.sandbox = state
    for router in routers:
        app.include_router(router)

    async def client_gone(_request: Request, _error: Exception) -> Response:
        state.count("disconnects")
        return Response(status_code=499)

    app.add_exception_handler(ClientDisconnect, client_gone)
    return app


def control_router(
    state: Any,
    faults_model: type[F],
    *,
    health: Callable[[], dict[str, Any]],
    set_faults: Callable[[F], None] | None = None,
) -> APIRouter:
    """`GET /_sandbox/health`, `POST /_sandbox/reset`, `GET|POST /_sandbox/faults` over `state`
    (which has `reset()` and `faults`); `set_faults` replaces the plain assignment. A kind adds
    its own controls to the router it returns."""
    router = APIRouter(prefix="/_sandbox")

    @router.get("/health")
    async def health_route() -> dict[str, Any]:
        return health()

    @router.post("/reset")
    async def reset() -> dict[str, Any]:
        state.reset()
        return {"ok": True}

    @router.get("/faults", response_model=faults_model)
    async def get_faults() -> Any:
        return state.faults

    @router.post("/faults", response_model=faults_model)
    async def post_faults(faults: faults_model) -> Any:  # type: ignore[valid-type]  # a model per kind
        if set_faults is not None:
            set_faults(faults)
        else:
            state.faults = faults
        return state.faults

    return router


async def post_callback(
    client: httpx.AsyncClient, entry: dict[str, Any], url: str, body: bytes, headers: dict[str, str]
) -> httpx.Response | None:
    """POST one callback and note it in `entry` (a line of the sandbox's callback log): headers,
    body, status code, or `outcome: failed` and the error when the receiver could not be reached."""
    entry["headers"], entry["body"] = headers, body.decode()
    try:
        answer = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as e:
        entry["outcome"], entry["error"] = "failed", type(e).__name__
        return None
    entry["status_code"] = answer.status_code
    return answer


CALLBACK_TIMEOUT = 5.0  # seconds the receiver of a pushed webhook gets to answer


def callback_client() -> httpx.AsyncClient:
    """A client to push callbacks with, sharing the process's TLS context (`integrations._http.tls`):
    made for each push, it would load the certificate authorities again, ~30 ms of the event loop's
    time for every message whose receipts the Twilio sandbox pushes."""
    return httpx.AsyncClient(timeout=CALLBACK_TIMEOUT, verify=tls())


class CallbackUrl(BaseModel):
    """Where the sandbox pushes its webhooks; None: nowhere, they wait."""

    url: str | None


class SignRequest(BaseModel):
    """Whose last event to sign, and at what timestamp (an old one tests the receiver's refusal)."""

    id: str
    timestamp: int | None = None


class CallbackPusher(Generic[E]):
    """The webhook side of a sandbox whose vendor pushes each event in a signed POST of its own
    (Lob, the agency platform): the pending events delivered on request, or by a pump once the
    rules set `push_every_seconds`; the callback faults (drop, duplicate) applied; every attempt
    in the callback log; and the `/_sandbox/callbacks…` controls. The kind says how an event is
    signed (`signed(event, timestamp)`), where it goes (`url_of`) and how the log names it
    (`describe`).

    `state` has `pending`, `callbacks`, `callback_url`, `rules.push_every_seconds`, `pump`,
    `tick(now)` and the `FaultState` methods."""

    def __init__(
        self,
        state: Any,
        *,
        signed: Callable[[E, int | None], tuple[dict[str, str], bytes]],
        url_of: Callable[[E], str | None],
        describe: Callable[[E], dict[str, Any]],
    ) -> None:
        self.state = state
        self.signed = signed
        self.url_of = url_of
        self.describe = describe
        self._delivering = asyncio.Lock()  # the pump and a control request never push an event twice

    def ensure_pump(self) -> None:
        st = self.state
        if st.pump is None or st.pump.done():
            st.pump = asyncio.get_running_loop().create_task(self._pump())

    async def deliver(self) -> dict[str, int]:
        """POST the pending events, one per request; failures stay pending, drops are lost."""
        st = self.state
        outcome = {"delivered": 0, "dropped": 0, "failed": 0}
        async with self._delivering, callback_client() as client:
            for event in list(st.pending):
                url = self.url_of(event)
                if not url:
                    continue
                fault = st.take_callback_fault("webhooks")
                sent = False
                for copy in range(2 if fault == "duplicate" else 1):
                    headers, body = self.signed(event, None)
                    attempt: dict[str, Any] = {
                        "url": url,
                        "at": st.now().isoformat(),
                        **self.describe(event),
                        "headers": headers,
                        "body": body.decode(),
                        "status_code": None,
                        "copy": copy + 1,
                    }
                    if fault == "drop":
                        attempt["outcome"] = "dropped"
                    else:
                        try:
                            answer = await client.post(url, content=body, headers=headers)
                            attempt["status_code"] = answer.status_code
                            attempt["outcome"] = "delivered" if answer.is_success else "failed"
                        except httpx.HTTPError as e:
                            attempt["outcome"], attempt["error"] = "failed", type(e).__name__
                    st.callbacks.append(attempt)
                    st.count(f"callbacks.{attempt['outcome']}")
                    sent = sent or attempt["outcome"] in ("delivered", "dropped")
                outcome[attempt["outcome"]] += 1
                if sent:
                    st.pending = [e for e in st.pending if e.id != event.id]
        return {**outcome, "pending": len(st.pending)}

    async def _pump(self) -> None:
        """Push by itself when `rules.push_every_seconds` says so, as the vendor does."""
        st = self.state
        while True:
            every = st.rules.push_every_seconds
            await asyncio.sleep(every or 0.2)
            if every is not None:
                st.tick(st.now())
                if st.pending:
                    await self.deliver()

    def add_routes(
        self, router: APIRouter, *, find: Callable[[str], Any], not_found: Callable[[], Response]
    ) -> None:
        """`POST /callbacks/url`, `POST /callbacks/deliver`, `GET /callbacks` and `POST
        /callbacks/sign` (the last of the `events` of the object `find(id)` returns, signed as
        pushed; `not_found()` when there is no such object or it has no event yet) on the
        kind's control router."""
        st = self.state

        @router.post("/callbacks/url")
        async def callback_url(body: CallbackUrl) -> dict[str, Any]:
            st.callback_url = body.url
            return {"url": st.callback_url}

        @router.post("/callbacks/deliver")
        async def deliver_now() -> dict[str, int]:
            self.ensure_pump()
            st.tick(st.now())
            return await self.deliver()

        @router.get("/callbacks")
        async def callbacks() -> dict[str, Any]:
            return {"callbacks": st.callbacks, "pending": len(st.pending)}

        @router.post("/callbacks/sign")
        async def sign_event(body: SignRequest) -> Response:
            found = find(body.id)
            if found is None or not found.events:
                return not_found()
            headers, payload = self.signed(found.events[-1], body.timestamp)
            return json_response({"headers": headers, "body": payload.decode()})


def _exit_with_parent(parent_pid: int) -> None:
    """A sandbox started for a run or a test session must not outlive it, even if it crashed."""

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def serve(
    argv: list[str] | None,
    *,
    module: str,
    doc: str | None,
    port: int,
    label: str,
    create_app: Callable[[C], FastAPI],
    credentials: type[C],
    defaults: C,
    backlog: int = 128,
    uvicorn_backlog: int = 2048,
) -> None:
    """`python -m <module> --port N`: serve until interrupted, or on `--fd` for `start_sandbox`.

    The first line of `doc` describes the command. Credentials come from
    `$ARREARS_SANDBOX_CREDENTIALS` (a JSON object, read by
    `credentials.from_mapping`), else `defaults`, which are printed when the server is started by hand."""
    import uvicorn

    description = (doc or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--fd", type=int, default=None, help="serve on this inherited, listening socket")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    raw = os.environ.get(CREDENTIALS_ENV)
    creds = credentials.from_mapping(json.loads(raw)) if raw else defaults
    app = create_app(creds)
    if args.parent_pid:
        _exit_with_parent(args.parent_pid)
    config = uvicorn.Config(
        app,
        log_level=args.log_level,
        access_log=False,
        lifespan="off",
        timeout_keep_alive=SERVER_KEEP_ALIVE_S,
        backlog=uvicorn_backlog,  # 2048 is uvicorn's own default
    )
    server = uvicorn.Server(config)
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(backlog)
        host, bound = sock.getsockname()[:2]
        print(f"{label} on http://{host}:{bound}", file=sys.stderr)
        if not raw:
            print(f"credentials (sandbox defaults): {json.dumps(creds.as_mapping())}", file=sys.stderr)
    server.run(sockets=[sock])
