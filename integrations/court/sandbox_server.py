"""A sandbox court: a FastAPI app imitating an ECF 5-style e-filing gateway (see `integrations.court.ecf`).

- `POST /ecf/v5/ReviewFiling`, `GetFilingStatus`, `CancelFiling`: Bearer auth and the filer id
  checked, the filing validated (court code list, case type per court, document hashes, the SCRA
  affidavit flag), deduplicated by `Idempotency-Key` (a resend answers the first filing; other
  content under the same key is a 409).
- Filings move `submitted → under_review → accepted → served → judgment` (or `rejected`,
  `cancelled`) on request (`POST /_sandbox/advance/{filing_id}`) or over time by rules
  (`POST /_sandbox/rules`, e.g. `{"accept_after_seconds": 2}`, `reject_courts`).
- Each move is an event; `POST /_sandbox/callbacks/deliver` (or `advance` with `deliver`) POSTs the
  pending ones, signed (`integrations.court._signing`), to the filing's callback URL or the one
  registered at `POST /_sandbox/callbacks/url`. Failed deliveries stay pending; dropped ones
  (fault `drop_callbacks`) are lost, as a gateway's sometimes are. `GET /_sandbox/callbacks`
  shows every attempt; `POST /_sandbox/callbacks/sign` makes a signed callback at a given time.
- `/_sandbox/…`: `health`, `filings` (alias `messages`), `stats`, `reset`, `faults` (latency,
  bursts of 429/503 with Retry-After, 500 or a timeout after executing).

Run it alone with `python -m integrations.court.sandbox_server --port 8026`; tests and
`arrears sandbox` start it in its own process through `integrations.sandbox.start_sandbox`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Literal

import httpx
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from integrations._sandbox import (
    CREDENTIALS_ENV,
    FaultState,
    SandboxFaults,
    control_routes,
    serve,
    with_faults,
)
from integrations._sandbox import (
    error_response as _error,
)
from integrations._sandbox import (
    json_response as _json,
)
from integrations.court._signing import SIGNATURE_HEADER, signature_header
from integrations.court._wire import WIRE
from integrations.court.protocol import (
    CASE_TYPES,
    FILING_STATUSES,
    MILITARY_AFFIDAVIT,
    PARTY_ROLES,
    TERMINAL_STATUSES,
)
from integrations.court.sandbox import DEFAULT_CREDENTIALS, CourtSandboxCredentials

__all__ = ["COURTS", "CREDENTIALS_ENV", "Faults", "Rules", "create_app", "main"]

# The gateway's court code list (commercial gateways keep one per jurisdiction).
COURTS: dict[str, str] = {
    "US-CA-LASC": "Superior Court of California, County of Los Angeles",
    "US-IA-POLK": "Iowa District Court for Polk County",
    "US-MA-BMC": "Boston Municipal Court",
    "US-WI-MKE": "Milwaukee County Circuit Court",
    "GB-CCBC": "County Court Business Centre",
    "CN-SH-PD": "上海市浦东新区人民法院",
    "CN-BJ-CY": "北京市朝阳区人民法院",
    "CN-GD-FT": "深圳市福田区人民法院",
}
_CN_ONLY = {"payment_order", "security_realisation"}  # Civil Procedure Law procedures
_HAPPY = ("submitted", "under_review", "accepted", "served", "judgment")
_CASE_PREFIX = {"deficiency": "CV", "payment_order": "DU", "security_realisation": "TE"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Faults(SandboxFaults):
    """Faults to inject (`POST /_sandbox/faults`); counters count down per request or delivery."""

    scope_field: ClassVar[str] = "operation"

    operation: Literal["all", "ReviewFiling", "GetFilingStatus", "CancelFiling"] = Field(
        default="all", description="Which operation they hit."
    )
    drop_callbacks: int = Field(default=0, ge=0, description="The next N callback deliveries are lost.")


class Rules(BaseModel):
    """How filings move by themselves, in seconds after submission (None: only on request)."""

    model_config = ConfigDict(extra="forbid")

    review_after_seconds: float | None = Field(default=None, ge=0, description="submitted → under_review")
    accept_after_seconds: float | None = Field(default=None, ge=0, description="→ accepted (or rejected)")
    serve_after_seconds: float | None = Field(default=None, ge=0, description="→ served")
    judgment_after_seconds: float | None = Field(default=None, ge=0, description="→ judgment")
    reject_courts: str | None = Field(
        default=None, description="Regex on the court code: such filings are rejected instead of accepted."
    )
    reject_reason: str = Field(default="Rejected by the clerk: the notice of sale lacks proof of mailing.")


class Advance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str | None = Field(default=None, description="Target status; None: the next one on the happy path.")
    reason: str | None = Field(default=None, description="Why, for rejected and cancelled.")
    deliver: bool = Field(default=False, description="Send the pending callbacks at once.")


class CallbackUrl(BaseModel):
    url: str | None


class SignRequest(BaseModel):
    filing_id: str
    timestamp: int | None = None


@dataclass(slots=True)
class Event:
    id: str
    filing_id: str
    status: str
    at: datetime
    reason: str | None
    case_number: str | None

    def wire(self) -> dict[str, Any]:
        review, service, case = WIRE[self.status]
        return {
            "eventId": self.id,
            "filingId": self.filing_id,
            "reviewStatus": review,
            "serviceStatus": service,
            "caseStatus": case,
            "statusReason": self.reason,
            "caseNumber": self.case_number,
            "statusAt": self.at.isoformat(),
        }


@dataclass(slots=True)
class Filing:
    id: str
    idempotency_key: str
    fingerprint: str
    message: dict[str, Any]  # as received, document contents left out
    court: str
    case_type: str
    submitted_at: datetime
    callback_url: str | None
    status: str = "submitted"
    status_at: datetime | None = None
    reason: str | None = None
    case_number: str | None = None
    events: list[Event] = field(default_factory=list)

    def wire(self) -> dict[str, Any]:
        review, service, case = WIRE[self.status]
        return {
            "filingId": self.id,
            "idempotencyKey": self.idempotency_key,
            "court": self.court,
            "caseType": self.case_type,
            "reviewStatus": review,
            "serviceStatus": service,
            "caseStatus": case,
            "statusReason": self.reason,
            "caseNumber": self.case_number,
            "receivedAt": self.submitted_at.isoformat(),
            "statusAt": (self.status_at or self.submitted_at).isoformat(),
        }

    def public(self) -> dict[str, Any]:
        return {
            **self.wire(),
            "status": self.status,
            "message": self.message,
            "events": [e.wire() for e in self.events],
        }


def _path(current: str, target: str) -> list[str] | None:
    """The statuses a filing passes through from `current` to `target`; None if it cannot get there."""
    if target == "rejected":
        return {"submitted": ["under_review", "rejected"], "under_review": ["rejected"]}.get(current)
    if target == "cancelled":
        return ["cancelled"] if current in ("submitted", "under_review") else None
    if current in _HAPPY and target in _HAPPY and _HAPPY.index(target) > _HAPPY.index(current):
        return list(_HAPPY[_HAPPY.index(current) + 1 : _HAPPY.index(target) + 1])
    return None


@dataclass
class CourtState(FaultState):
    credentials: CourtSandboxCredentials
    faults: Faults = field(default_factory=Faults)
    rules: Rules = field(default_factory=Rules)
    filings: dict[str, Filing] = field(default_factory=dict)
    by_key: dict[str, Filing] = field(default_factory=dict)
    pending: list[Event] = field(default_factory=list)  # events not yet delivered nor dropped
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    callback_url: str | None = None
    counters: dict[str, int] = field(default_factory=dict)
    sequence: int = 0

    def reset(self) -> None:
        self.faults, self.rules, self.callback_url, self.sequence = Faults(), Rules(), None, 0
        for store in (self.filings, self.by_key, self.pending, self.callbacks, self.counters):
            store.clear()

    def move(self, filing: Filing, target: str, at: datetime, reason: str | None = None) -> list[Event]:
        """Move `filing` to `target` through the statuses between; one event per status."""
        steps = _path(filing.status, target)
        if steps is None:
            raise ValueError(f"filing {filing.id} cannot go from {filing.status} to {target}")
        events = []
        for status in steps:
            filing.status, filing.status_at = status, at
            if status in ("rejected", "cancelled"):
                filing.reason = reason or f"{status} by the sandbox"
            if status == "accepted" and filing.case_number is None:
                self.sequence += 1
                prefix = _CASE_PREFIX.get(filing.case_type, "CV")
                filing.case_number = f"{at.year}-{prefix}-{self.sequence:06d}"
            event = Event(
                "EV-" + uuid.uuid4().hex[:16], filing.id, status, at, filing.reason, filing.case_number
            )
            filing.events.append(event)
            self.pending.append(event)
            events.append(event)
            self.count(f"events.{status}")
        return events

    def tick(self, now: datetime) -> None:
        """Apply the time rules up to `now`: each move is dated when it fell due, not when seen."""
        r = self.rules
        schedule = [
            (s, after)
            for s, after in (
                ("under_review", r.review_after_seconds),
                ("accepted", r.accept_after_seconds),
                ("served", r.serve_after_seconds),
                ("judgment", r.judgment_after_seconds),
            )
            if after is not None
        ]
        if not schedule:
            return
        reject = re.compile(r.reject_courts) if r.reject_courts else None
        for filing in self.filings.values():
            for status, after in schedule:
                if filing.status in TERMINAL_STATUSES:
                    break
                due = filing.submitted_at + timedelta(seconds=after)
                if due > now:
                    break
                target, reason = status, None
                if status == "accepted" and reject is not None and reject.search(filing.court):
                    target, reason = "rejected", r.reject_reason
                if _path(filing.status, target):
                    self.move(filing, target, due, reason)


# What an injected fault answers with
_FAULTS = {
    429: ("throttled", "Too many requests for this filer account."),
    503: ("unavailable", "The court's filing review is unavailable."),
    500: ("internal", "The filing review failed unexpectedly."),
}


def _refuse(status: int, headers: dict[str, str] | None) -> Response:
    return _error(status, *_FAULTS[status], headers)


def _validate(message: dict[str, Any]) -> Response | None:
    """A 400 for a filing the gateway would refuse at the door, or None. Messages hold no party data."""
    court = message.get("court")
    if court not in COURTS:
        return _error(400, "court.unknown", f"court code {court!r} is not on the gateway's list")
    case_type = message.get("caseType")
    if case_type not in CASE_TYPES:
        return _error(400, "case_type.unknown", f"case type {case_type!r} is not known")
    if case_type in _CN_ONLY and not str(court).startswith("CN-"):
        return _error(400, "case_type.unsupported", f"{case_type} is a procedure of the courts of China")
    claim = message.get("claim") or {}
    try:
        amount = Decimal(str(claim.get("amount")))
    except InvalidOperation:
        return _error(400, "claim.invalid", "claim amount is not a decimal number")
    if not amount.is_finite() or amount <= 0 or not re.fullmatch(r"[A-Z]{3}", str(claim.get("currency"))):
        return _error(400, "claim.invalid", "claim needs a positive amount and an ISO 4217 currency")
    parties = message.get("parties") or []
    roles = {p.get("role") for p in parties if isinstance(p, dict) and p.get("name")}
    if (
        not roles <= set(PARTY_ROLES)
        or not roles & {"plaintiff", "applicant"}
        or not roles - {"plaintiff", "applicant"}
    ):
        return _error(400, "parties.invalid", "a filing needs a named claimant and a named defendant")
    documents = message.get("documents") or []
    if not documents:
        return _error(400, "documents.missing", "a filing needs at least one document")
    for n, doc in enumerate(documents):
        digest = str(doc.get("sha256", ""))
        if not _SHA256.match(digest) or not doc.get("kind") or not doc.get("name"):
            return _error(400, "document.invalid", f"document {n} needs a kind, a name and a SHA-256")
        if "content" in doc:
            try:
                content = base64.b64decode(doc["content"], validate=True)
            except (binascii.Error, TypeError, ValueError):
                return _error(400, "document.invalid", f"document {n} content is not base64")
            if hashlib.sha256(content).hexdigest() != digest:
                return _error(400, "document.hash_mismatch", f"document {n} does not match its SHA-256")
    if message.get("militaryStatusAffidavit") and not any(
        d.get("kind") == MILITARY_AFFIDAVIT for d in documents
    ):
        return _error(400, "affidavit.missing", "militaryStatusAffidavit is set but no affidavit is attached")
    return None


def create_app(
    credentials: CourtSandboxCredentials = DEFAULT_CREDENTIALS, state: CourtState | None = None
) -> FastAPI:
    """The sandbox court around one in-memory state (a fresh one unless given)."""
    st = state or CourtState(credentials)
    app = FastAPI(
        title="arrears court sandbox", docs_url="/_sandbox/docs", openapi_url="/_sandbox/openapi.json"
    )
    app.state.sandbox = st
    creds = st.credentials

    async def authorised(request: Request, operation: str) -> tuple[dict[str, Any], Response | None]:
        st.count(f"requests.{operation}")
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {creds.api_key}".encode()):
            return {}, _error(401, "auth.invalid", "The API key is missing or not valid.")
        try:
            message = json.loads(await request.body())
        except ValueError:
            message = None
        if not isinstance(message, dict):
            return {}, _error(400, "request.malformed", "The request body is not a JSON object.")
        if message.get("filerId") != creds.filer_id:
            return {}, _error(403, "filer.forbidden", "This API key does not belong to that filer.")
        st.tick(st.now())
        return message, None

    # -- the gateway's operations --------------------------------------------------------------

    @app.post("/ecf/v5/ReviewFiling")
    async def review_filing(request: Request) -> Response:
        message, denied = await authorised(request, "ReviewFiling")
        if denied is not None:
            return denied
        key = request.headers.get("idempotency-key") or message.get("idempotencyKey")
        if not key:
            return _error(400, "idempotency.missing", "An Idempotency-Key header is required.")

        def run() -> Response:
            fingerprint = hashlib.sha256(json.dumps(message, sort_keys=True).encode()).hexdigest()
            first = st.by_key.get(key)
            if first is not None:
                if first.fingerprint != fingerprint:
                    return _error(
                        409, "idempotency.conflict", "This idempotency key was used for another filing."
                    )
                st.count("replays")
                return _json(_receipt(first), 200, {"Idempotent-Replayed": "true"})
            if (refused := _validate(message)) is not None:
                return refused
            stored = {
                **message,
                "documents": [{k: v for k, v in d.items() if k != "content"} for d in message["documents"]],
            }
            filing = Filing(
                id="ECF-" + uuid.uuid4().hex[:12].upper(),
                idempotency_key=key,
                fingerprint=fingerprint,
                message=stored,
                court=message["court"],
                case_type=message["caseType"],
                submitted_at=st.now(),
                callback_url=message.get("callbackUrl"),
            )
            st.filings[filing.id] = filing
            st.by_key[key] = filing
            st.count("filings")
            return _json(_receipt(filing), 202)

        return await with_faults(st, "ReviewFiling", run, _refuse)

    def _receipt(filing: Filing) -> dict[str, Any]:
        return {
            "filingId": filing.id,
            "idempotencyKey": filing.idempotency_key,
            "reviewStatus": "received",
            "receivedAt": filing.submitted_at.isoformat(),
        }

    @app.post("/ecf/v5/GetFilingStatus")
    async def get_filing_status(request: Request) -> Response:
        message, denied = await authorised(request, "GetFilingStatus")
        if denied is not None:
            return denied

        def run() -> Response:
            filing = st.filings.get(str(message.get("filingId")))
            if filing is None:
                return _error(404, "filing.not_found", "No filing with that id for this filer.")
            return _json(filing.wire())

        return await with_faults(st, "GetFilingStatus", run, _refuse)

    @app.post("/ecf/v5/CancelFiling")
    async def cancel_filing(request: Request) -> Response:
        message, denied = await authorised(request, "CancelFiling")
        if denied is not None:
            return denied

        def run() -> Response:
            filing = st.filings.get(str(message.get("filingId")))
            if filing is None:
                return _error(404, "filing.not_found", "No filing with that id for this filer.")
            if filing.status != "cancelled":
                if _path(filing.status, "cancelled") is None:
                    return _error(409, "filing.not_cancellable", f"The filing is already {filing.status}.")
                st.move(filing, "cancelled", st.now(), str(message.get("reason") or "withdrawn by the filer"))
            return _json(filing.wire())

        return await with_faults(st, "CancelFiling", run, _refuse)

    # -- callbacks ------------------------------------------------------------------------------

    def signed(events: list[Event], timestamp: int | None = None) -> tuple[dict[str, str], bytes]:
        body = json.dumps({"events": [e.wire() for e in events]}, ensure_ascii=False).encode()
        t = int(time.time()) if timestamp is None else timestamp
        return {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(creds.callback_secret, t, body),
        }, body

    async def deliver() -> dict[str, int]:
        """POST the pending events, one request per URL; failures stay pending, drops are lost."""
        groups: dict[str, list[Event]] = {}
        for event in st.pending:
            url = st.filings[event.filing_id].callback_url or st.callback_url
            if url:
                groups.setdefault(url, []).append(event)
        outcome = {"delivered": 0, "dropped": 0, "failed": 0}
        for url, events in groups.items():
            headers, body = signed(events)
            attempt: dict[str, Any] = {
                "url": url,
                "at": st.now().isoformat(),
                "headers": headers,
                "body": body.decode(),
                "events": len(events),
                "status_code": None,
            }
            if st.faults.drop_callbacks:
                st.faults.drop_callbacks -= 1
                attempt["outcome"], done = "dropped", True
            else:
                try:
                    async with httpx.AsyncClient(timeout=5.0) as client:
                        answer = await client.post(url, content=body, headers=headers)
                    attempt["status_code"] = answer.status_code
                    done = answer.is_success
                    attempt["outcome"] = "delivered" if done else "failed"
                except httpx.HTTPError as e:
                    attempt["outcome"], attempt["error"], done = "failed", type(e).__name__, False
            st.callbacks.append(attempt)
            st.count(f"callbacks.{attempt['outcome']}")
            outcome[attempt["outcome"]] += len(events)
            if done:
                ids = {e.id for e in events}
                st.pending = [e for e in st.pending if e.id not in ids]
        return {**outcome, "pending": len(st.pending)}

    # -- the sandbox's own controls ------------------------------------------------------------

    control_routes(app, st, Faults, health=lambda: {"ok": True, "kind": "court", "filings": len(st.filings)})

    def listing(idempotency_key: str | None, court: str | None, status: str | None) -> list[dict[str, Any]]:
        st.tick(st.now())
        return [
            f.public()
            for f in st.filings.values()
            if (not idempotency_key or f.idempotency_key == idempotency_key)
            and (not court or f.court == court)
            and (not status or f.status == status)
        ]

    @app.get("/_sandbox/filings")
    async def filings(
        idempotency_key: str | None = None, court: str | None = None, status: str | None = None
    ) -> dict[str, Any]:
        found = listing(idempotency_key, court, status)
        return {"total": len(found), "filings": found}

    @app.get("/_sandbox/messages")
    async def messages(
        idempotency_key: str | None = None, court: str | None = None, limit: int = 1000, offset: int = 0
    ) -> dict[str, Any]:
        """The filings, under the name `SandboxHandle.messages()` reads."""
        found = listing(idempotency_key, court, None)
        return {"total": len(found), "messages": found[offset : offset + limit]}

    @app.get("/_sandbox/stats")
    async def stats() -> dict[str, Any]:
        return {
            "filings": len(st.filings),
            "pending_callbacks": len(st.pending),
            "counters": dict(st.counters),
        }

    @app.get("/_sandbox/rules")
    async def get_rules() -> Rules:
        return st.rules

    @app.post("/_sandbox/rules")
    async def set_rules(rules: Rules) -> Response:
        if rules.reject_courts:
            try:
                re.compile(rules.reject_courts)
            except re.error:
                return _error(422, "rules.invalid", "reject_courts is not a regular expression")
        st.rules = rules
        return _json(rules.model_dump())

    @app.post("/_sandbox/advance/{filing_id}")
    async def advance(filing_id: str, order: Advance) -> Response:
        st.tick(st.now())
        filing = st.filings.get(filing_id)
        if filing is None:
            return _error(404, "filing.not_found", "No filing with that id.")
        target = order.to
        if target is None:
            if filing.status not in _HAPPY[:-1]:
                return _error(409, "advance.impossible", f"A {filing.status} filing has no next status.")
            target = _HAPPY[_HAPPY.index(filing.status) + 1]
        if target not in FILING_STATUSES:
            return _error(422, "advance.invalid", f"Unknown status {target!r}.")
        try:
            events = st.move(filing, target, st.now(), order.reason)
        except ValueError as e:
            return _error(409, "advance.impossible", str(e))
        delivery = await deliver() if order.deliver else None
        return _json({"filing": filing.wire(), "events": [e.wire() for e in events], "delivery": delivery})

    @app.post("/_sandbox/callbacks/url")
    async def callback_url(body: CallbackUrl) -> dict[str, Any]:
        st.callback_url = body.url
        return {"url": st.callback_url}

    @app.post("/_sandbox/callbacks/deliver")
    async def deliver_now() -> dict[str, int]:
        st.tick(st.now())
        return await deliver()

    @app.get("/_sandbox/callbacks")
    async def callbacks() -> dict[str, Any]:
        return {"callbacks": st.callbacks, "pending": len(st.pending)}

    @app.post("/_sandbox/callbacks/sign")
    async def sign(body: SignRequest) -> Response:
        filing = st.filings.get(body.filing_id)
        if filing is None or not filing.events:
            return _error(404, "filing.not_found", "No filing with events under that id.")
        headers, payload = signed([filing.events[-1]], body.timestamp)
        return _json({"headers": headers, "body": payload.decode()})

    return app


def main(argv: list[str] | None = None) -> None:
    """`python -m integrations.court.sandbox_server --port N`: serve until interrupted."""
    serve(
        argv,
        prog="python -m integrations.court.sandbox_server",
        description=(__doc__ or "").split("\n")[0],
        port=8026,
        label="court sandbox",
        create_app=create_app,
        credentials=CourtSandboxCredentials,
        defaults=DEFAULT_CREDENTIALS,
    )


if __name__ == "__main__":
    main()
