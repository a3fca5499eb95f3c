"""Jurisdiction profiles: where a borrower lives decides when, how often and how we may contact them.

A profile is data: one TOML file per jurisdiction in `arrears/profiles/`, each value next to the
source it comes from (../shared/domain/compliance.md). `extends` lays a profile over another
(`US-CA` over `US` over `_base`): tables merge key by key and caps merge by name.

A lender's policy file lays its own values over the files (`[profiles.CN.hours]`, or
`[profiles."*"]` for every jurisdiction) through `resolve`; a profile's overrides reach the
profiles that extend it (`[profiles.US]` binds US-CA, US-IA, … too), the more specific winning.
A value that a rule states (contact hours and closed days, binding caps, the SMS opt-out, the
third-party rule, naming the lender) may only be tightened there; the policy numbers (`binding =
false` caps) may move either way.
"""

import re
import tomllib
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field, fields
from datetime import date, time, timedelta
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import holidays

__all__ = [
    "KNOWN_JURISDICTIONS",
    "PROFILES",
    "Cap",
    "Hours",
    "Profile",
    "ProfileError",
    "known",
    "profile",
    "resolve",
]

_SCOPES = ("borrower", "account", "address")
_COUNTS = ("all", "connected", "unanswered")
_THIRD_PARTIES = ("never", "when_unreachable")  # strictest first


class ProfileError(ValueError):
    """A profile file or a policy override that cannot be used; the message names the key."""


@dataclass(frozen=True, slots=True)
class Hours:
    """When contact is allowed, in the borrower's local wall-clock time: [start, end) on open days."""

    start: time
    end: time
    closed_weekdays: frozenset[int] = frozenset()  # 0 = Monday
    closed_on_holidays: bool = False
    holidays: str | None = None  # calendar of the `holidays` package: "US", or "US-CA" for a subdivision
    source: str = field(default="", compare=False)  # not part of the rule: keeps the cache key small

    @property
    def label(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True, slots=True)
class Cap:
    """At most `limit` contacts on `channel` per `scope` in any `window_days` (rolling, in hours)."""

    name: str
    channel: str  # sms | call | email
    scope: str  # borrower (all their loans) | account (one debt) | address (one number)
    limit: int
    window_days: int
    counts: str = "all"  # all | connected | unanswered (calls)
    quiet_after_conversation_days: int | None = None  # none at all this long after a conversation
    binding: bool = False  # a rule states this number (tighten only); False: a policy number
    source: str = ""

    @property
    def window(self) -> timedelta:
        return timedelta(days=self.window_days)

    @property
    def rule(self) -> str:
        """How a verdict names this cap: `cap:sms-borrower-7d`."""
        return f"cap:{self.name}"


