"""A sandbox Lob: a FastAPI app imitating Lob's letters API (see `integrations.letters.lob`).

- `lob_router(state)`, an `APIRouter` with `POST /v1/letters` (multipart: `to[...]`, `from[...]`,
  `file`, `mail_type`, `extra_service`, `metadata[...]`), `GET /v1/letters/{id}` and `GET
  /v1/letters` (newest first, filtered by `metadata[...]`): Basic auth with the API key as user,
  the letter validated (addresses, a PDF file), deduplicated by `Idempotency-Key` for
  `Rules.idempotency_window_seconds` (24 hours, as Lob: a resend answers the first letter, other
  content under the same key is a 409; after it, the same request mails another). An address
  whose first line matches `Rules.refuse_addresses` is refused (422
  `failed_deliverability_strictness`); one matching `Rules.return_addresses` is mailed and later
  returned to sender.
- Letters move `created → mailed → in_transit → delivered` (or `returned_to_sender`) on request
  (`POST /_sandbox/advance/{id}`) or over time (`POST /_sandbox/rules`: `mail_after_seconds`…).
- Each step is a Lob event; `POST /_sandbox/callbacks/deliver` (or `advance` with `deliver`) POSTs
  the pending ones, one per request, signed as Lob signs (`Lob-Signature`,
  `Lob-Signature-Timestamp`), to the URL registered at `POST /_sandbox/callbacks/url`; with
  `Rules.push_every_seconds` the sandbox pushes by itself. Faults may drop or duplicate them.
- `/_sandbox/…`: `health`, `reset`, `faults` (`integrations._sandbox`: latency, 429/503 with
  Retry-After, 500 or a timeout after executing), `letters`, `stats`, `callbacks`.

Run it alone with `python -m integrations.letters.sandbox_server --port 8027`; the contract suite
starts it in-process (`integrations.letters.sandbox.start_letters_sandbox`).
"""

from __future__ import annotations

import asyncio
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
from typing import Any, ClassVar, Literal

from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from integrations._hmac import sign
from integrations._sandbox import (
    CallbackFaults,
    CallbackPusher,
    FaultState,
    control_router,
    create_sandbox_app,
    json_response,
    serve,
    with_faults,
)
from integrations.letters._wire import EVENT_TYPES, NAMES, mail_type_of
from integrations.letters.lob import NAME_LIMIT, SIGNATURE_HEADER, TIMESTAMP_HEADER
from integrations.letters.protocol import TRACKING_KINDS
from integrations.letters.sandbox import DEFAULT_CREDENTIALS, LettersSandboxCredentials

__all__ = ["Faults", "LettersState", "Rules", "create_app", "lob_router", "main", "sandbox_router"]

_HAPPY = ("created", "mailed", "in_transit", "delivered")
_RETURNED = ("created", "mailed", "in_transit", "returned_to_sender")
_EXTRA_SERVICES = {"certified", "certified_return_receipt"}
_ADDRESS_FIELDS = ("name", "address_line1", "address_city", "address_zip")


class Faults(CallbackFaults):
    """Faults to inject (`POST /_sandbox/faults`); counters count down per request, or per webhook."""

    scope_field: ClassVar[str] = "operation"

    operation: Literal["all", "create", "retrieve", "webhooks"] = Field(
        default="all", description="Which requests (or the webhooks pushed) they hit."
    )


class Rules(BaseModel):
    """How letters move by themselves, in seconds after they were created (None: only on request)."""

    model_config = ConfigDict(extra="forbid")

    mail_after_seconds: float | None = Field(default=None, ge=0, description="created → mailed")
    transit_after_seconds: float | None = Field(default=None, ge=0, description="→ in_transit")
    deliver_after_seconds: float | None = Field(
        default=None, ge=0, description="→ delivered (or returned_to_sender)"
    )
    push_every_seconds: float | None = Field(
        default=None, gt=0, description="Apply the rules and push pending webhooks this often by itself."
    )
    refuse_addresses: str = Field(
        default=r"(?i)undeliverable", description="Regex on address_line1: refused with a 422."
    )
    return_addresses: str = Field(
        default=r"(?i)return to sender", description="Regex on address_line1: mailed, then returned."
    )
    idempotency_window_seconds: float = Field(
        default=24 * 3600,
        ge=0,
        description="How long a key answers its first letter (Lob: 24 h); a resend after it mails another.",
    )


class Advance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str | None = Field(default=None, description="Target status; None: the next step.")
    deliver: bool = Field(default=False, description="Push the pending webhooks at once.")
    at: datetime | None = Field(
        default=None, description="When the step happened (simulated time); now by default."
    )


@dataclass(slots=True)
class Event:
    id: str
    letter_id: str
    kind: str
    at: datetime


