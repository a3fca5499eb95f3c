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

from fastapi import FastAPI, Request, Response

from integrations._sandbox import (
    CREDENTIALS_ENV,
    bearer_ok,
    control_routes,
    json_response,
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

__all__ = ["CREDENTIALS_ENV", "DEFAULT_CREDENTIALS", "create_app", "main"]

# Well-known values for a sandbox started by hand; never valid anywhere but here.
DEFAULT_CREDENTIALS = BureauCredentials(subscriber_code="SUBSANDBOX", api_key="bk_sandbox_api_key")
_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return json_response(payload, status, headers, ensure_ascii=True)


# What an injected fault answers with
_FAULTS = {
    429: ("rate_limited", "Too many requests."),
    503: ("unavailable", "The service is unavailable."),
    500: ("internal", "Internal error."),
}


def _refuse(status: int, headers: dict[str, str] | None) -> Response:
    return _error(status, *_FAULTS[status], headers)


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
        if not bearer_ok(request, creds.api_key):
            return _error(401, "unauthorized", "The API key is missing or not valid.")
        if request.headers.get("x-subscriber-code", "") != creds.subscriber_code:
            return _error(403, "subscriber_unknown", "The subscriber code is not enabled for this API key.")
        return None

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

        return await with_faults(st, "pull", run, _refuse)

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

        return await with_faults(st, "furnish", run, _refuse)

    @app.get("/v1/furnishings")
    async def find_furnishings(request: Request, idempotency_key: str) -> Response:
        st.count("requests.furnish_lookup")
        if (refused := denied(request)) is not None:
            return refused
        found = st.by_key.get(("furnish", idempotency_key))
        return _json({"furnishings": [found.answer] if found else []})

    # -- the sandbox's own controls --------------------------------------------------------------

    control_routes(app, st, Faults, health=lambda: {"ok": True, "records": len(st.records)})

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

    return app


def main(argv: list[str] | None = None) -> None:
    """`python -m integrations.bureau.sandbox_server --port N`: serve until interrupted."""
    serve(
        argv,
        prog="python -m integrations.bureau.sandbox_server",
        description=(__doc__ or "").split("\n")[0],
        port=8026,
        label="bureau sandbox",
        create_app=create_app,
        credentials=BureauCredentials,
        defaults=DEFAULT_CREDENTIALS,
    )


if __name__ == "__main__":
    main()
