"""A sandbox court: a FastAPI app imitating an ECF 5-style e-filing gateway (see `integrations.court.ecf`).

- `POST /ecf/v5/ReviewFiling`, `GetFilingStatus`, `CancelFiling`: Bearer auth and the filer id
  checked, the filing validated (court code list, case type per court, document hashes, the SCRA
  affidavit flag), deduplicated by `Idempotency-Key` (a resend answers the first filing; other
  content under the same key is a 409).
- Filings move `submitted → under_review → accepted → served → judgment` (or `rejected`,
  `cancelled`, and a served payment order `objected`: `caseStatus` `objection-filed`; one that took
  effect is `judgment` as `order-effective`) on request (`POST /_sandbox/advance/{filing_id}`) or
  over time by rules (`POST /_sandbox/rules`, e.g. `{"accept_after_seconds": 2}`, `reject_courts`,
  `object_courts`).
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
import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from integrations._sandbox import (
    CREDENTIALS_ENV,
    bearer_ok,
    callback_client,
    control_router,
    create_sandbox_app,
    post_callback,
    refuser,
    replayed,
    serve,
    with_faults,
)
from integrations._sandbox import (
    error_response as _error,
)
from integrations._sandbox import (
    json_response as _json,
)
from integrations.court._sandbox_state import (
    HAPPY_PATH,
    CourtSandboxCredentials,
    CourtState,
    Event,
    Faults,
    Filing,
    Rules,
    path,
)
from integrations.court._signing import SIGNATURE_HEADER, signature_header
from integrations.court.protocol import (
    CASE_TYPES,
    FILING_STATUSES,
    MILITARY_AFFIDAVIT,
    PARTY_ROLES,
)

__all__ = [
    "COURTS",
    "CREDENTIALS_ENV",
    "DEFAULT_CREDENTIALS",
    "Faults",
    "Rules",
    "create_app",
    "ecf_router",
    "main",
    "sandbox_router",
]

# Well-known values for a sandbox court started by hand; never valid anywhere but there.
DEFAULT_CREDENTIALS = CourtSandboxCredentials(
    filer_id="FILER-SANDBOX", api_key="sandbox-court-api-key", callback_secret="sandbox-court-callback-secret"
)
# The gateway's court code list (commercial gateways keep one per jurisdiction).
COURTS: dict[str, str] = {
    "US-CA-LASC": "Superior Court of California, County of Los Angeles",
    "US-IA-POLK": "Iowa District Court for Polk County",
    "US-MA-BMC": "Boston Municipal Court",
    "US-WI-MKE": "Milwaukee County Circuit Court",
    "GB-CCBC": "County Court Business Centre",
    "IE-CC-DUB": "The Circuit Court, Dublin Circuit",
    "CN-SH-PD": "上海市浦东新区人民法院",
    "CN-BJ-CY": "北京市朝阳区人民法院",
    "CN-GD-FT": "深圳市福田区人民法院",
}
_CN_ONLY = {"payment_order", "security_realisation"}  # Civil Procedure Law procedures
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# What an injected fault answers with
_refuse = refuser(
    {
        429: ("throttled", "Too many requests for this filer account."),
        503: ("unavailable", "The court's filing review is unavailable."),
        500: ("internal", "The filing review failed unexpectedly."),
    }
)


class Advance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str | None = Field(default=None, description="Target status; None: the next one on the happy path.")
    reason: str | None = Field(
        default=None, description="Why, for rejected and cancelled; the court's words for objected."
    )
    deliver: bool = Field(default=False, description="Send the pending callbacks at once.")


class CallbackUrl(BaseModel):
    url: str | None


class SignRequest(BaseModel):
    filing_id: str
    timestamp: int | None = None
    # Events sent as they are after the filing's own, as a gateway might send one a provider
    # cannot read (an unknown status word, no filing id): the contract's test of a mixed callback.
    raw_events: list[dict[str, Any]] = []


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


def _receipt(filing: Filing) -> dict[str, Any]:
    return {
        "filingId": filing.id,
        "idempotencyKey": filing.idempotency_key,
        "reviewStatus": "received",
        "receivedAt": filing.submitted_at.isoformat(),
    }


class _Gateway:
    """The gateway's operations over one state: `ReviewFiling`, `GetFilingStatus`, `CancelFiling`."""

    def __init__(self, state: CourtState) -> None:
        self.st = state

    async def authorised(self, request: Request, operation: str) -> tuple[dict[str, Any], Response | None]:
        st, creds = self.st, self.st.credentials
        st.count(f"requests.{operation}")
        if not bearer_ok(request, creds.api_key):
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

    async def review_filing(self, request: Request) -> Response:
        message, denied = await self.authorised(request, "ReviewFiling")
        if denied is not None:
            return denied
        key = request.headers.get("idempotency-key") or message.get("idempotencyKey")
        if not key:
            return _error(400, "idempotency.missing", "An Idempotency-Key header is required.")
        return await with_faults(self.st, "ReviewFiling", lambda: self.file(message, key), _refuse)

    def file(self, message: dict[str, Any], key: str) -> Response:
        st = self.st
        fingerprint = hashlib.sha256(json.dumps(message, sort_keys=True).encode()).hexdigest()
        first = st.by_key.get(key)
        if first is not None:
            if first.fingerprint != fingerprint:
                return _error(
                    409, "idempotency.conflict", "This idempotency key was used for another filing."
                )
            st.count("replays")
            return replayed(_receipt(first))
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

    async def get_filing_status(self, request: Request) -> Response:
        message, denied = await self.authorised(request, "GetFilingStatus")
        if denied is not None:
            return denied

        def run() -> Response:
            filing = self.st.filings.get(str(message.get("filingId")))
            if filing is None:
                return _error(404, "filing.not_found", "No filing with that id for this filer.")
            return _json(filing.wire())

        return await with_faults(self.st, "GetFilingStatus", run, _refuse)

    async def cancel_filing(self, request: Request) -> Response:
        message, denied = await self.authorised(request, "CancelFiling")
        if denied is not None:
            return denied

        def run() -> Response:
            st = self.st
            filing = st.filings.get(str(message.get("filingId")))
            if filing is None:
                return _error(404, "filing.not_found", "No filing with that id for this filer.")
            if filing.status != "cancelled":
                if path(filing.status, "cancelled") is None:
                    return _error(409, "filing.not_cancellable", f"The filing is already {filing.status}.")
                st.move(filing, "cancelled", st.now(), str(message.get("reason") or "withdrawn by the filer"))
            return _json(filing.wire())

        return await with_faults(self.st, "CancelFiling", run, _refuse)


