"""The sandbox bureau's memory and its pure logic: requests received, idempotency records, faults,
the deterministic profiles it answers with and the Metro 2 checks it runs on uploads. No HTTP here.

Everything runs on the server's single event loop, so plain dicts need no lock as long as a
handler does not await between reading and writing them.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field

from integrations._sandbox_faults import FaultState, SandboxFaults

__all__ = [
    "MAGIC_SUFFIXES",
    "BureauCredentials",
    "Faults",
    "SandboxRecord",
    "SandboxState",
    "check_metro2",
    "profile_for",
]

Route = Literal["pull", "furnish"]
RECORD_LENGTH = 426

# National ids whose last four digits ask the sandbox for a given answer, like a vendor's test
# numbers: a bankruptcy petition under chapter 7 or 13, a deceased consumer, no file at all.
MAGIC_SUFFIXES: dict[str, str] = {
    "0007": "chapter 7",
    "0013": "chapter 13",
    "0999": "deceased",
    "0404": "no record",
}


@dataclass(frozen=True)
class BureauCredentials:
    """What the sandbox bureau accepts; the keys are the settings fields of `bureau.sandbox`."""

    subscriber_code: str
    api_key: str

    @classmethod
    def generate(cls) -> BureauCredentials:
        return cls(
            subscriber_code="SUB" + secrets.token_hex(4).upper(), api_key="bk_" + secrets.token_hex(20)
        )

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str]) -> BureauCredentials:
        """The bureau's own keys if the mapping has them; else keys derived from the whole mapping
        (a sandbox started by `start_sandbox` with its SMS-shaped random credentials), so they are
        as unguessable as those, and derived the same way by the server and its clients."""
        if mapping.get("subscriber_code") and mapping.get("api_key"):
            return cls(str(mapping["subscriber_code"]), str(mapping["api_key"]))
        seed = json.dumps(dict(mapping), sort_keys=True, default=str)

        def derive(label: str) -> str:
            return hashlib.sha256(f"arrears-bureau-sandbox/{label}\0{seed}".encode()).hexdigest()

        return cls("SUB" + derive("subscriber")[:8].upper(), "bk_" + derive("api_key")[:40])

    def as_mapping(self) -> dict[str, str]:
        return asdict(self)

    def __repr__(self) -> str:
        return f"BureauCredentials(subscriber_code={self.subscriber_code!r}, api_key='**********')"


class Faults(SandboxFaults):
    """Faults to inject into pulls and uploads (`POST /_sandbox/faults`); counters count down per request."""

    route: Literal["all", "pull", "furnish"] = Field(default="all", description="Which requests they hit.")


@dataclass(slots=True)
class SandboxRecord:
    """One executed pull or upload, as the sandbox's `/messages` control lists it."""

    id: str  # report id or submission id
    route: Route
    idempotency_key: str
    created_at: datetime
    answer: dict[str, Any]  # the JSON the bureau answered with
    fingerprint: str
    reference: str | None = None  # the account reference of a pull
    period: str | None = None  # the period of an upload
    content: bytes = b""

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "route": self.route,
            "idempotency_key": self.idempotency_key,
            "created_at": self.created_at.isoformat(),
            "reference": self.reference,
            "period": self.period,
            "size": len(self.content),
            "answer": self.answer,
        }


@dataclass
class SandboxState(FaultState):
    credentials: BureauCredentials
    faults: Faults = field(default_factory=Faults)
    records: list[SandboxRecord] = field(default_factory=list)
    by_id: dict[str, SandboxRecord] = field(default_factory=dict)
    by_key: dict[tuple[Route, str], SandboxRecord] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    def reset(self) -> None:
        self.faults = Faults()
        for store in (self.records, self.by_id, self.by_key, self.counters):
            store.clear()

    def record(self, record: SandboxRecord) -> None:
        self.records.append(record)
        self.by_id[record.id] = record
        self.by_key[(record.route, record.idempotency_key)] = record
        self.count(f"records.{record.route}")


# -- deterministic profiles -----------------------------------------------------------------------

_AREAS = ("213", "312", "415", "515", "608", "702", "917", "404", "503", "214")
_CARRIERS = ("VERIZON WIRELESS", "T-MOBILE USA", "AT&T MOBILITY", None)
_STREETS = ("MAPLE AVE", "OAK ST", "2ND ST", "PARK AVE", "ELM ST", "LAKE DR", "HILL RD", "PINE ST")
_CITIES = (
    ("LOS ANGELES", "CA", "900"),
    ("DES MOINES", "IA", "503"),
    ("MILWAUKEE", "WI", "532"),
    ("BOSTON", "MA", "021"),
    ("DALLAS", "TX", "752"),
    ("CHICAGO", "IL", "606"),
)


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("|".join(parts).encode()).digest()


