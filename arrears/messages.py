"""Message templates: Jinja2 catalogues per locale, rendered once when a message is decided.

The rendered body is stored in the outbox, so the audit trail shows exactly what the borrower
read. Locale follows the jurisdiction's profile (zh-CN for CN, English elsewhere); the lender's
name opens every message because the institution must identify itself (CBA 2026 guideline), and
where the profile requires it the message ends with its opt-out instruction (Reg F 1006.6(e)).
`arrears.compliance.content` checks the rendered text for all of this, and for what no message
may say.
"""

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cache, lru_cache

from jinja2 import Environment, PackageLoader, StrictUndefined, Template

from arrears.currencies import minor_units
from arrears.jurisdictions import Profile, profile

__all__ = [
    "DISPLAY_NAME_LENGTH",
    "MessageContext",
    "display_name",
    "format_money",
    "locale_for",
    "render",
    "template_params",
]

_SYMBOLS = {"CNY": "¥", "USD": "$", "GBP": "£", "EUR": "€"}
# A name in a message is a greeting, not a field: at most this many characters of it.
DISPLAY_NAME_LENGTH = 24
# What a name is made of: letters and marks of any script, spaces, and the joiners of names
# (O'Brien, Jean-Luc, 阿卜杜·热合曼). The name in a message ends at the first other character.
_NAME_PART = re.compile(r"(?:[^\W\d_]|[\s'\u2019\u00b7.\-])+")


@dataclass(frozen=True, slots=True)
class MessageContext:
    lender: str
    borrower_name: str
    jurisdiction: str
    currency: str
    past_due_amount: Decimal
    installment_amount: Decimal
    days_past_due: int
    next_due_date: date | None = None


def locale_for(jurisdiction: str) -> str:
    return profile(jurisdiction).locale


def format_money(amount: Decimal, currency: str) -> str:
    places = minor_units(currency)
    return f"{_SYMBOLS.get(currency, currency + ' ')}{amount:,.{places}f}"


def display_name(name: str, locale: str) -> str:
    """The borrower's name as a message greets them: the whole name in zh-CN, the first name
    elsewhere; only the name's own characters, at most DISPLAY_NAME_LENGTH of them.

    Names are screened at import; this bounds what any stored name can add to a message.
    """
    text = unicodedata.normalize("NFKC", name).strip()
    found = _NAME_PART.match(text)
    text = " ".join((found.group() if found else "").split())
    if locale != "zh-CN":
        text = text.split(" ", 1)[0]
    if not text:  # no letters at all: the printable characters of the name, as stored
        text = "".join(ch for ch in name if ch.isprintable()).strip()
    return text[:DISPLAY_NAME_LENGTH].strip()


def template_params(ctx: MessageContext) -> dict[str, str]:
    """The values a template is filled with: stored with the message, and what a template-based
    vendor (Aliyun) receives to render its own pre-approved copy of the same text."""
    locale = locale_for(ctx.jurisdiction)
    return {
        "lender": ctx.lender,
        "name": display_name(ctx.borrower_name, locale),
        "amount": format_money(ctx.past_due_amount, ctx.currency),
        "installment": format_money(ctx.installment_amount, ctx.currency),
        "days": str(ctx.days_past_due),
        "due_date": ctx.next_due_date.isoformat() if ctx.next_due_date else "",
    }


def render(
    template: str,
    ctx: MessageContext,
    params: dict[str, str] | None = None,
    *,
    profile: Profile | None = None,
) -> str:
    """The text the borrower reads; raises if the template needs a value the context lacks.

    `profile` is the jurisdiction's profile under the lender's policy (`Policy.profile`); without
    it, the profile as the files state it.
    """
    values = params if params is not None else template_params(ctx)
    prof = profile if profile is not None else _profile(ctx.jurisdiction)
    opt_out = prof.opt_out_text if prof.sms_opt_out_required else ""
    return _render(prof.locale, template, tuple(values.items()), opt_out)


@lru_cache(maxsize=65_536)
def _render(locale: str, template: str, values: tuple[tuple[str, str], ...], opt_out: str) -> str:
    # Cached: the values decide the text, and a cycle renders each message once when it decides
    # and may ask again when it stores it.
    return _template(locale, template).render(**dict(values), opt_out=opt_out).strip()


_profile = profile  # `render` takes a `profile` argument that shadows the function


@cache
def _template(locale: str, name: str) -> Template:
    return _environment().get_template(f"{locale}/{name}.j2")


@cache
def _environment() -> Environment:
    # Plain text, not HTML: autoescape would turn "&" in a lender's name into "&amp;".
    return Environment(
        loader=PackageLoader("arrears", "templates"), undefined=StrictUndefined, autoescape=False
    )
