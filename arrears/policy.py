"""The collection policy: every number of DESIGN §2's table, overridable by a policy file.

A lender's policy file (TOML or JSON) names only what it changes; everything else keeps the
default below. Policy is plain data handed to the pure rules, so a decision can be replayed
under the policy that made it.
"""

import json
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from arrears.jurisdictions import Profile, ProfileError, resolve

__all__ = ["DEFAULT_POLICY", "Policy", "PolicyError", "load_policy"]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Reminder(_Section):
    cadence_days: tuple[int, ...] = Field(default=(1, 5, 10), description="Days past due on which to remind.")
    courtesy_days_before_due: int | None = Field(
        default=3, description="Courtesy reminder this many days before the due date, for high-risk accounts."
    )


class Negotiation(_Section):
    enter_dpd: int = Field(
        default=16, description="Days past due at which reminders give way to negotiation."
    )
    cadence_days: int = Field(
        default=7, description="Days between requests for a promise while none is pending."
    )
    review_dpd: int = Field(
        default=60, description="Days past due without a working plan that send to review."
    )
    strategic_review_dpd: int = Field(default=45, description="The same threshold for strategic defaulters.")
    strategic_broken_promises: int = Field(
        default=2, description="Broken promises that send a strategic defaulter to review."
    )
    return_grace_days: int = Field(
        default=30,
        description=(
            "After a reviewer returns an account to negotiation, days before days past due (or, for a"
            " strategic defaulter, the promises broken before the return) escalate it again."
        ),
    )


class Restructuring(_Section):
    """The offer's expiry and the plan numbers `arrears.restructuring.plan_rules` reads (a policy
    file naming `plan_grace_days` was refused as an unknown key, so every lender had the defaults)."""

    offer_expiry_days: int = Field(
        default=14, description="An offer unanswered this long counts as declined."
    )
    max_deferral_instalments: int = Field(
        default=3, ge=1, description="Instalments a deferral may move to the end of the term."
    )
    instalment_months: tuple[int, ...] = Field(
        default=(3, 6),
        min_length=1,
        description="The instalment plans offered, in months, recommended first.",
    )
    min_instalment_months: int = Field(default=2, ge=1, description="The shortest instalment plan.")
    max_instalment_months: int = Field(
        default=12, ge=1, description="The longest instalment plan an agent may agree."
    )
    plan_grace_days: int = Field(
        default=5, ge=0, description="Days after its due date a plan payment still counts as on time."
    )
    plan_lead_days: int = Field(
        default=5, ge=0, description="Days from the agreement to a plan's first payment, at least."
    )
    reage_after_payments: int | None = Field(
        default=3,
        ge=1,
        description=(
            "On-time payments of an instalment plan that bring the account current (re-age); "
            "null (JSON policy) never re-ages."
        ),
    )

    @model_validator(mode="after")
    def _plans_fit(self) -> "Restructuring":
        if self.min_instalment_months > self.max_instalment_months:
            raise ValueError("min_instalment_months must not exceed max_instalment_months")
        outside = [
            m
            for m in self.instalment_months
            if not self.min_instalment_months <= m <= self.max_instalment_months
        ]
        if outside:
            raise ValueError(
                f"instalment_months {outside[0]} lies outside min_instalment_months..max_instalment_months"
            )
        return self


class Settlements(_Section):
    max_pay_by_days: int = Field(
        default=90,
        ge=0,
        description=(
            "The latest pay-by date an agent may agree for a settlement, in days from the day it is "
            "agreed: while an agreement runs the account is neither asked, escalated nor charged off."
        ),
    )
    lapse_after_days: int = Field(
        default=3,
        ge=0,
        description=(
            "Days after the pay-by date before an agreement not yet paid lapses: a payment received "
            "by the date may reach arrears in a later file. Payments still count only if received "
            "by the date."
        ),
    )


class Segmentation(_Section):
    ability_threshold: float = Field(default=0.5, ge=0, le=1)
    willingness_threshold: float = Field(default=0.5, ge=0, le=1)
    default_ability: float = Field(default=0.5, ge=0, le=1, description="Assumed before any bureau pull.")
    default_willingness: float = Field(default=0.5, ge=0, le=1, description="Assumed before any contact.")
    unreachable_after_failures: int = Field(
        default=3,
        ge=3,
        description=(
            "Consecutive failed deliveries that mark a number unreachable, and open skip tracing: at"
            " least 3 (CBA 2026 guideline: third parties only once the debtor is unreachable, an"
            " invalid number or 3 failed contacts in a row)."
        ),
    )


