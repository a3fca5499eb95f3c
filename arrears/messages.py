"""Message templates: Jinja2 catalogues per locale, rendered once when a message is decided.

The rendered body is stored in the outbox, so the audit trail shows exactly what the borrower
read. Locale follows the jurisdiction (zh-CN for CN, English elsewhere); the lender's name opens
every message because the institution must identify itself (CBA 2026 guideline), and US
messages carry the opt-out instruction (Reg F 1006.6(e)).
"""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined, Template

from arrears.currencies import minor_units
from arrears.jurisdictions import profile

__all__ = ["MessageContext", "template_params", "render", "locale_for", "format_money"]

_SYMBOLS = {"CNY": "¥", "USD": "$", "GBP": "£", "EUR": "€"}


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
    return "zh-CN" if jurisdiction == "CN" else "en"


def format_money(amount: Decimal, currency: str) -> str:
    places = minor_units(currency)
    return f"{_SYMBOLS.get(currency, currency + ' ')}{amount:,.{places}f}"


def template_params(ctx: MessageContext) -> dict[str, str]:
    """The values a template is filled with: stored with the message, and what a template-based
    vendor (Aliyun) receives to render its own pre-approved copy of the same text."""
    locale = locale_for(ctx.jurisdiction)
    return {
        "lender": ctx.lender,
        "name": ctx.borrower_name if locale == "zh-CN" else ctx.borrower_name.split()[0],
        "amount": format_money(ctx.past_due_amount, ctx.currency),
        "installment": format_money(ctx.installment_amount, ctx.currency),
        "days": str(ctx.days_past_due),
        "due_date": ctx.next_due_date.isoformat() if ctx.next_due_date else "",
    }


def render(template: str, ctx: MessageContext, params: dict[str, str] | None = None) -> str:
    """The text the borrower reads; raises if the template needs a value the context lacks."""
    values = params if params is not None else template_params(ctx)
    opt_out = profile(ctx.jurisdiction).sms_opt_out_required
    return _template(locale_for(ctx.jurisdiction), template).render(**values, opt_out=opt_out).strip()


@cache
def _template(locale: str, name: str) -> Template:
    return _environment().get_template(f"{locale}/{name}.j2")


@cache
def _environment() -> Environment:
    # Plain text, not HTML: autoescape would turn "&" in a lender's name into "&amp;".
    return Environment(loader=PackageLoader("arrears", "templates"), undefined=StrictUndefined, autoescape=False)