def subject_seed(name: str, national_id: str | None, phone: str | None) -> bytes:
    """The same subject always hashes the same: a national id wins, then the phone, then the name."""
    ident = re.sub(r"\D", "", national_id or "")
    return _digest(ident or (phone or ""), "" if ident or phone else " ".join(name.upper().split()))


def profile_for(
    seed: bytes,
    *,
    national_id: str | None,
    reference: str,
    purpose: str,
    report_id: str,
    pulled_at: datetime,
) -> dict[str, Any] | None:
    """The report for a subject (None: no file), a pure function of the seed and the magic suffixes."""
    ident = re.sub(r"\D", "", national_id or "")
    magic = MAGIC_SUFFIXES.get(ident[-4:]) if ident else None
    if magic == "no record":
        return None
    b = seed
    phones = []
    for n in range(1 + b[0] % 3):
        area = _AREAS[b[1 + n] % len(_AREAS)]
        exchange = 200 + (b[4 + n] * 7 + n) % 800
        line = int.from_bytes(b[8 + 2 * n : 10 + 2 * n], "big") % 10_000
        phones.append(
            {
                "number": f"+1{area}{exchange:03d}{line:04d}",
                "confidence": round(0.35 + (b[14 + n] % 61) / 100, 2),
                "line_type": ("mobile", "mobile", "landline", "voip")[b[17 + n] % 4],
                "carrier": _CARRIERS[b[20 + n] % len(_CARRIERS)],
            }
        )
    city, state, zip3 = _CITIES[b[23] % len(_CITIES)]
    addresses = [
        {
            "line1": f"{100 + int.from_bytes(b[24:26], 'big') % 9800} {_STREETS[b[26] % len(_STREETS)]}",
            "line2": None,
            "city": city,
            "region": state,
            "postal_code": f"{zip3}{b[27] % 100:02d}",
            "country": "US",
            "reported_on": (pulled_at.date() - timedelta(days=30 * (1 + b[28] % 24))).isoformat(),
        }
    ]
    chapter = {"chapter 7": 7, "chapter 13": 13}.get(magic or "")
    income = None if b[29] % 10 == 0 else f"{18_000 + (int.from_bytes(b[30:32], 'big') % 130) * 1_000}.00"
    return {
        "report_id": report_id,
        "reference": reference,
        "permissible_purpose": purpose,
        "score_band": "ABCDE"[b[2] % 5],
        "income_estimate": income,
        "phones": phones,
        "addresses": addresses,
        "bankruptcy": {
            "indicator": chapter is not None,
            "chapter": chapter,
            "filed_on": (pulled_at.date() - timedelta(days=40)).isoformat() if chapter else None,
        },
        "deceased": magic == "deceased",
        "pulled_at": pulled_at.isoformat(),
    }


# -- Metro 2 uploads ---------------------------------------------------------------------------------


def split_records(content: bytes) -> list[bytes]:
    """Records of a character-format file: one per line, or fixed 426-byte chunks without newlines."""
    if b"\n" in content:
        lines = content.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        return [line[:-1] if line.endswith(b"\r") else line for line in lines]
    return [content[i : i + RECORD_LENGTH] for i in range(0, len(content), RECORD_LENGTH)]


def check_metro2(content: bytes, period: str) -> tuple[int, list[dict[str, Any]]]:
    """(records read, errors): the structural checks a bureau's intake runs before anything else.

    Record lengths and descriptor words, the header first and the trailer last, the header's
    activity date inside the period, and the trailer's count of base records. Field-level
    checks are the furnisher's job (our `arrears.metro2.validator`).
    """
    records = split_records(content)
    errors: list[dict[str, Any]] = []

    def err(n: int, name: str, reason: str) -> None:
        errors.append({"record": n, "field": name, "reason": reason})

    if not records:
        err(0, "file", "no records")
        return 0, errors
    for n, record in enumerate(records, start=1):
        if len(record) != RECORD_LENGTH:
            err(n, "record length", f"{len(record)} bytes, expected {RECORD_LENGTH}")
        elif record[:4] != b"0426":
            err(n, "record descriptor word", f"{record[:4]!r}, expected b'0426'")
        if not record.isascii():
            err(n, "record", "bytes outside ASCII")
    first, last = records[0], records[-1]
    if first[4:10] != b"HEADER":
        err(1, "record identifier", "the first record is not a HEADER")
    else:
        try:
            activity = datetime.strptime(first[47:55].decode("ascii"), "%m%d%Y").date()
            if activity.strftime("%Y-%m") != period:
                err(1, "activity date", f"{activity.isoformat()} is outside period {period}")
        except (UnicodeDecodeError, ValueError):
            err(1, "activity date", "not a MMDDYYYY date")
    if len(records) < 2 or last[4:11] != b"TRAILER":
        err(len(records), "record identifier", "the last record is not a TRAILER")
    else:
        declared = last[11:20]
        base = len(records) - 2
        if not declared.isdigit() or int(declared) != base:
            err(len(records), "total base records", f"{declared!r} declared, {base} in the file")
    return len(records), errors
