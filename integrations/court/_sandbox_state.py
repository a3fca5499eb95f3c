"""The sandbox court's memory: filings, their events, idempotency records, rules, faults. No HTTP here.

Filings move `submitted → under_review → accepted → served → judgment` (or `rejected`,
`cancelled`, and a served payment order `objected`) when asked (`CourtState.move`) or over time
by `Rules` (`CourtState.tick`); each move is an `Event`, pending until a callback delivers it.
Everything runs on the server's single event loop, so plain dicts need no lock as long as a
handler does not await between reading and writing.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from integrations._sandbox_faults import FaultState, SandboxFaults
from integrations.court._wire import wire_facts
from integrations.court.protocol import TERMINAL_STATUSES

__all__ = [
    "HAPPY_PATH",
    "CourtSandboxCredentials",
    "CourtState",
    "Event",
    "Faults",
    "Filing",
    "Rules",
    "path",
]

HAPPY_PATH = ("submitted", "under_review", "accepted", "served", "judgment")
_CASE_PREFIX = {"deficiency": "CV", "payment_order": "DU", "security_realisation": "TE"}
_KEYS = ("filer_id", "api_key", "callback_secret")
OBJECTION = "The respondent raised a written objection within 15 days of service: the payment order is void."


@dataclass(frozen=True)
class CourtSandboxCredentials:
    """What the sandbox court accepts; the keys are settings fields of `EcfSettings`."""

    filer_id: str
    api_key: str
    callback_secret: str

    @classmethod
    def generate(cls) -> CourtSandboxCredentials:
        return cls(
            "FILER-" + secrets.token_hex(4).upper(), "ecf_" + secrets.token_hex(16), secrets.token_hex(16)
        )

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str]) -> CourtSandboxCredentials:
        """The court's own keys if the mapping has them; else ones derived from the whole mapping,
        which `start_sandbox` generates at random, so they are as unguessable as its secrets."""
        if all(mapping.get(k) for k in _KEYS):
            return cls(*(str(mapping[k]) for k in _KEYS))
        seed = json.dumps(dict(mapping), sort_keys=True, default=str)

        def derive(label: str) -> str:
            return hashlib.sha256(f"arrears-court-sandbox/{label}\0{seed}".encode()).hexdigest()

        return cls(
            "FILER-" + derive("filer")[:8].upper(), "ecf_" + derive("api_key")[:32], derive("callback")[:32]
        )

    def as_mapping(self) -> dict[str, str]:
        return asdict(self)

    def __repr__(self) -> str:
        return f"CourtSandboxCredentials(filer_id={self.filer_id!r}, ...)"


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
    object_courts: str | None = Field(
        default=None,
        description="Regex on the court code: payment orders there are objected to when the judgment "
        "rule falls due, instead of taking effect.",
    )
    objection_reason: str = Field(default=OBJECTION)


@dataclass(slots=True)
class Event:
    id: str
    filing_id: str
    status: str
    at: datetime
    reason: str | None
    case_number: str | None
    case_type: str = "deficiency"

    def wire(self) -> dict[str, Any]:
        review, service, case = wire_facts(self.status, self.case_type)
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
        review, service, case = wire_facts(self.status, self.case_type)
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


def path(current: str, target: str) -> list[str] | None:
    """The statuses a filing passes through from `current` to `target`; None if it cannot get there."""
    if target == "rejected":
        return {"submitted": ["under_review", "rejected"], "under_review": ["rejected"]}.get(current)
    if target == "cancelled":
        return ["cancelled"] if current in ("submitted", "under_review") else None
    if target == "objected":  # within 15 days of service: through `served`, never after `judgment`
        before = [] if current == "served" else path(current, "served")
        return None if before is None else [*before, "objected"]
    if (
        current in HAPPY_PATH
        and target in HAPPY_PATH
        and HAPPY_PATH.index(target) > HAPPY_PATH.index(current)
    ):
        return list(HAPPY_PATH[HAPPY_PATH.index(current) + 1 : HAPPY_PATH.index(target) + 1])
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
        steps = path(filing.status, target)
        if steps is None:
            raise ValueError(f"filing {filing.id} cannot go from {filing.status} to {target}")
        if target == "objected" and filing.case_type != "payment_order":
            raise ValueError(f"filing {filing.id} is a {filing.case_type}: no payment order to object to")
        events = []
        for status in steps:
            filing.status, filing.status_at = status, at
            if status in ("rejected", "cancelled"):
                filing.reason = reason or f"{status} by the sandbox"
            if status == "objected":
                filing.reason = reason or OBJECTION
            if status == "accepted" and filing.case_number is None:
                self.sequence += 1
                prefix = _CASE_PREFIX.get(filing.case_type, "CV")
                filing.case_number = f"{at.year}-{prefix}-{self.sequence:06d}"
            event = Event(
                "EV-" + uuid.uuid4().hex[:16],
                filing.id,
                status,
                at,
                filing.reason,
                filing.case_number,
                filing.case_type,
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
        objecting = re.compile(r.object_courts) if r.object_courts else None
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
                if (
                    status == "judgment"
                    and filing.case_type == "payment_order"
                    and objecting is not None
                    and objecting.search(filing.court)
                ):
                    target, reason = "objected", r.objection_reason
                if path(filing.status, target):
                    self.move(filing, target, due, reason)
