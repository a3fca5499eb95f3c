"""A sandbox repossession agency: a FastAPI app imitating an assignment platform (`agency.rest`).

- `agency_router(state)`, an `APIRouter` with `POST /v1/assignments`, `POST
  /v1/assignments/{id}/cancel` and `GET /v1/assignments/{id}`: Bearer auth and the client id
  checked, the order validated (VIN, an address), deduplicated by `Idempotency-Key` (a resend
  answers the first assignment; other content under the same key is a 409).
- Assignments move `assigned → accepted → located → recovered → closed` on request
  (`POST /_sandbox/advance/{id}`) or over time (`POST /_sandbox/rules`: `accept_after_seconds`,
  `locate_after_seconds`, `recover_after_seconds`: a recovery after a configurable delay); a
  cancel is refused once the car is recovered.
- Each move is an event; `POST /_sandbox/callbacks/deliver` (or `advance` with `deliver`) POSTs
  the pending ones, one event per request, signed (`X-Agency-Signature`, `X-Agency-Timestamp`), to
  the order's callback URL or the one registered at `POST /_sandbox/callbacks/url`; with
  `Rules.push_every_seconds` the sandbox pushes by itself. Faults may drop or duplicate them.
- `/_sandbox/…`: `health`, `reset`, `faults`, `assignments`, `stats`, `callbacks`.

Run it alone with `python -m integrations.agency.sandbox_server --port 8028`; the contract suite
starts it in-process (`integrations.agency.sandbox.start_agency_sandbox`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from integrations._hmac import sign
from integrations._sandbox import (
    CallbackFaults,
    CallbackPusher,
    FaultState,
    bearer_ok,
    control_router,
    create_sandbox_app,
    error_response,
    json_response,
    serve,
    with_faults,
)
from integrations.agency._wire import WIRE
from integrations.agency.protocol import ASSIGNMENT_STATUSES, CANCELLABLE_STATUSES
from integrations.agency.rest import SIGNATURE_HEADER, TIMESTAMP_HEADER
from integrations.agency.sandbox import DEFAULT_CREDENTIALS, AgencySandboxCredentials

__all__ = ["AgencyState", "Faults", "Rules", "agency_router", "create_app", "main", "sandbox_router"]

_HAPPY = ("assigned", "accepted", "located", "recovered", "closed")
_VIN = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")


class Faults(CallbackFaults):
    """Faults to inject (`POST /_sandbox/faults`); counters count down per request, or per webhook."""

    scope_field: ClassVar[str] = "operation"

    operation: Literal["all", "assign", "cancel", "status", "webhooks"] = Field(
        default="all", description="Which requests (or the webhooks pushed) they hit."
    )


class Rules(BaseModel):
    """How assignments move by themselves, in seconds after they were placed (None: only on request)."""

    model_config = ConfigDict(extra="forbid")

    accept_after_seconds: float | None = Field(default=None, ge=0, description="assigned → accepted")
    locate_after_seconds: float | None = Field(default=None, ge=0, description="→ located")
    recover_after_seconds: float | None = Field(default=None, ge=0, description="→ recovered")
    close_after_seconds: float | None = Field(default=None, ge=0, description="→ closed")
    push_every_seconds: float | None = Field(
        default=None, gt=0, description="Apply the rules and push pending webhooks this often by itself."
    )
    recovery_location: str = Field(default="ACME Recovery lot, Des Moines IA")
    condition: str = Field(
        default="Drivable; minor scratches on the rear bumper; personal property inventoried."
    )
    personal_property: list[str] = Field(
        default_factory=lambda: ["sunglasses", "phone charger"],
        description="The inventory of what the agent found in the car, reported with the recovery.",
    )


class Advance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str | None = Field(default=None, description="Target status; None: the next one.")
    reason: str | None = Field(default=None, description="Why, for cancelled and closed.")
    deliver: bool = Field(default=False, description="Push the pending webhooks at once.")
    at: datetime | None = Field(
        default=None, description="When the step happened (simulated time); now by default."
    )


@dataclass(slots=True)
class Event:
    id: str
    assignment_id: str
    status: str
    at: datetime
    reason: str | None


@dataclass(slots=True)
class SandboxAssignment:
    id: str
    idempotency_key: str
    fingerprint: str
    order: dict[str, Any]
    created_at: datetime
    callback_url: str | None
    status: str = "assigned"
    status_at: datetime | None = None
    reason: str | None = None
    recovery: dict[str, Any] | None = None
    events: list[Event] = field(default_factory=list)

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "reference": self.idempotency_key,
            "case_number": self.order.get("case_number"),
            "status": WIRE[self.status],
            "status_reason": self.reason,
            "created_at": self.created_at.isoformat(),
            "status_at": (self.status_at or self.created_at).isoformat(),
            "recovery": self.recovery,
        }


def _path(current: str, target: str) -> list[str] | None:
    if target == "cancelled":
        return ["cancelled"] if current in CANCELLABLE_STATUSES else None
    if current in _HAPPY and target in _HAPPY and _HAPPY.index(target) > _HAPPY.index(current):
        return list(_HAPPY[_HAPPY.index(current) + 1 : _HAPPY.index(target) + 1])
    return None


@dataclass
class AgencyState(FaultState):
    credentials: AgencySandboxCredentials
    faults: Faults = field(default_factory=Faults)
    rules: Rules = field(default_factory=Rules)
    assignments: dict[str, SandboxAssignment] = field(default_factory=dict)
    by_key: dict[str, SandboxAssignment] = field(default_factory=dict)
    pending: list[Event] = field(default_factory=list)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    callback_url: str | None = None
    counters: dict[str, int] = field(default_factory=dict)
    pump: asyncio.Task[None] | None = None

    def reset(self) -> None:
        self.faults, self.rules, self.callback_url = Faults(), Rules(), None
        for store in (self.assignments, self.by_key, self.pending, self.callbacks, self.counters):
            store.clear()

    def move(self, a: SandboxAssignment, target: str, at: datetime, reason: str | None = None) -> list[Event]:
        steps = _path(a.status, target)
        if steps is None:
            raise ValueError(f"assignment {a.id} cannot go from {a.status} to {target}")
        events = []
        for status in steps:
            a.status, a.status_at = status, at
            if status in ("cancelled", "closed"):
                a.reason = reason or a.reason
            if status == "recovered":
                a.recovery = {
                    "recovered_at": at.isoformat(),
                    "location": self.rules.recovery_location,
                    "condition": self.rules.condition,
                    "personal_property": list(self.rules.personal_property),
                }
            event = Event("evt_" + uuid.uuid4().hex[:20], a.id, status, at, a.reason)
            a.events.append(event)
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
                ("accepted", r.accept_after_seconds),
                ("located", r.locate_after_seconds),
                ("recovered", r.recover_after_seconds),
                ("closed", r.close_after_seconds),
            )
            if after is not None
        ]
        for a in self.assignments.values():
            for status, after in schedule:
                due = a.created_at + timedelta(seconds=after)
                if due > now or a.status == "cancelled":
                    break
                if _path(a.status, status):
                    self.move(a, status, due)


_FAULTS = {
    429: ("rate_limited", "Too many requests for this lender account."),
    503: ("unavailable", "The assignment platform is unavailable."),
    500: ("internal", "The assignment platform failed unexpectedly."),
}


def _refuse(status: int, headers: dict[str, str] | None) -> Response:
    return error_response(status, *_FAULTS[status], headers)


def _event_json(event: Event, a: SandboxAssignment) -> dict[str, Any]:
    return {
        "event_id": event.id,
        "assignment_id": event.assignment_id,
        "reference": a.idempotency_key,
        "status": WIRE[event.status],
        "occurred_at": event.at.isoformat(),
        "reason": event.reason,
        "recovery": a.recovery if event.status in ("recovered", "closed") else None,
    }


def agency_router(st: AgencyState) -> APIRouter:
    """The assignment platform's endpoints over the sandbox state."""
    router = APIRouter()
    creds = st.credentials

    def denied(request: Request, operation: str) -> Response | None:
        st.count(f"requests.{operation}")
        if not bearer_ok(request, creds.api_key):
            return error_response(401, "unauthorized", "The API key is missing or not valid.")
        st.tick(st.now())
        return None

    @router.post("/v1/assignments")
    async def assign(request: Request) -> Response:
        if (refused := denied(request, "assign")) is not None:
            return refused
        try:
            order = json.loads(await request.body())
        except ValueError:
            order = None
        if not isinstance(order, dict):
            return error_response(400, "malformed", "The request body is not a JSON object.")
        if order.get("client_id") != creds.client_id:
            return error_response(403, "forbidden", "This API key does not belong to that client.")
        key = request.headers.get("idempotency-key")
        if not key:
            return error_response(400, "idempotency_missing", "An Idempotency-Key header is required.")

        def run() -> Response:
            fingerprint = hashlib.sha256(json.dumps(order, sort_keys=True).encode()).hexdigest()
            if (first := st.by_key.get(key)) is not None:
                if first.fingerprint != fingerprint:
                    return error_response(
                        409, "idempotency_conflict", "This key was used for another assignment."
                    )
                st.count("replays")
                return json_response(first.wire(), 200)
            vin = str((order.get("vehicle") or {}).get("vin", ""))
            if not _VIN.match(vin):
                return error_response(422, "vin_invalid", "The VIN is not 17 valid characters.")
            if not order.get("addresses"):
                return error_response(422, "addresses_missing", "An assignment needs at least one address.")
            a = SandboxAssignment(
                id="asg_" + uuid.uuid4().hex[:16],
                idempotency_key=key,
                fingerprint=fingerprint,
                order=order,
                created_at=st.now(),
                callback_url=order.get("callback_url"),
            )
            st.assignments[a.id] = a
            st.by_key[key] = a
            st.count("assignments")
            return json_response(a.wire(), 201)

        return await with_faults(st, "assign", run, _refuse)

    @router.post("/v1/assignments/{assignment_id}/cancel")
    async def cancel(assignment_id: str, request: Request) -> Response:
        if (refused := denied(request, "cancel")) is not None:
            return refused
        try:
            reason = str(
                (json.loads(await request.body() or b"{}") or {}).get("reason") or "cancelled by the lender"
            )
        except (ValueError, AttributeError):
            reason = "cancelled by the lender"

        def run() -> Response:
            a = st.assignments.get(assignment_id)
            if a is None:
                return error_response(404, "assignment_not_found", "No assignment with that id.")
            if a.status != "cancelled":
                if _path(a.status, "cancelled") is None:
                    return json_response(
                        {
                            "error": {
                                "code": "not_cancellable",
                                "message": f"The assignment is already {WIRE[a.status]}.",
                                "status": WIRE[a.status],
                            }
                        },
                        409,
                    )
                st.move(a, "cancelled", st.now(), reason)
            return json_response(a.wire())

        return await with_faults(st, "cancel", run, _refuse)

    @router.get("/v1/assignments/{assignment_id}")
    async def status(assignment_id: str, request: Request) -> Response:
        if (refused := denied(request, "status")) is not None:
            return refused

        def run() -> Response:
            a = st.assignments.get(assignment_id)
            if a is None:
                return error_response(404, "assignment_not_found", "No assignment with that id.")
            return json_response(a.wire())

        return await with_faults(st, "status", run, _refuse)

    return router