def ecf_router(state: CourtState) -> APIRouter:
    """The ECF 5-style gateway's operations (`/ecf/v5/…`) over `state`."""
    gateway = _Gateway(state)
    router = APIRouter(prefix="/ecf/v5")
    router.add_api_route("/ReviewFiling", gateway.review_filing, methods=["POST"])
    router.add_api_route("/GetFilingStatus", gateway.get_filing_status, methods=["POST"])
    router.add_api_route("/CancelFiling", gateway.cancel_filing, methods=["POST"])
    return router


class _Controls:
    """The sandbox court's own controls: filings listed, rules, moves, callbacks delivered or signed."""

    def __init__(self, state: CourtState) -> None:
        self.st = state

    def signed(
        self, events: list[Event], timestamp: int | None = None, raw: Sequence[Mapping[str, Any]] = ()
    ) -> tuple[dict[str, str], bytes]:
        body = json.dumps({"events": [*(e.wire() for e in events), *raw]}, ensure_ascii=False).encode()
        t = int(time.time()) if timestamp is None else timestamp
        secret = self.st.credentials.callback_secret
        return {"Content-Type": "application/json", SIGNATURE_HEADER: signature_header(secret, t, body)}, body

    async def deliver(self) -> dict[str, int]:
        """POST the pending events, one request per URL; failures stay pending, drops are lost."""
        st = self.st
        groups: dict[str, list[Event]] = {}
        for event in st.pending:
            url = st.filings[event.filing_id].callback_url or st.callback_url
            if url:
                groups.setdefault(url, []).append(event)
        outcome = {"delivered": 0, "dropped": 0, "failed": 0}
        for url, events in groups.items():
            attempt = await self.push(url, events)
            outcome[attempt["outcome"]] += len(events)
            if attempt["outcome"] != "failed":  # delivered, or dropped: lost for good
                ids = {e.id for e in events}
                st.pending = [e for e in st.pending if e.id not in ids]
        return {**outcome, "pending": len(st.pending)}

    async def push(self, url: str, events: list[Event]) -> dict[str, Any]:
        """One callback for `events`, logged; a dropped one (fault `drop_callbacks`) is not sent."""
        st = self.st
        headers, body = self.signed(events)
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
            attempt["outcome"] = "dropped"
        else:
            async with callback_client() as client:
                answer = await post_callback(client, attempt, url, body, headers)
            if answer is not None:
                attempt["outcome"] = "delivered" if answer.is_success else "failed"
        st.callbacks.append(attempt)
        st.count(f"callbacks.{attempt['outcome']}")
        return attempt

    def listing(
        self, idempotency_key: str | None, court: str | None, status: str | None
    ) -> list[dict[str, Any]]:
        self.st.tick(self.st.now())
        return [
            f.public()
            for f in self.st.filings.values()
            if (not idempotency_key or f.idempotency_key == idempotency_key)
            and (not court or f.court == court)
            and (not status or f.status == status)
        ]

    async def filings(
        self, idempotency_key: str | None = None, court: str | None = None, status: str | None = None
    ) -> dict[str, Any]:
        found = self.listing(idempotency_key, court, status)
        return {"total": len(found), "filings": found}

    async def messages(
        self, idempotency_key: str | None = None, court: str | None = None, limit: int = 1000, offset: int = 0
    ) -> dict[str, Any]:
        """The filings, under the name `SandboxHandle.messages()` reads."""
        found = self.listing(idempotency_key, court, None)
        return {"total": len(found), "messages": found[offset : offset + limit]}

    async def stats(self) -> dict[str, Any]:
        st = self.st
        return {
            "filings": len(st.filings),
            "pending_callbacks": len(st.pending),
            "counters": dict(st.counters),
        }

    async def get_rules(self) -> Rules:
        return self.st.rules

    async def set_rules(self, rules: Rules) -> Response:
        for name in ("reject_courts", "object_courts"):
            try:
                re.compile(getattr(rules, name) or "")
            except re.error:
                return _error(422, "rules.invalid", f"{name} is not a regular expression")
        self.st.rules = rules
        return _json(rules.model_dump())

    async def advance(self, filing_id: str, order: Advance) -> Response:
        st = self.st
        st.tick(st.now())
        filing = st.filings.get(filing_id)
        if filing is None:
            return _error(404, "filing.not_found", "No filing with that id.")
        target = order.to
        if target is None:
            if filing.status not in HAPPY_PATH[:-1]:
                return _error(409, "advance.impossible", f"A {filing.status} filing has no next status.")
            target = HAPPY_PATH[HAPPY_PATH.index(filing.status) + 1]
        if target not in FILING_STATUSES:
            return _error(422, "advance.invalid", f"Unknown status {target!r}.")
        try:
            events = st.move(filing, target, st.now(), order.reason)
        except ValueError as e:
            return _error(409, "advance.impossible", str(e))
        delivery = await self.deliver() if order.deliver else None
        return _json({"filing": filing.wire(), "events": [e.wire() for e in events], "delivery": delivery})

    async def callback_url(self, body: CallbackUrl) -> dict[str, Any]:
        self.st.callback_url = body.url
        return {"url": self.st.callback_url}

    async def deliver_now(self) -> dict[str, int]:
        self.st.tick(self.st.now())
        return await self.deliver()

    async def callbacks(self) -> dict[str, Any]:
        return {"callbacks": self.st.callbacks, "pending": len(self.st.pending)}

    async def sign(self, body: SignRequest) -> Response:
        filing = self.st.filings.get(body.filing_id)
        if filing is None or not filing.events:
            return _error(404, "filing.not_found", "No filing with events under that id.")
        headers, payload = self.signed([filing.events[-1]], body.timestamp, raw=body.raw_events)
        return _json({"headers": headers, "body": payload.decode()})