@dataclass(slots=True)
class SandboxLetter:
    id: str
    idempotency_key: str
    fingerprint: str
    fields: dict[str, str]  # the form as received
    pdf_sha256: str
    pdf_size: int
    created_at: datetime
    returns: bool  # the address is marked: the letter comes back
    tracking_number: str | None
    events: list[Event] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.events[-1].kind if self.events else "created"

    def address(self, prefix: str) -> dict[str, Any]:
        start = f"{prefix}["
        return {k[len(start) : -1]: v for k, v in self.fields.items() if k.startswith(start)}

    def wire(self) -> dict[str, Any]:
        """The letter as Lob answers it."""
        metadata = {k[9:-1]: v for k, v in self.fields.items() if k.startswith("metadata[")}
        return {
            "id": self.id,
            "object": "letter",
            "description": self.fields.get("description"),
            "metadata": metadata,
            "to": {"id": "adr_" + self.id[4:], **self.address("to")},
            "from": {"id": "adr_f" + self.id[5:], **self.address("from")},
            "mail_type": self.fields.get("mail_type", "usps_first_class"),
            "extra_service": self.fields.get("extra_service"),
            "tracking_number": self.tracking_number,
            "use_type": self.fields.get("use_type"),
            "carrier": "USPS",
            "url": f"https://sandbox.invalid/letters/{self.id}.pdf",
            "date_created": self.created_at.isoformat(),
            "send_date": self.created_at.isoformat(),
            "expected_delivery_date": (self.created_at + timedelta(days=5)).date().isoformat(),
            "tracking_events": [
                {
                    "id": e.id,
                    "object": "tracking_event",
                    "type": "certified" if self.tracking_number else "normal",
                    "name": NAMES[e.kind],
                    "location": self.fields.get("to[address_zip]"),
                    "time": e.at.isoformat(),
                    "date_created": e.at.isoformat(),
                }
                for e in self.events
            ],
        }


def _path(letter: SandboxLetter, target: str) -> list[str] | None:
    """The steps from the letter's status to `target`; None if it cannot get there."""
    order = _RETURNED if target == "returned_to_sender" else _HAPPY
    if letter.status not in order or target not in order:
        return None
    here, there = order.index(letter.status), order.index(target)
    return list(order[here + 1 : there + 1]) if there > here else None


@dataclass
class LettersState(FaultState):
    credentials: LettersSandboxCredentials
    faults: Faults = field(default_factory=Faults)
    rules: Rules = field(default_factory=Rules)
    letters: dict[str, SandboxLetter] = field(default_factory=dict)
    by_key: dict[str, SandboxLetter] = field(default_factory=dict)
    pending: list[Event] = field(default_factory=list)  # events not yet pushed nor dropped
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    callback_url: str | None = None
    counters: dict[str, int] = field(default_factory=dict)
    pump: asyncio.Task[None] | None = None

    def reset(self) -> None:
        self.faults, self.rules, self.callback_url = Faults(), Rules(), None
        for store in (self.letters, self.by_key, self.pending, self.callbacks, self.counters):
            store.clear()

    def move(self, letter: SandboxLetter, target: str, at: datetime) -> list[Event]:
        steps = _path(letter, target)
        if steps is None:
            raise ValueError(f"letter {letter.id} cannot go from {letter.status} to {target}")
        events = [Event("evnt_" + uuid.uuid4().hex[:24], letter.id, kind, at) for kind in steps]
        letter.events += events
        self.pending += events
        for event in events:
            self.count(f"events.{event.kind}")
        return events

    def tick(self, now: datetime) -> None:
        """Apply the time rules up to `now`: each step is dated when it fell due, not when seen."""
        r = self.rules
        schedule = [
            (s, after)
            for s, after in (
                ("mailed", r.mail_after_seconds),
                ("in_transit", r.transit_after_seconds),
                ("delivered", r.deliver_after_seconds),
            )
            if after is not None
        ]
        for letter in self.letters.values():
            for status, after in schedule:
                due = letter.created_at + timedelta(seconds=after)
                if due > now:
                    break
                target = "returned_to_sender" if status == "delivered" and letter.returns else status
                if _path(letter, target):
                    self.move(letter, target, due)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """Lob's error body."""
    return json_response(
        {"error": {"message": message, "status_code": status, "code": code}}, status, headers
    )


_FAULTS = {
    429: ("rate_limit_exceeded", "Too many requests."),
    503: ("service_unavailable", "Lob is unavailable."),
    500: ("internal_server_error", "Something went wrong on Lob's end."),
}


def _refuse(status: int, headers: dict[str, str] | None) -> Response:
    return _error(status, *_FAULTS[status], headers)


