"""A sandbox of the JSON-over-HTTP SMS gateway, with the controls arrears' SMS contract suite uses.

- The gateway: `POST /v1/messages`, `GET /v1/messages/{id}`, `GET /v1/messages?reference=KEY`,
  Bearer auth, deduplication by `Idempotency-Key`.
- `/_sandbox/…` as in arrears' own sandboxes: `health`, `messages`, `stats`, `reset`, `faults`
  (latency, bursts of 429/503 with Retry-After, 500 or a timeout after sending, numbers refused
  by pattern), and `reports`: the signed delivery reports the gateway would push.

`integrations.sandbox.start_sandbox(server="arrears_sms_example.sandbox_server")` runs it in its
own process (it passes `--fd`, `--parent-pid`, `--log-level` and the credentials in
`ARREARS_SANDBOX_CREDENTIALS`, whose `auth_token` is the token accepted here); by hand:
`python -m arrears_sms_example.sandbox_server --port 8030` accepts `example-sandbox-token`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from arrears_sms_example.provider import signature

__all__ = ["DEFAULT_TOKEN", "Faults", "create_app", "main"]

DEFAULT_TOKEN = "example-sandbox-token"
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class Faults(BaseModel):
    """The fault names of arrears' SMS sandbox that its contract suite sets."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: int = Field(default=0, ge=0)
    http_429: int = Field(
        default=0, ge=0, description="The next N sends answer 429 with Retry-After, unsent."
    )
    http_503: int = Field(
        default=0, ge=0, description="The next N sends answer 503 with Retry-After, unsent."
    )
    http_500: int = Field(default=0, ge=0, description="The next N sends are sent, then answer 500.")
    timeouts: int = Field(default=0, ge=0, description="The next N sends are sent, then held timeout_ms.")
    timeout_ms: int = Field(default=3_000, ge=0)
    retry_after: float = Field(default=1.0, ge=0)
    invalid_numbers: str | None = Field(
        default=None, description="Regex on E.164: refused as invalid_number."
    )
    opted_out_numbers: str | None = Field(default=None, description="Regex on E.164: refused as opted_out.")


class State:
    def __init__(self, token: str) -> None:
        self.token = token
        self.reset()

    def reset(self) -> None:
        self.faults = Faults()
        self.messages: list[dict[str, Any]] = []
        self.by_id: dict[str, dict[str, Any]] = {}
        self.by_key: dict[str, tuple[str, dict[str, Any]]] = {}
        self.counters: dict[str, int] = {}

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def take_fault(self) -> str | None:
        for name in ("http_429", "http_503", "http_500", "timeouts"):
            if getattr(self.faults, name):
                setattr(self.faults, name, getattr(self.faults, name) - 1)
                self.count(f"faults.{name}")
                return name
        return None


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps({"error": {"code": code, "message": message}}),
        status,
        headers,
        media_type="application/json",
    )


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status, media_type="application/json")


