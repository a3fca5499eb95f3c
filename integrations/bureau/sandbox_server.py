"""A sandbox credit bureau: one FastAPI app speaking the JSON API of `integrations.bureau.rest`.

- `POST /v1/reports`, `GET /v1/reports?idempotency_key=K`: profile pulls. Bearer API key and
  subscriber code checked; the permissible purpose checked against FCRA 604; the answer is a
  pure function of the subject (a hash of its national id, else its phone, else its name), so
  tests are repeatable. National ids ending 0007 or 0013 carry a chapter 7 or 13 bankruptcy,
  0999 a deceased indicator, 0404 have no file (404 `no_record`).
- `POST /v1/furnishings?period=YYYY-MM`, `GET /v1/furnishings?idempotency_key=K`: Metro 2
  uploads, checked for record lengths, descriptor words, header, trailer and its base count;
  refused files are answered (`accepted: false` with the errors), not failed.
- Both deduplicate by `Idempotency-Key`: a resend of the same request gets the first answer
  (`Idempotent-Replayed: true`), the same key with another body a 409.
- `/_sandbox/…`: `health`, `messages` (what was executed), `stats`, `reset`, `faults` (latency,
  bursts of 429/503 with Retry-After, 500 after executing, timeouts), `uploads/{id}` (a file as
  received).

Run it alone with `python -m integrations.bureau.sandbox_server --port 8026`; the flows and the
tests start it in a separate process through `integrations.bureau.sandbox.start_bureau_sandbox`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request, Response

from integrations.bureau._sandbox_state import (
    BureauCredentials,
    Faults,
    Route,
    SandboxRecord,
    SandboxState,
    check_metro2,
    profile_for,
    subject_seed,
)
from integrations.bureau.protocol import PERMISSIBLE_PURPOSES

__all__ = ["CREDENTIALS_ENV", "DEFAULT_CREDENTIALS", "create_app", "main"]

CREDENTIALS_ENV = "ARREARS_SANDBOX_CREDENTIALS"  # JSON object; how start_sandbox hands them over
# Well-known values for a sandbox started by hand; never valid anywhere but here.
DEFAULT_CREDENTIALS = BureauCredentials(subscriber_code="SUBSANDBOX", api_key="bk_sandbox_api_key")
_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(payload), status, headers, media_type="application/json")


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": {"code": code, "message": message}}, status, headers)


def create_app(
    credentials: BureauCredentials = DEFAULT_CREDENTIALS, state: SandboxState | None = None
) -> FastAPI:
    """The sandbox app around one in-memory state (a fresh one unless given)."""
    st = state or SandboxState(credentials)
    app = FastAPI(
        title="arrears bureau sandbox", docs_url="/_sandbox/docs", openapi_url="/_sandbox/openapi.json"
    )
    app.state.sandbox = st
    creds = st.credentials

    def denied(request: Request) -> Response | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), creds.api_key.encode()):
            return _error(401, "unauthorized", "The API key is missing or not valid.")
        if request.headers.get("x-subscriber-code", "") != creds.subscriber_code:
            return _error(403, "subscriber_unknown", "The subscriber code is not enabled for this API key.")
        return None

    async def injected(route: Route, run: Callable[[], Response]) -> Response:
        """Wrap one request: latency, then 429/503 unexecuted, or execute then 500 / hold past timeout."""
        fault = st.take_fault(route)
        if st.faults.latency_ms:
            await asyncio.sleep(st.faults.latency_ms / 1000)
        retry = {"Retry-After": f"{st.faults.retry_after:g}"}
        if fault == "http_429":
            return _error(429, "rate_limited", "Too many requests.", retry)
        if fault == "http_503":
            return _error(503, "unavailable", "The service is unavailable.", retry)
        response = run()
        if fault == "http_500":
            return _error(500, "internal", "Internal error.")
        if fault == "timeouts":
            await asyncio.sleep(st.faults.timeout_ms / 1000)
        return response

    def replay(route: Route, key: str, fingerprint: str) -> Response | None:
        """The first answer for a key already used with the same request; 409 for another request."""
        first = st.by_key.get((route, key))
        if first is None:
            return None
        if first.fingerprint != fingerprint:
            return _error(409, "idempotency_conflict", "Idempotency-Key was used with a different request.")
        st.count(f"dedup.{route}")
        return _json(first.answer, 200, {"Idempotent-Replayed": "true"})

    # -- pulls ----------------------------------------------------------------------------------

    @app.post("/v1/reports")
    async def pull(request: Request) -> Response:
        st.count("requests.pull")
        if (refused := denied(request)) is not None:
            return refused
        key = request.headers.get("idempotency-key", "")
        if not key:
            return _error(400, "idempotency_key_required", "Every pull needs an Idempotency-Key header.")
        raw = await request.body()
        try:
            body = json.loads(raw)
            subject = body["subject"]
            name = str(subject.get("name") or "").strip()
            national_id = subject.get("national_id") or None
            phone = subject.get("phone") or None
            reference = str(body["reference"])
            purpose = str(body.get("permissible_purpose") or "")
        except (ValueError, KeyError, TypeError, AttributeError):
            return _error(400, "invalid_request", "The body is not a pull request.")

        def run() -> Response:
            fingerprint = hashlib.sha256(raw).hexdigest()
            if (again := replay("pull", key, fingerprint)) is not None:
                return again
            if purpose not in PERMISSIBLE_PURPOSES:
                return _error(
                    400, "purpose_not_permissible", "No permissible purpose under FCRA 604 was given."
                )
            if not name or not (national_id or phone):
                return _error(422, "invalid_subject", "A subject needs a name and a national id or a phone.")
            if national_id and not re.fullmatch(r"\d{3}-?\d{2}-?\d{4}", str(national_id)):
                return _error(422, "invalid_subject", "The national id is not nine digits.")
            now = st.now()
            report_id = "RPT-" + uuid.uuid4().hex[:16].upper()
            answer = profile_for(
                subject_seed(name, national_id, phone),
                national_id=national_id,
                reference=reference,
                purpose=purpose,
                report_id=report_id,
                pulled_at=now,
            )
            if answer is None:
                return _error(404, "no_record", "No file matches the subject.")
            st.record(SandboxRecord(report_id, "pull", key, now, answer, fingerprint, reference=reference))
            return _json(answer, 201)

        return await injected("pull", run)

    @app.get("/v1/reports")
    async def find_reports(request: Request, idempotency_key: str) -> Response:
        st.count("requests.pull_lookup")
        if (refused := denied(request)) is not None:
            return refused
        found = st.by_key.get(("pull", idempotency_key))
        return _json({"reports": [found.answer] if found else []})

    # -- furnishing -----------------------------------------------------------------------------

    @app.post("/v1/furnishings")
    async def furnish(request: Request, period: str = "") -> Response:
        st.count("requests.furnish")
        if (refused := denied(request)) is not None:
            return refused
        key = request.headers.get("idempotency-key", "")
        if not key:
            return _error(400, "idempotency_key_required", "Every upload needs an Idempotency-Key header.")
        if not _PERIOD.match(period):
            return _error(422, "invalid_period", "period must be YYYY-MM.")
        content = await request.body()

        def run() -> Response:
            fingerprint = hashlib.sha256(period.encode() + b"\0" + content).hexdigest()
            if (again := replay("furnish", key, fingerprint)) is not None:
                return again
            records, errors = check_metro2(content, period)
            now = st.now()
            submission_id = "SUB-" + uuid.uuid4().hex[:16].upper()
            answer = {
                "submission_id": submission_id,
                "period": period,
                "accepted": not errors,
                "records": records,
                "errors": errors[:1000],
                "received_at": now.isoformat(),
            }
            st.record(
                SandboxRecord(
                    submission_id, "furnish", key, now, answer, fingerprint, period=period, content=content
                )
            )
            return _json(answer, 201)

        return await injected("furnish", run)

    @app.get("/v1/furnishings")
    async def find_furnishings(request: Request, idempotency_key: str) -> Response:
        st.count("requests.furnish_lookup")
        if (refused := denied(request)) is not None:
            return refused
        found = st.by_key.get(("furnish", idempotency_key))
        return _json({"furnishings": [found.answer] if found else []})

    # -- the sandbox's own controls --------------------------------------------------------------

    @app.get("/_sandbox/health")
    async def health() -> dict[str, Any]:
        return {"ok": True, "records": len(st.records)}

    @app.get("/_sandbox/messages")
    async def messages(
        route: str | None = None,
        idempotency_key: str | None = None,
        reference: str | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> dict[str, Any]:
        """What was executed, oldest first (the name matches the SMS sandbox's, for SandboxHandle)."""
        found = [
            r
            for r in st.records
            if (not route or r.route == route)
            and (not idempotency_key or r.idempotency_key == idempotency_key)
            and (not reference or r.reference == reference)
        ]
        return {"total": len(found), "messages": [r.public() for r in found[offset : offset + limit]]}

    @app.get("/_sandbox/uploads/{submission_id}")
    async def upload(submission_id: str) -> Response:
        found = st.by_id.get(submission_id)
        if found is None or found.route != "furnish":
            return _error(404, "not_found", "No such submission.")
        return Response(found.content, 200, media_type="application/octet-stream")

    @app.get("/_sandbox/stats")
    async def stats() -> dict[str, Any]:
        return {"records": len(st.records), "counters": dict(st.counters)}

    @app.post("/_sandbox/reset")
    async def reset() -> dict[str, Any]:
        st.reset()
        return {"ok": True}

    @app.get("/_sandbox/faults")
    async def get_faults() -> Faults:
        return st.faults

    @app.post("/_sandbox/faults")
    async def set_faults(faults: Faults) -> Faults:
        st.faults = faults
        return st.faults

    return app


def _credentials_from_env() -> tuple[BureauCredentials, bool]:
    raw = os.environ.get(CREDENTIALS_ENV)
    if not raw:
        return DEFAULT_CREDENTIALS, True
    return BureauCredentials.from_mapping(json.loads(raw)), False


def _exit_with_parent(parent_pid: int) -> None:
    """A sandbox started for a run or a test session must not outlive it, even if it crashed."""

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    """`python -m integrations.bureau.sandbox_server --port N`: serve until interrupted."""
    import uvicorn

    parser = argparse.ArgumentParser(
        prog="python -m integrations.bureau.sandbox_server", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8026)
    parser.add_argument("--fd", type=int, default=None, help="serve on this inherited, listening socket")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    credentials, defaults = _credentials_from_env()
    app = create_app(credentials)
    if args.parent_pid:
        _exit_with_parent(args.parent_pid)
    config = uvicorn.Config(
        app, log_level=args.log_level, access_log=False, lifespan="off", timeout_keep_alive=65
    )
    server = uvicorn.Server(config)
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(128)
        host, port = sock.getsockname()[:2]
        print(f"bureau sandbox on http://{host}:{port}", file=sys.stderr)
        if defaults:
            print(f"credentials (sandbox defaults): {json.dumps(credentials.as_mapping())}", file=sys.stderr)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