def _basic_user(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        return base64.b64decode(token, validate=True).decode().partition(":")[0]
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ""


def lob_router(st: LettersState) -> APIRouter:
    """Lob's letters endpoints over the sandbox state."""
    router = APIRouter()
    api_key = st.credentials.api_key

    def denied(request: Request, operation: str) -> Response | None:
        st.count(f"requests.{operation}")
        if not hmac.compare_digest(_basic_user(request).encode(), api_key.encode()):
            return _error(401, "unauthorized", "Your API key is not valid. Please sign up on lob.com.")
        st.tick(st.now())
        return None

    @router.post("/v1/letters")
    async def create_letter(request: Request) -> Response:
        if (refused := denied(request, "create")) is not None:
            return refused
        key = request.headers.get("idempotency-key")
        form = await request.form()  # a client gone mid-upload: `create_sandbox_app`'s 499
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        upload = form.get("file")
        pdf = b"" if upload is None or isinstance(upload, str) else await upload.read()
        rules = st.rules

        def run() -> Response:
            pdf_sha = hashlib.sha256(pdf).hexdigest()
            fingerprint = hashlib.sha256(
                json.dumps(fields, sort_keys=True).encode() + pdf_sha.encode()
            ).hexdigest()
            first = st.by_key.get(key) if key else None
            if first is not None and st.now() - first.created_at < timedelta(
                seconds=rules.idempotency_window_seconds
            ):
                if first.fingerprint != fingerprint:
                    return _error(
                        409, "idempotency_conflict", "This idempotency key was used for another letter."
                    )
                st.count("replays")
                return json_response(first.wire(), 200)
            for prefix in ("to", "from"):
                missing = [f for f in _ADDRESS_FIELDS if not fields.get(f"{prefix}[{f}]", "").strip()]
                if missing:
                    return _error(422, "missing_required_field", f"{prefix}.{missing[0]} is required")
                for name in ("name", "company"):  # Lob: "no longer than 40 characters"
                    if len(fields.get(f"{prefix}[{name}]", "")) > NAME_LIMIT:
                        return _error(
                            422, "invalid", f"{prefix}.{name} must be no longer than {NAME_LIMIT} characters"
                        )
            if not pdf.startswith(b"%PDF-"):
                return _error(422, "invalid_file", "file must be a PDF")
            if fields.get("mail_type", "usps_first_class") not in ("usps_first_class", "usps_standard"):
                return _error(422, "invalid_mail_type", "mail_type must be usps_first_class or usps_standard")
            extra = fields.get("extra_service")
            if extra is not None and extra not in _EXTRA_SERVICES:
                return _error(422, "invalid_extra_service", f"extra_service {extra!r} is not supported")
            line1 = fields["to[address_line1]"]
            if re.search(rules.refuse_addresses, line1):
                return _error(
                    422,
                    "failed_deliverability_strictness",
                    "The address does not meet the deliverability strictness of this account.",
                )
            letter = SandboxLetter(
                id="ltr_" + uuid.uuid4().hex[:20],
                idempotency_key=key or "",
                fingerprint=fingerprint,
                fields=fields,
                pdf_sha256=pdf_sha,
                pdf_size=len(pdf),
                created_at=st.now(),
                returns=bool(re.search(rules.return_addresses, line1)),
                tracking_number=("9407" + uuid.uuid4().hex[:18].upper()) if extra else None,
            )
            st.letters[letter.id] = letter
            if key:
                st.by_key[key] = letter
            st.count("letters")
            return json_response(letter.wire(), 200)

        return await with_faults(st, "create", run, _refuse)

    @router.get("/v1/letters")
    async def list_letters(request: Request) -> Response:
        """Lob's list, newest first, filtered by `metadata[name]=value` pairs, at most `limit`."""
        if (refused := denied(request, "list")) is not None:
            return refused
        wanted = {k: v for k, v in request.query_params.items() if k.startswith("metadata[")}
        try:
            limit = int(request.query_params.get("limit", "10"))
        except ValueError:
            return _error(422, "invalid_limit", "limit must be an integer")

        def run() -> Response:
            found = [
                letter.wire()
                for letter in sorted(st.letters.values(), key=lambda x: x.created_at, reverse=True)
                if all(letter.fields.get(k) == v for k, v in wanted.items())  # the form as sent
            ]
            page = found[: max(1, min(limit, 100))]
            return json_response(
                {"object": "list", "data": page, "count": len(page), "next_url": None, "previous_url": None}
            )

        return await with_faults(st, "retrieve", run, _refuse)

    @router.get("/v1/letters/{letter_id}")
    async def retrieve_letter(letter_id: str, request: Request) -> Response:
        if (refused := denied(request, "retrieve")) is not None:
            return refused

        def run() -> Response:
            letter = st.letters.get(letter_id)
            if letter is None:
                return _error(404, "not_found", "letter not found")
            return json_response(letter.wire())

        return await with_faults(st, "retrieve", run, _refuse)

    return router


def sandbox_router(st: LettersState) -> APIRouter:
    """`/_sandbox/…`: the shared controls (health, reset, faults) and the letters sandbox's own:
    rules, advance, webhooks pushed (by request, or by the pump once rules ask for it)."""
    secret = st.credentials.webhook_secret

    def signed(event: Event, timestamp: int | None = None) -> tuple[dict[str, str], bytes]:
        letter = st.letters[event.letter_id]
        body = json.dumps(
            {
                "id": "evt_" + event.id[5:],
                "object": "event",
                "reference_id": letter.id,
                "event_type": {
                    "id": EVENT_TYPES[event.kind],
                    "resource": "letters",
                    "enabled_for_test": True,
                    "object": "event_type",
                },
                "date_created": event.at.isoformat(),
                "body": letter.wire(),
            },
            ensure_ascii=False,
        ).encode()
        t = str(int(time.time()) if timestamp is None else timestamp)
        return {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, t, body),
            TIMESTAMP_HEADER: t,
        }, body

    pusher = CallbackPusher[Event](
        st,
        signed=signed,
        url_of=lambda event: st.callback_url,  # Lob pushes to the one webhook URL of the account
        describe=lambda event: {"letter_id": event.letter_id, "event": EVENT_TYPES[event.kind]},
    )

    # -- the sandbox's own controls ----------------------------------------------------------------

    router = control_router(
        st, Faults, health=lambda: {"ok": True, "kind": "letters", "letters": len(st.letters)}
    )

    @router.get("/letters")
    async def letters(idempotency_key: str | None = None) -> dict[str, Any]:
        st.tick(st.now())
        found = [
            {
                **letter.wire(),
                "status": letter.status,
                "idempotency_key": letter.idempotency_key,
                "pdf_sha256": letter.pdf_sha256,
                "pdf_size": letter.pdf_size,
                "our_mail_type": mail_type_of(letter.fields.get("extra_service")),
            }
            for letter in st.letters.values()
            if not idempotency_key or letter.idempotency_key == idempotency_key
        ]
        return {"total": len(found), "letters": found}

    @router.get("/stats")
    async def stats() -> dict[str, Any]:
        return {
            "letters": len(st.letters),
            "pending_callbacks": len(st.pending),
            "counters": dict(st.counters),
        }

    @router.get("/rules")
    async def get_rules() -> Rules:
        return st.rules

    @router.post("/rules")
    async def set_rules(rules: Rules) -> Response:
        for pattern in (rules.refuse_addresses, rules.return_addresses):
            try:
                re.compile(pattern)
            except re.error:
                return _error(422, "rules.invalid", f"{pattern!r} is not a regular expression")
        st.rules = rules
        pusher.ensure_pump()
        return json_response(rules.model_dump())

    @router.post("/advance/{letter_id}")
    async def advance(letter_id: str, order: Advance) -> Response:
        st.tick(st.now())
        letter = st.letters.get(letter_id)
        if letter is None:
            return _error(404, "not_found", "letter not found")
        target = order.to
        if target is None:
            order_of = _RETURNED if letter.returns else _HAPPY
            if letter.status == order_of[-1]:
                return _error(409, "advance.impossible", f"A {letter.status} letter has no next step.")
            target = order_of[order_of.index(letter.status) + 1]
        if target not in TRACKING_KINDS:
            return _error(422, "advance.invalid", f"Unknown status {target!r}.")
        try:
            events = st.move(letter, target, order.at or st.now())
        except ValueError as e:
            return _error(409, "advance.impossible", str(e))
        delivery = await pusher.deliver() if order.deliver else None
        return json_response(
            {"letter": letter.wire(), "events": [EVENT_TYPES[e.kind] for e in events], "delivery": delivery}
        )

    pusher.add_routes(
        router,
        find=st.letters.get,
        not_found=lambda: _error(404, "not_found", "No letter with tracking events under that id."),
    )
    return router


def create_app(
    credentials: LettersSandboxCredentials = DEFAULT_CREDENTIALS, state: LettersState | None = None
) -> FastAPI:
    """The sandbox Lob around one in-memory state (a fresh one unless given)."""
    st = state or LettersState(credentials)
    return create_sandbox_app("arrears letters sandbox", st, lob_router(st), sandbox_router(st))


def main(argv: list[str] | None = None) -> None:
    """`python -m integrations.letters.sandbox_server --port N`: serve until interrupted."""
    serve(
        argv,
        module="integrations.letters.sandbox_server",
        doc=__doc__,
        port=8027,
        label="letters sandbox",
        create_app=create_app,
        credentials=LettersSandboxCredentials,
        defaults=DEFAULT_CREDENTIALS,
    )


if __name__ == "__main__":
    main()