def sandbox_router(st: AgencyState) -> APIRouter:
    """`/_sandbox/…`: the shared controls (health, reset, faults) and the agency sandbox's own:
    rules, advance, webhooks pushed (by request, or by the pump once rules ask for it)."""
    secret = st.credentials.webhook_secret

    def signed(event: Event, timestamp: int | None = None) -> tuple[dict[str, str], bytes]:
        a = st.assignments[event.assignment_id]
        body = json.dumps({"events": [_event_json(event, a)]}, ensure_ascii=False).encode()
        t = str(int(time.time()) if timestamp is None else timestamp)
        return {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, t, body),
            TIMESTAMP_HEADER: t,
        }, body

    pusher = CallbackPusher[Event](
        st,
        signed=signed,
        # The assignment's own callback URL (sent with the order), else the account's.
        url_of=lambda event: st.assignments[event.assignment_id].callback_url or st.callback_url,
        describe=lambda event: {"assignment_id": event.assignment_id, "status": event.status},
    )

    router = control_router(
        st, Faults, health=lambda: {"ok": True, "kind": "agency", "assignments": len(st.assignments)}
    )

    @router.get("/assignments")
    async def assignments(idempotency_key: str | None = None) -> dict[str, Any]:
        st.tick(st.now())
        found = [
            {
                **a.wire(),
                "our_status": a.status,
                "order": a.order,
                "events": [_event_json(e, a) for e in a.events],
            }
            for a in st.assignments.values()
            if not idempotency_key or a.idempotency_key == idempotency_key
        ]
        return {"total": len(found), "assignments": found}

    @router.get("/stats")
    async def stats() -> dict[str, Any]:
        return {
            "assignments": len(st.assignments),
            "pending_callbacks": len(st.pending),
            "counters": dict(st.counters),
        }

    @router.get("/rules")
    async def get_rules() -> Rules:
        return st.rules

    @router.post("/rules")
    async def set_rules(rules: Rules) -> Rules:
        st.rules = rules
        pusher.ensure_pump()
        return st.rules

    @router.post("/advance/{assignment_id}")
    async def advance(assignment_id: str, order: Advance) -> Response:
        st.tick(st.now())
        a = st.assignments.get(assignment_id)
        if a is None:
            return error_response(404, "assignment_not_found", "No assignment with that id.")
        target = order.to
        if target is None:
            if a.status not in _HAPPY[:-1]:
                return error_response(
                    409, "advance.impossible", f"A {a.status} assignment has no next status."
                )
            target = _HAPPY[_HAPPY.index(a.status) + 1]
        if target not in ASSIGNMENT_STATUSES:
            return error_response(422, "advance.invalid", f"Unknown status {target!r}.")
        try:
            events = st.move(a, target, order.at or st.now(), order.reason)
        except ValueError as e:
            return error_response(409, "advance.impossible", str(e))
        delivery = await pusher.deliver() if order.deliver else None
        return json_response(
            {"assignment": a.wire(), "events": [_event_json(e, a) for e in events], "delivery": delivery}
        )

    pusher.add_routes(
        router,
        find=st.assignments.get,
        not_found=lambda: error_response(
            404, "assignment_not_found", "No assignment with events under that id."
        ),
    )
    return router


def create_app(
    credentials: AgencySandboxCredentials = DEFAULT_CREDENTIALS, state: AgencyState | None = None
) -> FastAPI:
    """The sandbox agency around one in-memory state (a fresh one unless given)."""
    st = state or AgencyState(credentials)
    return create_sandbox_app("arrears agency sandbox", st, agency_router(st), sandbox_router(st))


def main(argv: list[str] | None = None) -> None:
    """`python -m integrations.agency.sandbox_server --port N`: serve until interrupted."""
    serve(
        argv,
        module="integrations.agency.sandbox_server",
        doc=__doc__,
        port=8028,
        label="agency sandbox",
        create_app=create_app,
        credentials=AgencySandboxCredentials,
        defaults=DEFAULT_CREDENTIALS,
    )


if __name__ == "__main__":
    main()