def sandbox_router(state: CourtState) -> APIRouter:
    """`/_sandbox/…`: the shared controls (health, reset, faults) and the court's own."""
    router = control_router(
        state, Faults, health=lambda: {"ok": True, "kind": "court", "filings": len(state.filings)}
    )
    c = _Controls(state)
    router.add_api_route("/filings", c.filings, methods=["GET"])
    router.add_api_route("/messages", c.messages, methods=["GET"])
    router.add_api_route("/stats", c.stats, methods=["GET"])
    router.add_api_route("/rules", c.get_rules, methods=["GET"])
    router.add_api_route("/rules", c.set_rules, methods=["POST"])
    router.add_api_route("/advance/{filing_id}", c.advance, methods=["POST"])
    router.add_api_route("/callbacks/url", c.callback_url, methods=["POST"])
    router.add_api_route("/callbacks/deliver", c.deliver_now, methods=["POST"])
    router.add_api_route("/callbacks", c.callbacks, methods=["GET"])
    router.add_api_route("/callbacks/sign", c.sign, methods=["POST"])
    return router


def create_app(
    credentials: CourtSandboxCredentials = DEFAULT_CREDENTIALS, state: CourtState | None = None
) -> FastAPI:
    """The sandbox court around one in-memory state (a fresh one unless given)."""
    st = state or CourtState(credentials)
    return create_sandbox_app("arrears court sandbox", st, ecf_router(st), sandbox_router(st))


def main(argv: list[str] | None = None) -> None:
    """`python -m integrations.court.sandbox_server --port N`: serve until interrupted."""
    serve(
        argv,
        module="integrations.court.sandbox_server",
        doc=__doc__,
        port=8026,
        label="court sandbox",
        create_app=create_app,
        credentials=CourtSandboxCredentials,
        defaults=DEFAULT_CREDENTIALS,
    )


if __name__ == "__main__":
    main()