class Exits(_Section):
    charge_off_dpd: int | None = Field(
        default=180,
        description=(
            "Days past due at which an account outside review or legal referral is charged off (in legal"
            " referral too, once the legal team does not sue)."
        ),
    )


class Policy(_Section):
    reminder: Reminder = Reminder()
    negotiation: Negotiation = Negotiation()
    restructuring: Restructuring = Restructuring()
    settlements: Settlements = Settlements()
    segmentation: Segmentation = Segmentation()
    exits: Exits = Exits()
    approved_templates: frozenset[str] = Field(
        default=frozenset(
            {"courtesy", "reminder", "negotiation", "restructuring_offer", "restructuring_options"}
        ),
        description="Only these templates may be sent.",
    )
    profiles: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description=(
            'Overrides of the jurisdiction profiles (arrears/profiles/*.toml), by code or "*" for all: '
            'e.g. [profiles.CN.hours] start = "09:00", or [[profiles."*".caps]] name = "sms-borrower-7d" '
            "limit = 2. What a rule states may only be tightened."
        ),
    )
    _resolved: dict[str, Profile] = PrivateAttr(default_factory=dict)
    _resolved_from: Any = PrivateAttr(default=None)

    def profile(self, code: str) -> Profile:
        """The jurisdiction's profile under this policy: the file, with this policy's overrides."""
        # Asked for every message: read the private attributes straight from their dict (pydantic's
        # attribute lookup for them costs microseconds).
        private = self.__pydantic_private__
        assert private is not None
        if private["_resolved_from"] is not self.profiles:  # a model_copy(update=...) may bring new overrides
            self._resolve()
        try:
            return private["_resolved"][code]
        except KeyError:
            raise KeyError(
                f"unknown jurisdiction {code!r}; known: {', '.join(sorted(self._resolved))}"
            ) from None

    def longest_cap_window(self) -> timedelta:
        """How far back the message log must be read to count every cap of every profile."""
        if self._resolved_from is not self.profiles:
            self._resolve()
        return max((c.window for p in self._resolved.values() for c in p.caps), default=timedelta(0))

    def cap_bounds(self) -> frozenset[tuple[timedelta, int]]:
        """(window, limit) of every cap of every profile: a borrower sent no more than `limit`
        messages in the `window` before a period, through its end, breaks no cap in it."""
        if self._resolved_from is not self.profiles:
            self._resolve()
        return frozenset((c.window, c.limit) for p in self._resolved.values() for c in p.caps)

    def _resolve(self) -> None:
        self._resolved = resolve(self.profiles)
        self._resolved_from = self.profiles

    @model_validator(mode="after")
    def _coherent(self) -> "Policy":
        if any(d < 1 for d in self.reminder.cadence_days) or list(self.reminder.cadence_days) != sorted(
            set(self.reminder.cadence_days)
        ):
            raise ValueError("reminder.cadence_days must be increasing days past due, each at least 1")
        if not 1 <= self.negotiation.enter_dpd <= self.negotiation.review_dpd:
            raise ValueError("negotiation.enter_dpd must lie between 1 and negotiation.review_dpd")
        try:
            self._resolve()
        except ProfileError as error:
            raise ValueError(str(error)) from None
        return self


DEFAULT_POLICY = Policy()


class PolicyError(ValueError):
    """A policy file that cannot be read or breaks a rule; the message names the key."""


def load_policy(path: Path | None) -> Policy:
    """The default policy with `path`'s values laid over it."""
    if path is None:
        return DEFAULT_POLICY
    try:
        text = Path(path).read_text(encoding="utf-8")
        overrides: dict[str, Any] = json.loads(text) if Path(path).suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as error:
        raise PolicyError(f"cannot read policy file {path}: {error}") from error
    try:
        return Policy.model_validate(_merge(DEFAULT_POLICY.model_dump(), overrides))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise PolicyError(f"policy file {path}: {where}: {first['msg']}") from error


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        merged[key] = (
            _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
        )
    return merged