@dataclass(frozen=True, slots=True)
class Profile:
    code: str
    phone_region: str  # default region when parsing local phone numbers (phonenumbers)
    locale: str  # message catalogue: zh-CN or en
    hours: Hours
    caps: tuple[Cap, ...] = ()
    identify_institution: bool = True  # every message names the lender
    sms_opt_out_required: bool = False  # every text carries `opt_out_text`
    opt_out_text: str = "Reply STOP to opt out."
    third_parties: str = "when_unreachable"  # never | when_unreachable; never told of the debt either way
    cure_notice_days: int | None = None  # right to cure before repossession or suit
    cure_business_days: bool = False
    max_cures: int | None = None  # no cure owed after this many
    # Days after the mailing date at which a mailed notice counts as given (0: when mailed).
    cure_mailing_days: int = 0
    # Days past due before the notice may be given (US-MA: at least 10 days after default): a
    # review opened earlier (a strategic defaulter's second broken promise) waits for it.
    cure_notice_after_days: int = 0
    breathing_space_days: int | None = None  # informative: the hold is lifted by notice, not by date
    # Days between sending the notice of the planned sale of a repossessed vehicle and the sale
    # (None: no such notice owed, the account closes on recovery).
    sale_notice_days: int | None = None
    # Whether the explanation of a sale's surplus or deficiency is sent with (or before) the first
    # written demand for a deficiency and when a surplus is accounted for (UCC 9-616(b), consumer
    # goods): the letter `deficiency_explanation`, and no deficiency is referred before it is mailed.
    deficiency_explanation: bool = False
    # Whether a repossession needs a court order (protected goods, GB: CCA 1974 s.90, IE: CCA 1995
    # ss.63-64, once a third of a hire-purchase price is paid; arrears is not told what was paid,
    # so every agreement there is treated as protected): a repossess decision is then referred to
    # legal, as under SCRA.
    repossession_needs_court_order: bool = False
    # Whether a notice of sums in arrears is owed (GB: Consumer Credit Act 1974 s.86B, the letter
    # `arrears_notice`): once the arrears come to `arrears_notice_payments` instalments, one to mail
    # within `arrears_notice_within_days` (counting the day it is first owed), then one every
    # `arrears_notice_every_days` while the account is in arrears. A policy may owe it sooner or
    # oftener, never later (`_tighter`).
    arrears_notice: bool = False
    arrears_notice_payments: int | None = None
    arrears_notice_within_days: int | None = None
    arrears_notice_every_days: int | None = None
    # Whether a validation notice is owed (Reg F 1006.34, the letter `validation_notice`; US-CA by
    # the Rosenthal Act): one per account, mailed within `validation_notice_within_days` business
    # days of the first message sent about the debt, stating the day its validation period ends:
    # `validation_period_days` after the borrower is assumed to receive it, `validation_receipt_days`
    # business days after it is mailed. Business days skip weekends and the country's legal public
    # holidays (5 USC 6103(a)). A policy may owe it anywhere, sooner, with a longer period; never
    # less (`_tighter`).
    validation_notice: bool = False
    validation_notice_within_days: int | None = None
    validation_receipt_days: int | None = None
    validation_period_days: int | None = None
    sources: tuple[tuple[str, str], ...] = ()  # (what, citation) for the values above
    _by_channel: dict[str, tuple[Cap, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_hash", hash(tuple(getattr(self, f.name) for f in fields(self) if f.compare))
        )

    def __hash__(self) -> int:
        # Kept: a profile keys the content check's caches, asked several times for every message,
        # and hashing its fields (hours, caps, sources) each time cost microseconds.
        return self._hash

    def caps_for(self, channel: str) -> tuple[Cap, ...]:
        """The caps that count contacts on `channel` (asked once per message: kept after the first)."""
        found = self._by_channel.get(channel)
        if found is None:
            found = self._by_channel[channel] = tuple(c for c in self.caps if c.channel == channel)
        return found

    @property
    def hours_rule(self) -> str:
        """How a verdict names the contact window: `hours:CN`."""
        return f"hours:{self.code}"


# ----------------------------------------------------------------------------------------------
# Files


def _read_files() -> dict[str, dict[str, Any]]:
    folder = resources.files("arrears") / "profiles"
    raw: dict[str, dict[str, Any]] = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".toml"):
            try:
                raw[entry.name.removesuffix(".toml")] = tomllib.loads(entry.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as error:
                raise ProfileError(f"profiles/{entry.name}: {error}") from error
    return raw


def _flatten(raw: dict[str, dict[str, Any]], name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The profile file `name` with everything it extends laid under it."""
    if name in seen:
        raise ProfileError(f"profiles/{name}.toml: extends itself through {' -> '.join(seen)}")
    if name not in raw:
        raise ProfileError(f"no profile file {name}.toml (extended by {seen[-1] if seen else '?'})")
    own = raw[name]
    parent = own.get("extends")
    base = _flatten(raw, parent, (*seen, name)) if parent else {}
    return _overlay(base, {k: v for k, v in own.items() if k != "extends"})


def _lineage(code: str) -> list[str]:
    """The profiles `code` extends, from the farthest, then itself; not the `_`-files under them all."""
    names = [code]
    while (parent := _RAW[names[0]].get("extends")) is not None and not parent.startswith("_"):
        names.insert(0, parent)
    return names


def _overlay(base: Mapping[str, Any], over: Mapping[str, Any], origin: str | None = None) -> dict[str, Any]:
    """`over` laid on `base`; with `origin`, a cap `over` changes without naming a source says where
    the change came from."""
    merged = dict(base)
    for key, value in over.items():
        if key == "caps":
            merged["caps"] = _overlay_caps(base.get("caps", []), value, origin)
        elif isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            merged[key] = {**base[key], **value}
        else:
            merged[key] = value
    return merged


def _overlay_caps(base: list[dict[str, Any]], over: Any, origin: str | None) -> list[dict[str, Any]]:
    if not isinstance(over, list) or not all(isinstance(c, Mapping) and "name" in c for c in over):
        raise ProfileError("caps: a list of tables, each with a name")
    caps = {c["name"]: dict(c) for c in base}
    for cap in over:
        before = caps.get(cap["name"], {})
        caps[cap["name"]] = {**before, **cap}
        if origin and "source" not in cap:
            caps[cap["name"]]["source"] = f"{origin}" + (
                f" (was: {before['source']})" if before.get("source") else ""
            )
    return list(caps.values())


# ----------------------------------------------------------------------------------------------
# Building and checking


def _time(value: Any, where: str) -> time:
    try:
        return time.fromisoformat(value)
    except (TypeError, ValueError):
        raise ProfileError(f"{where}: a local time HH:MM, not {value!r}") from None


def _take(data: dict[str, Any], where: str, known: set[str]) -> None:
    unknown = set(data) - known
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")


def _hours(data: Any, where: str) -> Hours:
    if not isinstance(data, Mapping):
        raise ProfileError(f"{where}: a table with start and end")
    _take(dict(data), where, {"start", "end", "closed_weekdays", "closed_on_holidays", "holidays", "source"})
    try:
        start, end = _time(data["start"], f"{where}.start"), _time(data["end"], f"{where}.end")
    except KeyError as missing:
        raise ProfileError(f"{where}: {missing.args[0]} is required") from None
    if not start < end:
        raise ProfileError(f"{where}: start {start:%H:%M} must come before end {end:%H:%M}")
    closed = data.get("closed_weekdays", [])
    if not isinstance(closed, list) or not all(isinstance(d, int) and 0 <= d <= 6 for d in closed):
        raise ProfileError(f"{where}.closed_weekdays: days 0 (Monday) to 6 (Sunday)")
    return Hours(
        start=start,
        end=end,
        closed_weekdays=frozenset(closed),
        closed_on_holidays=bool(data.get("closed_on_holidays", False)),
        holidays=data.get("holidays"),
        source=str(data.get("source", "")),
    )


_CAP_KEYS = {
    "name",
    "channel",
    "scope",
    "limit",
    "window_days",
    "counts",
    "quiet_after_conversation_days",
    "binding",
    "source",
}


def _cap(data: dict[str, Any], where: str) -> Cap:
    where = f"{where}.caps.{data.get('name')}"
    _take(data, where, _CAP_KEYS)
    missing = {"channel", "scope", "limit", "window_days"} - set(data)
    if missing:
        raise ProfileError(f"{where}: {', '.join(sorted(missing))} required")
    cap = Cap(
        name=str(data["name"]),
        channel=str(data["channel"]),
        scope=str(data["scope"]),
        limit=data["limit"],
        window_days=data["window_days"],
        counts=str(data.get("counts", "all")),
        quiet_after_conversation_days=data.get("quiet_after_conversation_days"),
        binding=bool(data.get("binding", False)),
        source=str(data.get("source", "")),
    )
    if cap.scope not in _SCOPES:
        raise ProfileError(f"{where}.scope: one of {', '.join(_SCOPES)}")
    if cap.counts not in _COUNTS:
        raise ProfileError(f"{where}.counts: one of {', '.join(_COUNTS)}")
    if (
        not isinstance(cap.limit, int)
        or cap.limit < 1
        or not isinstance(cap.window_days, int)
        or cap.window_days < 1
    ):
        raise ProfileError(f"{where}: limit and window_days are whole numbers of at least 1")
    return cap


_VALIDATION_NUMBERS = ("validation_notice_within_days", "validation_receipt_days", "validation_period_days")
_PROFILE_KEYS = {
    "code",
    "phone_region",
    "locale",
    "hours",
    "caps",
    "identify_institution",
    "sms_opt_out_required",
    "opt_out_text",
    "third_parties",
    "cure_notice_days",
    "cure_business_days",
    "max_cures",
    "cure_mailing_days",
    "cure_notice_after_days",
    "breathing_space_days",
    "sale_notice_days",
    "deficiency_explanation",
    "repossession_needs_court_order",
    "arrears_notice",
    "arrears_notice_payments",
    "arrears_notice_within_days",
    "arrears_notice_every_days",
    *_VALIDATION_NUMBERS,
    "validation_notice",
}
# The shortest six months (31 August to 28 February): what one notice of sums in arrears to the
# next must fit in, with the days to mail it and the days a posted notice takes to be served.
_SIX_MONTHS_DAYS = 181
_SOURCE_SUFFIX = "_source"


def _build(code: str, data: dict[str, Any], where: str) -> Profile:
    sources = tuple(
        sorted(
            (k.removesuffix(_SOURCE_SUFFIX), str(v)) for k, v in data.items() if k.endswith(_SOURCE_SUFFIX)
        )
    )
    plain = {k: v for k, v in data.items() if not k.endswith(_SOURCE_SUFFIX)}
    _take(plain, where, _PROFILE_KEYS)
    if "hours" not in plain:
        raise ProfileError(f"{where}: hours are required")
    if plain.get("code", code) != code:
        raise ProfileError(f"{where}: code {plain['code']!r} does not match the file {code}")
    third = plain.get("third_parties", "when_unreachable")
    if third not in _THIRD_PARTIES:
        raise ProfileError(f"{where}.third_parties: one of {', '.join(_THIRD_PARTIES)}")
    caps = tuple(_cap(dict(c), where) for c in plain.get("caps", []))
    if len({c.name for c in caps}) != len(caps):
        raise ProfileError(f"{where}.caps: names must be unique")
    return Profile(
        code=code,
        phone_region=str(plain.get("phone_region", "")),
        locale=str(plain.get("locale", "en")),
        hours=_hours(plain["hours"], f"{where}.hours"),
        caps=caps,
        identify_institution=bool(plain.get("identify_institution", True)),
        sms_opt_out_required=bool(plain.get("sms_opt_out_required", False)),
        opt_out_text=str(plain.get("opt_out_text", "Reply STOP to opt out.")),
        third_parties=third,
        cure_notice_days=plain.get("cure_notice_days"),
        cure_business_days=bool(plain.get("cure_business_days", False)),
        max_cures=plain.get("max_cures"),
        cure_mailing_days=int(plain.get("cure_mailing_days", 0)),
        cure_notice_after_days=int(plain.get("cure_notice_after_days", 0)),
        breathing_space_days=plain.get("breathing_space_days"),
        sale_notice_days=plain.get("sale_notice_days"),
        deficiency_explanation=bool(plain.get("deficiency_explanation", False)),
        repossession_needs_court_order=bool(plain.get("repossession_needs_court_order", False)),
        **_arrears_notice(plain, where),
        **_validation_notice(plain, where),
        sources=sources,
    )


def _arrears_notice(plain: dict[str, Any], where: str) -> dict[str, Any]:
    """The notice of sums in arrears' numbers, each a whole number of at least 1 where it is owed,
    and together inside six months: a notice written `every` days after the last, mailed within
    `within` and served `cure_mailing_days` after, still comes within six months of it (s.86D(1)(b))."""
    names = ("arrears_notice_payments", "arrears_notice_within_days", "arrears_notice_every_days")
    owed = bool(plain.get("arrears_notice", False))
    if not owed:
        return {"arrears_notice": False} | dict.fromkeys(names)
    values: dict[str, int] = {}
    for name in names:
        value = plain.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ProfileError(f"{where}.{name}: a whole number of at least 1 where arrears_notice is owed")
        values[name] = value
    _, within, every = values.values()
    mailing = int(plain.get("cure_mailing_days", 0))
    if every + within + mailing > _SIX_MONTHS_DAYS:
        raise ProfileError(
            f"{where}.arrears_notice_every_days: {every} days, {within} to mail and {mailing} in the post "
            f"come to more than six months ({_SIX_MONTHS_DAYS} days at the shortest)"
        )
    return {"arrears_notice": True} | values


def _validation_notice(plain: dict[str, Any], where: str) -> dict[str, Any]:
    """The validation notice's numbers, each a whole number of at least 1 where it is owed (a
    profile that does not owe it may still state them, for a policy that makes it owed)."""
    if not plain.get("validation_notice", False):
        return {"validation_notice": False} | dict.fromkeys(_VALIDATION_NUMBERS)
    values: dict[str, int] = {}
    for name in _VALIDATION_NUMBERS:
        value = plain.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ProfileError(
                f"{where}.{name}: a whole number of at least 1 where validation_notice is owed"
            )
        values[name] = value
    return {"validation_notice": True} | values


def _tighter(base: Profile, new: Profile, where: str) -> None:
    """Refuse an override that loosens what a rule states: only tighter values pass."""
    b, n = base.hours, new.hours
    if n.start < b.start or n.end > b.end:
        raise ProfileError(f"{where}.hours: {n.label} is wider than the rule's {b.label} ({b.source})")
    if not n.closed_weekdays >= b.closed_weekdays or (b.closed_on_holidays and not n.closed_on_holidays):
        raise ProfileError(f"{where}.hours: may not open days the rule closes ({b.source})")
    if b.closed_on_holidays and n.holidays != b.holidays:
        raise ProfileError(f"{where}.hours.holidays: the rule's calendar {b.holidays} may not change")
    caps = {c.name: c for c in new.caps}
    for rule in (c for c in base.caps if c.binding):
        cap = caps.get(rule.name)
        if (
            cap is None
            or (cap.channel, cap.scope, cap.counts) != (rule.channel, rule.scope, rule.counts)
            or cap.limit > rule.limit
            or cap.window_days < rule.window_days
            or (rule.quiet_after_conversation_days or 0) > (cap.quiet_after_conversation_days or 0)
        ):
            raise ProfileError(f"{where}.caps.{rule.name}: may only be tightened ({rule.source})")
    if base.sms_opt_out_required and not new.sms_opt_out_required:
        raise ProfileError(
            f"{where}.sms_opt_out_required: a rule requires it ({dict(base.sources).get('sms_opt_out', '')})"
        )
    if new.sms_opt_out_required and not _OPT_OUT_WORD.search(new.opt_out_text):
        # An empty text passed the content check (every body contains ""), and "Thanks!" told
        # nobody how to stop: the instruction must name the keyword carriers honour.
        raise ProfileError(
            f"{where}.opt_out_text: {new.opt_out_text!r} does not say how to opt out (name STOP, e.g. "
            f"{base.opt_out_text!r}) ({dict(base.sources).get('sms_opt_out', '')})"
        )
    if base.identify_institution and not new.identify_institution:
        raise ProfileError(f"{where}.identify_institution: every message names the lender")
    _at_least(base, new, where, "sale_notice_days", "sale_notice")
    if base.deficiency_explanation and not new.deficiency_explanation:
        why = dict(base.sources).get("deficiency_explanation", "")
        raise ProfileError(f"{where}.deficiency_explanation: a rule requires it ({why})")
    # The right to cure: as many days at least, counted as the rule counts them, from a mailing
    # given as late, and owed for as many cures (US-MA: the first three; None: always).
    _at_least(base, new, where, "cure_notice_days", "cure")
    _at_least(base, new, where, "cure_mailing_days", "cure_mailing")
    _at_least(base, new, where, "cure_notice_after_days", "cure")
    if base.cure_business_days and not new.cure_business_days:
        why = dict(base.sources).get("cure", "")
        raise ProfileError(f"{where}.cure_business_days: the rule counts business days ({why})")
    if base.max_cures is not None and new.max_cures is not None and new.max_cures < base.max_cures:
        why = dict(base.sources).get("cure", "")
        raise ProfileError(f"{where}.max_cures: at least {base.max_cures} ({why})")
    _at_least(base, new, where, "breathing_space_days", "breathing_space")
    if base.arrears_notice:
        why = dict(base.sources).get("arrears_notice", "")
        if not new.arrears_notice:
            raise ProfileError(f"{where}.arrears_notice: a rule requires it ({why})")
        # Sooner and oftener only: fewer payments behind, fewer days to mail it, between notices.
        for days in ("arrears_notice_payments", "arrears_notice_within_days", "arrears_notice_every_days"):
            owed, given = getattr(base, days), getattr(new, days)
            if given > owed:
                raise ProfileError(f"{where}.{days}: at most {owed} ({why})")
    if base.validation_notice:
        why = dict(base.sources).get("validation_notice", "")
        if not new.validation_notice:
            raise ProfileError(f"{where}.validation_notice: a rule requires it ({why})")
        # Sooner to mail, a later receipt and a longer period: the borrower's time, never less.
        for name, more in zip(_VALIDATION_NUMBERS, (False, True, True), strict=True):
            owed, given = getattr(base, name), getattr(new, name)
            if (given < owed) if more else (given > owed):
                raise ProfileError(f"{where}.{name}: {'at least' if more else 'at most'} {owed} ({why})")
    if base.repossession_needs_court_order and not new.repossession_needs_court_order:
        why = dict(base.sources).get("protected_goods", "")
        raise ProfileError(f"{where}.repossession_needs_court_order: a rule requires it ({why})")
    if _THIRD_PARTIES.index(new.third_parties) > _THIRD_PARTIES.index(base.third_parties):
        raise ProfileError(f"{where}.third_parties: may only be tightened to 'never'")


_OPT_OUT_WORD = re.compile(r"\bSTOP\b|退订")  # the keywords carriers and Aliyun act on


def _at_least(base: Profile, new: Profile, where: str, days: str, source: str) -> None:
    """Refuse fewer `days` than the rule states (or none where it states some), naming its source."""
    owed, given = getattr(base, days), getattr(new, days)
    if owed is not None and (given is None or given < owed):
        raise ProfileError(f"{where}.{days}: at least {owed} ({dict(base.sources).get(source, '')})")


_RAW = _read_files()
_FILES = {name: _flatten(_RAW, name) for name in _RAW if not name.startswith("_")}


def resolve(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Profile]:
    """Every profile, with a policy file's `[profiles]` overrides laid over the files."""
    overrides = overrides or {}
    unknown = set(overrides) - set(_FILES) - {"*"}
    if unknown:
        raise ProfileError(
            f"profiles: unknown jurisdiction(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_FILES))}"
        )
    profiles = {}
    for code, data in _FILES.items():
        # "*", then each profile this one extends, from the farthest, then its own: counsel tightening
        # US contact hours means every US state's, unless a state's own override says otherwise.
        merged = data
        for name in ("*", *_lineage(code)):
            where = 'policy file [profiles."*"]' if name == "*" else f"policy file [profiles.{name}]"
            merged = _overlay(merged, overrides.get(name, {}), where)
        where = f"profiles.{code}"
        built = _build(code, merged, where)
        if overrides:
            _tighter(PROFILES[code], built, where)
        profiles[code] = built
    return profiles


PROFILES: dict[str, Profile] = {}
PROFILES.update(resolve())
KNOWN_JURISDICTIONS = frozenset(PROFILES)


def known(code: str) -> bool:
    return code in PROFILES


def profile(code: str) -> Profile:
    """The profile as the files state it; `Policy.profile` adds the lender's policy file."""
    try:
        return PROFILES[code]
    except KeyError:
        raise KeyError(f"unknown jurisdiction {code!r}; known: {', '.join(sorted(PROFILES))}") from None


def is_public_holiday(day: date, calendar: str) -> bool:
    """Whether `day` is a public holiday of `calendar` (a `holidays` package calendar: "US", or
    "US-IA" for a subdivision): the country's and, for a subdivision, its own. A subdivision's
    calendar in the package leaves out national holidays it does not keep itself (Columbus Day in
    Iowa, Independence Day observed in Massachusetts), yet the post and the courts close on them."""
    return day in _public_holidays(calendar, day.year)


@lru_cache(maxsize=256)
def _public_holidays(calendar: str, year: int) -> "holidays.HolidayBase":
    import holidays  # its calendars load on the first date asked, not with every profile

    country, _, subdivision = calendar.partition("-")
    days = holidays.country_holidays(country, years=year)
    if subdivision:
        # A subdivision the package does not know: the country's holidays still count.
        with suppress(NotImplementedError):
            days = days + holidays.country_holidays(country, subdiv=subdivision, years=year)
    return days