def create_app(token: str = DEFAULT_TOKEN) -> FastAPI:
    st = State(token)
    app = FastAPI(
        title="JSON SMS gateway sandbox", docs_url="/_sandbox/docs", openapi_url="/_sandbox/openapi.json"
    )

    def authorised(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {st.token}"

    @app.post("/v1/messages")
    async def send(request: Request) -> Response:
        st.count("requests.send")
        if not authorised(request):
            return _error(401, "unauthorized", "The token is missing or not valid.")
        try:
            message = json.loads(await request.body())
        except ValueError:
            return _error(400, "invalid_request", "The body is not JSON.")
        fault = st.take_fault()
        if st.faults.latency_ms:
            await asyncio.sleep(st.faults.latency_ms / 1000)
        retry = {"Retry-After": f"{st.faults.retry_after:g}"}
        if fault == "http_429":
            return _error(429, "rate_limited", "Too many requests.", retry)
        if fault == "http_503":
            return _error(503, "unavailable", "The gateway is unavailable.", retry)
        response = accept(message, request.headers.get("idempotency-key"))
        if fault == "http_500":
            return _error(500, "internal", "Something went wrong.")
        if fault == "timeouts":
            await asyncio.sleep(st.faults.timeout_ms / 1000)
        return response

    def accept(message: dict[str, Any], key: str | None) -> Response:
        fingerprint = json.dumps(message, sort_keys=True)
        if key and key in st.by_key:
            first_print, first = st.by_key[key]
            if first_print != fingerprint:
                return _error(
                    409, "idempotency_conflict", "This Idempotency-Key was used for another message."
                )
            return _json(first, 200)
        to, text = str(message.get("to", "")), str(message.get("text", ""))
        f = st.faults
        if not _E164.match(to) or (f.invalid_numbers and re.search(f.invalid_numbers, to)):
            return _error(400, "invalid_number", "The number is not a valid mobile number.")
        if f.opted_out_numbers and re.search(f.opted_out_numbers, to):
            return _error(400, "opted_out", "The recipient opted out.")
        if not text:
            return _error(400, "invalid_request", "text is required.")
        message_id = "msg_" + uuid.uuid4().hex
        record = {
            "id": message_id,
            "to": to,
            "text": text,
            "sender": message.get("sender"),
            "reference": message.get("reference"),
            "status": "accepted",
            "created_at": datetime.now(UTC).isoformat(),
        }
        st.messages.append(record)
        st.by_id[message_id] = record
        if key:
            st.by_key[key] = (fingerprint, record)
        return _json(record, 201)

    @app.get("/v1/messages/{message_id}")
    async def fetch(message_id: str, request: Request) -> Response:
        st.count("requests.fetch")
        if not authorised(request):
            return _error(401, "unauthorized", "The token is missing or not valid.")
        found = st.by_id.get(message_id)
        return _json(found) if found else _error(404, "not_found", "No such message.")

    @app.get("/v1/messages")
    async def search(request: Request, reference: str) -> Response:
        st.count("requests.search")
        if not authorised(request):
            return _error(401, "unauthorized", "The token is missing or not valid.")
        return _json({"messages": [m for m in st.messages if m["reference"] == reference]})

    # -- the sandbox's own controls -----------------------------------------------------------------

    @app.get("/_sandbox/health")
    async def health() -> dict[str, Any]:
        return {"ok": True, "messages": len(st.messages)}

    @app.get("/_sandbox/messages")
    async def messages(limit: int = 1000, offset: int = 0) -> dict[str, Any]:
        return {"total": len(st.messages), "messages": st.messages[offset : offset + limit]}

    @app.get("/_sandbox/stats")
    async def stats() -> dict[str, Any]:
        return {"messages": len(st.messages), "counters": dict(st.counters)}

    @app.post("/_sandbox/reset")
    async def reset() -> dict[str, bool]:
        st.reset()
        return {"ok": True}

    @app.post("/_sandbox/faults")
    async def set_faults(faults: Faults) -> Faults:
        st.faults = faults
        return faults

    @app.get("/_sandbox/reports")
    async def reports(status: str = "delivered") -> dict[str, Any]:
        """The signed callback the gateway would push now, every message reported as `status`."""
        now = datetime.now(UTC).isoformat()
        events = [
            {"id": m["id"], "status": status, "reference": m["reference"], "at": now} for m in st.messages
        ]
        body = json.dumps({"events": events})
        return {"headers": {"X-Gateway-Signature": signature(st.token, body.encode())}, "body": body}

    return app


def _exit_with_parent(parent_pid: int) -> None:
    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m arrears_sms_example.sandbox_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8030)
    parser.add_argument("--fd", type=int, default=None, help="serve on this inherited, listening socket")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    given = json.loads(os.environ.get("ARREARS_SANDBOX_CREDENTIALS") or "{}")
    app = create_app(given.get("auth_token") or DEFAULT_TOKEN)
    if args.parent_pid:
        _exit_with_parent(args.parent_pid)
    server = uvicorn.Server(uvicorn.Config(app, log_level=args.log_level, access_log=False, lifespan="off"))
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(128)
        print(f"JSON SMS gateway sandbox on http://{args.host}:{sock.getsockname()[1]}", file=sys.stderr)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
