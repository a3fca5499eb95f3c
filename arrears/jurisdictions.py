"""Jurisdiction profiles: where a borrower lives decides when and how we may contact them.

A profile is data. The numbers are the defaults of ../shared/domain/compliance.md, each with its
source; a lender's policy file may tighten them. `US-*` profiles are overlays on `US`.
"""

from dataclasses import dataclass, field, replace
from datetime import time

__all__ = ["Profile", "PROFILES", "profile", "known", "KNOWN_JURISDICTIONS"]


@dataclass(frozen=True, slots=True)
class Profile:
    code: str
    phone_region: str  # default region when parsing local phone numbers (phonenumbers)
    contact_start: time
    contact_end: time
    holidays_country: str | None = None
    no_contact_weekdays: frozenset[int] = field(default_factory=frozenset)  # 0 = Monday
    no_contact_on_holidays: bool = False
    cure_notice_days: int | None = None  # right to cure before repossession or suit
    cure_business_days: bool = False
    sms_opt_out_required: bool = False


_US = Profile(
    code="US",
    phone_region="US",
    # Reg F 1006.6(b)(1)(i): 08:00-21:00 in the consumer's local time; for SMS the send time counts.
    contact_start=time(8),
    contact_end=time(21),
    holidays_country="US",
    # Reg F 1006.6(e): every electronic communication carries a clear, free opt-out.
    sms_opt_out_required=True,
)

PROFILES: dict[str, Profile] = {
    # CBA 2026 guideline: no collection contact 22:00-08:00 local.
    "CN": Profile(code="CN", phone_region="CN", contact_start=time(8), contact_end=time(22), holidays_country="CN"),
    "US": _US,
    "US-CA": replace(_US, code="US-CA"),  # Cal. Civ. Code 2983.2: no pre-repossession cure notice
    "US-IA": replace(_US, code="US-IA", cure_notice_days=20),  # Iowa Code 537.5110-5111
    "US-WI": replace(_US, code="US-WI", cure_notice_days=15),  # Wis. Stat. 425.104-105
    "US-MA": replace(_US, code="US-MA", cure_notice_days=21),  # M.G.L. c.255B §20A
    # CONC 7.9: no contact at unreasonable times; CCA 1974 s.87-88: 14 days to remedy a default.
    "GB": Profile(
        code="GB", phone_region="GB", contact_start=time(8), contact_end=time(21), holidays_country="GB",
        cure_notice_days=14,
    ),
    # Consumer Credit Act 1995 s.46: none 21:00-09:00, none on Sundays or public holidays.
    "IE": Profile(
        code="IE", phone_region="IE", contact_start=time(9), contact_end=time(21), holidays_country="IE",
        no_contact_weekdays=frozenset({6}), no_contact_on_holidays=True,
    ),
}

KNOWN_JURISDICTIONS = frozenset(PROFILES)


def known(code: str) -> bool:
    return code in PROFILES


def profile(code: str) -> Profile:
    try:
        return PROFILES[code]
    except KeyError:
        raise KeyError(f"unknown jurisdiction {code!r}; known: {', '.join(sorted(PROFILES))}") from None
