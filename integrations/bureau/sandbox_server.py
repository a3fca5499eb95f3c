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

import hashlib
import json
import re
import uuid
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response

from integrations._sandbox import (
    CREDENTIALS_ENV,
    bearer_ok,
    control_router,
    create_sandbox_app,
    json_response,
    refuser,
    replayed,
    serve,
    with_faults,
)
from integrations._sandbox import (
    error_response as _error,
)
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

__all__ = ["CREDENTIALS_ENV", "DEFAULT_CREDENTIALS", "create_app", "main", "rest_router", "sandbox_router"]

# Well-known values for a sandbox started by hand; never valid anywhere but here.
DEFAULT_CREDENTIALS = BureauCredentials(subscriber_code="SUBSANDBOX", api_key="bk_sandbox_api_key")
_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
# What an injected fault answers with
_refuse = refuser(
    {
        429: ("rate_limited", "Too many requests."),
        503: ("unavailable", "The service is unavailable."),
        500: ("internal", "Internal error."),
    }
)


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return json_response(payload, status, headers, ensure_ascii=True)


class _Bureau:
    """The bureau's JSON API over one state: pulls and Metro 2 uploads, and their lookups by key."""

    def __init__(self, state: SandboxState) -> None:
        self.st = state

    def denied(self, request: Request, route: str) -> Response | None:
        """Counts the request; a 401 or 403 unless the API key and subscriber code are the sandbox's."""
        creds = self.st.credentials
        self.st.count(f"requests.{route}")
        if not bearer_ok(request, creds.api_key):
            return _error(401, "unauthorized", "The API key is missing or not valid.")
        if request.headers.get("x-subscriber-code", "") != creds.subscriber_code:
            return _error(403, "subscriber_unknown", "The subscriber code is not enabled for this API key.")
        return None

    def replay(self, route: Route, key: str, fingerprint: str) -> Response | None:
        """The first answer for a key already used with the same request; 409 for another request."""
        first = self.st.by_key.get((route, key))
        if first is None:
            return None
        if first.fingerprint != fingerprint:
            return _error(409, "idempotency_conflict", "Idempotency-Key was used with a different request.")
        self.st.count(f"dedup.{route}")
        return replayed(first.answer, ensure_ascii=True)

    async def pull(self, request: Request) -> Response:
        if (refused := self.denied(request, "pull")) is not None:
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
            if (again := self.replay("pull", key, fingerprint)) is not None:
                return again
            return self.report(key, fingerprint, name, national_id, phone, reference, purpose)

        return await with_faults(self.st, "pull", run, _refuse)

    def report(
        self,
        key: str,
        fingerprint: str,
        name: str,
        national_id: str | None,
        phone: str | None,
        reference: str,
        purpose: str,
    ) -> Response:
        """A new pull: the subject checked, then the profile the subject always gets."""
        if purpose not in PERMISSIBLE_PURPOSES:
            return _error(400, "purpose_not_permissible", "No permissible purpose under FCRA 604 was given.")
        if not name or not (national_id or phone):
            return _error(422, "invalid_subject", "A subject needs a name and a national id or a phone.")
        if national_id and not re.fullmatch(r"\d{3}-?\d{2}-?\d{4}", str(national_id)):
            return _error(422, "invalid_subject", "The national id is not nine digits.")
        now = self.st.now()
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
        self.st.record(SandboxRecord(report_id, "pull", key, now, answer, fingerprint, reference=reference))
        return _json(answer, 201)

    async def furnish(self, request: Request, period: str = "") -> Response:
        if (refused := self.denied(request, "furnish")) is not None:
            return refused
        key = request.headers.get("idempotency-key", "")
        if not key:
            return _error(400, "idempotency_key_required", "Every upload needs an Idempotency-Key header.")
        if not _PERIOD.match(period):
            return _error(422, "invalid_period", "period must be YYYY-MM.")
        content = await request.body()
        return await with_faults(self.st, "furnish", lambda: self.upload(key, period, content), _refuse)

    def upload(self, key: str, period: str, content: bytes) -> Response:
        fingerprint = hashlib.sha256(period.encode() + b"\0" + content).hexdigest()
        if (again := self.replay("furnish", key, fingerprint)) is not None:
            return again
        records, errors = check_metro2(content, period)
        now = self.st.now()
        submission_id = "SUB-" + uuid.uuid4().hex[:16].upper()
        answer = {
            "submission_id": submission_id,
            "period": period,
            "accepted": not errors,
            "records": records,
            "errors": errors[:1000],
            "received_at": now.isoformat(),
        }
        record = SandboxRecord(
            submission_id, "furnish", key, now, answer, fingerprint, period=period, content=content
        )
        self.st.record(record)
        return _json(answer, 201)

    async def find_reports(self, request: Request, idempotency_key: str) -> Response:
        if (refused := self.denied(request, "pull_lookup")) is not None:
            return refused
        found = self.st.by_key.get(("pull", idempotency_key))
        return _json({"reports": [found.answer] if found else []})

    async def find_furnishings(self, request: Request, idempotency_key: str) -> Response:
        if (refused := self.denied(request, "furnish_lookup")) is not None:
            return refused
        found = self.st.by_key.get(("furnish", idempotency_key))
        return _json({"furnishings": [found.answer] if found else []})


def rest_router(state: SandboxState) -> APIRouter:
    """The bureau's JSON API (`/v1/reports`, `/v1/furnishings`) over `state`."""
    bureau = _Bureau(state)
    router = APIRouter(prefix="/v1")
    router.add_api_route("/reports", bureau.pull, methods=["POST"])
    router.add_api_route("/reports", bureau.find_reports, methods=["GET"])
    router.add_api_route("/furnishings", bureau.furnish, methods=["POST"])
    router.add_api_route("/furnishings", bureau.find_furnishings, methods=["GET"])
    return router


def sandbox_router(state: SandboxState) -> APIRouter:
    """`/_sandbox/…`: the shared controls (health, reset, faults) and the bureau's own."""
    router = control_router(state, Faults, health=lambda: {"ok": True, "records": len(state.records)})

    @router.get("/messages")
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
            for r in state.records
            if (not route or r.route == route)
            and (not idempotency_key or r.idempotency_key == idempotency_key)
            and (not reference or r.reference == reference)
        ]
        return {"total": len(found), "messages": [r.public() for r in found[offset : offset + limit]]}

    @router.get("/uploads/{submission_id}")
    async def upload(submission_id: str) -> Response:
        found = state.by_id.get(submission_id)
        if found is None or found.route != "furnish":
            return _error(404, "not_found", "No such submission.")
        return Response(found.content, 200, media_type="application/octet-stream")

    @router.get("/stats")
    async def stats() -> dict[str, Any]:
        return {"records": len(state.records), "counters": dict(state.counters)}

    return router


def create_app(
    credentials: BureauCredentials = DEFAULT_CREDENTIALS, state: SandboxState | None = None
) -> FastAPI:
    """The sandbox app around one in-memory state (a fresh one unless given)."""
    st = state or SandboxState(credentials)
    return create_sandbox_app("arrears bureau sandbox", st, rest_router(st), sandbox_router(st))


def main(argv: list[str] | None = None) -> None:
    """`python -m integrations.bureau.sandbox_server --port N`: serve until interrupted."""
    serve(
        argv,
        module="integrations.bureau.sandbox_server",
        doc=__doc__,
        port=8026,
        label="bureau sandbox",
        create_app=create_app,
        credentials=BureauCredentials,
        defaults=DEFAULT_CREDENTIALS,
    )


if __name__ == "__main__":
    main()
