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
from datetime import date
from decimal import Decimal
from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined, Template, nodes

from arrears.currencies import minor_units
from arrears.invisible import visible
from arrears.jurisdictions import Profile, profile
from arrears.records import record

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


@cache
def _name_part() -> re.Pattern[str]:
    """What a name is made of: letters and marks of any script, spaces, and the joiners of names
    (O'Brien, Jean-Luc, 阿卜杜·热合曼); the name in a message ends at the first other character.
    The vowel signs of Devanagari, Tamil and Thai and the harakat of Arabic are marks, which `\\w`
    leaves out (प्रिया was greeted as प): the class names every mark of the Basic Multilingual
    Plane. Built on first use (about 10 ms), not when a command imports this module."""
    ranges: list[list[int]] = []
    for c in range(0x10000):
        if unicodedata.category(chr(c))[0] == "M":
            if ranges and ranges[-1][1] == c - 1:
                ranges[-1][1] = c
            else:
                ranges.append([c, c])
    marks = "".join(f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)
    return re.compile(rf"(?:[^\W\d_]|[{marks}\s'\u2019\u00b7.\-])+")


@record
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

    Names are screened at import; this bounds what any stored name can add to a message. The
    name is the first run of its own characters wherever it starts: a servicer's field holding
    `=HYPERLINK("http://…")` or `😀 Dana` greets `HYPERLINK` or `Dana`, and never carries the
    quote, the colon or the link into a lender's text. Code points nobody sees (a combining
    grapheme joiner, a variation selector, a zero-width space: `visible`) are dropped, not kept
    inside a word they would hide from the content check: Deadbeat with a combining grapheme
    joiner inside greets `Deadbeat`.
    """
    text = visible(unicodedata.normalize("NFKC", name)).strip()
    found = _name_part().search(text)
    text = " ".join((found.group() if found else "").split())
    if locale != "zh-CN":
        text = text.split(" ", 1)[0]
    if not text:  # no letters at all: the printable characters of the name, as stored
        text = "".join(ch for ch in visible(name) if ch.isprintable()).strip()
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
        "overdue": _days(ctx.days_past_due, locale),
        "due_date": ctx.next_due_date.isoformat() if ctx.next_due_date else "",
    }


def _days(count: int, locale: str) -> str:
    """A count of days as a sentence says it: English agrees the noun with the count ("1 day",
    not "1 days"); a template that chose the word itself would read the value, and leave the
    precompiled fill-in (`_skeleton`) for a Jinja render of every message."""
    if locale == "zh-CN":
        return f"{count}天"
    return f"{count} day" if count == 1 else f"{count} days"


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


def _render(locale: str, template: str, values: tuple[tuple[str, str], ...], opt_out: str) -> str:
    names = tuple(name for name, _ in values)
    skeleton = _skeleton(locale, template, names, opt_out)
    if skeleton is None:
        return _template(locale, template).render(**dict(values), opt_out=opt_out).strip()
    texts, slots = skeleton
    filled = [texts[0]]
    for slot, text in zip(slots, texts[1:], strict=True):
        filled += (values[slot][1], text)
    return "".join(filled).strip()


_SLOT = re.compile("\x00([0-9]+)\x00")


@cache
def _skeleton(
    locale: str, template: str, names: tuple[str, ...], opt_out: str
) -> tuple[tuple[str, ...], tuple[int, ...]] | None:
    """The template's text around its values, for a template that only prints them (no filter,
    test or loop reads a value): filling it in is then the same text as rendering, at a fraction
    of a Jinja render's cost, which a cycle pays once per message. None for any other template.

    Rendered once per template and opt-out text with a placeholder for each value; the texts
    between placeholders and the index of the value in each slot are kept.
    """
    env = _environment()
    source = env.loader.get_source(env, f"{locale}/{template}.j2")[0] if env.loader else ""
    tree = env.parse(source)
    printed = sum(
        1
        for output in tree.find_all(nodes.Output)
        for node in output.nodes
        if isinstance(node, nodes.Name) and node.name in names
    )
    if printed != sum(1 for node in tree.find_all(nodes.Name) if node.name in names):
        return None
    placeholders = {name: f"\x00{i}\x00" for i, name in enumerate(names)}
    parts = _SLOT.split(_template(locale, template).render(**placeholders, opt_out=opt_out))
    return tuple(parts[0::2]), tuple(int(i) for i in parts[1::2])


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
