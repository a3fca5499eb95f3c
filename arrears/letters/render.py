"""Legal notices and confirmations as PDF letters: the text from a template, the page set by reportlab.

Why here, in the domain core: what a notice says is a rule of its jurisdiction (Iowa Code
537.5110-5111, Wis. Stat. 425.104-105, M.G.L. c.255B §20A, CCA 1974 s.88; the CBA 2026 guideline
for a 催收函), and the PDF is evidence. So rendering is a pure function of its inputs:
`render(kind, context)` gives the same bytes for the same context every time (reportlab's
`invariant=1`: no clock, no random document id in the file), so the letter can be rendered again
from its stored context and found the same. The task that mails it appends what the law makes it
carry (`arrears.letters.enclosures`), stores the PDF as mailed with its SHA-256 (`arrears letters
pdf` writes those bytes) and hands them to the letters provider (`integrations.letters`); nothing
here knows a provider.

Kinds (`LetterKind`) and the templates that serve them (`templates/<kind>.<variant>.j2`):
- `right_to_cure`: US-IA, US-WI, US-MA: the amount to cure, the cure deadline, the lender's name
  and contact, the borrower's rights; GB and IE: the default notice (Consumer Credit Act 1974
  s.87-88 and the Consumer Credit (Enforcement, Default and Termination Notices) Regulations 1983
  Sch. 2; Consumer Credit Act 1995 s.54, unverified), which states the date *before which* the
  arrears are to be paid (`remedy_before`, the day after the last day to cure);
- `collection_notice`: the zh-CN 催收函 sent to a CN account before legal referral;
- `hardship_plan`: the confirmation of an accepted plan, in English or zh-CN by the profile's locale;
- `notice_of_sale`: after a repossession, the notice of the planned sale (UCC 9-614's form for
  consumer goods), US: the vehicle, the first day it may be sold, the deficiency, redemption;
- `deficiency_explanation`: after the sale, US: how the surplus or deficiency was calculated, UCC
  9-616(c)'s six amounts in its order, and where to ask for more (`arrears.sales.Disposition`);
- `arrears_notice`: GB, the notice of sums in arrears (Consumer Credit Act 1974 s.86B; its content
  the Consumer Credit (Information Requirements and Duration of Licences and Charges) Regulations
  2007 regs. 36-38 and Sch. 2, unverified against the current text): the arrears
  (`amount_to_cure`) and the balance still to pay (`balance`), the FCA's arrears information sheet
  appended as it is mailed (`arrears.letters.enclosures`);
- `validation_notice`: US, the validation notice (Reg F 1006.34, in Model Form B-1's order): the
  debt itemized (`itemized_on`, `balance`) and the day the validation period ends
  (`validation_ends`), until which the borrower may dispute it.

The returned `text` is exactly the words on the page, for `vet` (the content rules of
`arrears.compliance.content`, the same ones every SMS passes) and for the audit trail.
"""

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from functools import cache, lru_cache, partial
from typing import Literal, get_args

from jinja2 import Environment, PackageLoader, StrictUndefined, TemplateNotFound
from reportlab.lib.pagesizes import A4, LETTER
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen.canvas import Canvas

from arrears.compliance.content import ContentFinding, check_content, screen_address, screen_envelope
from arrears.jurisdictions import Profile, profile
from arrears.messages import format_money

__all__ = [
    "LETTER_KINDS",
    "LetterContext",
    "LetterKind",
    "LetterTemplateMissing",
    "RenderedLetter",
    "render",
    "template_for",
    "vet",
]

LetterKind = Literal[
    "right_to_cure",
    "collection_notice",
    "hardship_plan",
    "notice_of_sale",
    "deficiency_explanation",
    "arrears_notice",
    "validation_notice",
]
LETTER_KINDS: tuple[str, ...] = get_args(LetterKind)

_CJK_FONT = "STSong-Light"  # one of reportlab's CID fonts: the reader supplies the glyphs, no font file
_LATIN_FONT = "Helvetica"
# Where the post and the print shops use US Letter paper (jurisdiction codes: US-IA is the US's);
# A4 everywhere else. The paper follows the country the letter is mailed in, never its words.
_LETTER_PAPER = frozenset({"US", "CA", "MX"})
_TITLE_SIZE, _BODY_SIZE, _LEADING = 13, 10.5, 15
_MARGIN = 64
# Lines set in bold: the amount and the date of a notice, and the statements the GB default notice
# must give prominence by bold print, not block capitals (1983 Regulations reg. 2(5), as amended in
# 2020); a line in capitals is set in bold too.
_EMPHASISED = (
    "AMOUNT TO CURE",
    "CURE DEADLINE",
    "SALE NOT BEFORE",
    "逾期金额",
    "还款期限",
    "Amount to pay:",
    "Pay before:",
    "This is a default notice",
    "Important - you should read this carefully",
    "If you do not take the action required by this notice",
    "Arrears:",
    "Balance still to pay:",
    "This is a notice of sums in arrears",
    "Total amount of the debt now:",
    "Call or write to us by",
)


class LetterTemplateMissing(LookupError):
    """No template for this kind in this jurisdiction (a right-to-cure notice in CN, say)."""


@dataclass(frozen=True, slots=True)
class LetterContext:
    """Everything a letter says, as stored facts: render it again from these and get the same bytes.

    Amounts are Decimal with `currency`; dates are the borrower's local calendar dates. A notice's
    `cure_deadline` is the last day to cure as `arrears.review.cure_deadline` computes it (from the
    planned mailing date; the legal clock itself starts at the provider's `mailed` event)."""

    jurisdiction: str  # profile code: US-IA, US-WI, US-MA, CN…
    lender: str
    lender_contact: str  # phone and address of the desk that takes payments and questions
    borrower_name: str
    account_reference: str
    letter_date: date
    currency: str
    # right_to_cure, collection_notice: the past-due amount; arrears_notice: the sum of the arrears
    amount_to_cure: Decimal | None = None
    cure_deadline: date | None = None
    itemization: Sequence[tuple[str, Decimal]] = ()  # US-WI 425.104(1): the cure amount itemized
    # The car, which identifies the credit transaction beside the account number (Iowa Code
    # 537.5110: "a brief identification of the credit transaction"; the GB default notice identifies
    # the agreement): "VIN 1HGCM82633A004352" (`notices.vehicle_of`), empty with no VIN on file. The
    # VIN is printed in full: it is no secret to the borrower the notice goes to, and the letter's
    # stored context holds what the letter prints, as the account row holds the VIN.
    vehicle: str = ""
    plan_description: str = ""  # hardship_plan
    plan_installment: Decimal | None = None
    plan_installments: int | None = None
    # Where the odd cents make the first payments larger (`split_exact`): the amount of the rest,
    # and how many they are. None when every payment is `plan_installment`.
    plan_later_installment: Decimal | None = None
    plan_later_installments: int | None = None
    plan_first_due: date | None = None
    plan_accepted_on: date | None = None
    borrower_address: Sequence[str] = field(default=())  # printed in the envelope window
    sale_after: date | None = None  # notice_of_sale: the first day the vehicle may be sold
    # notice_of_sale, US-CA: why there is no right to reinstate (Civ. Code 2983.2(a): the notice
    # states the right "or that there is no right of reinstatement and ... reasons therefor"),
    # `arrears.reinstatement.Spent.said`; None: the right is stated, with `amount_to_cure`.
    reinstatement_denied: str | None = None
    # deficiency_explanation: the sale's date (the amounts are computed as of it), and UCC
    # 9-616(c)'s amounts: (1) the obligations secured, (2) the proceeds, (4) the expenses, (5) the
    # credits, (6) the deficiency or the surplus ((3) is (1) less (2)).
    sold_on: date | None = None
    secured: Decimal | None = None
    secured_on: date | None = None  # the day (1) is calculated as of: the recovery's
    proceeds: Decimal | None = None
    expenses: Decimal | None = None
    credits: Decimal | None = None
    deficiency: Decimal | None = None
    surplus: Decimal | None = None
    # arrears_notice: what is left to pay under the agreement, the arrears in it, as they stand;
    # validation_notice: the debt now
    balance: Decimal | None = None
    # validation_notice: the itemization date (the debt itemized as it stood that day), and the
    # last day of the validation period (Reg F 1006.34(b)(3), (b)(5))
    itemized_on: date | None = None
    validation_ends: date | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "itemization", tuple(self.itemization))
        object.__setattr__(self, "borrower_address", tuple(self.borrower_address))


@dataclass(frozen=True, slots=True)
class RenderedLetter:
    """The PDF as mailed, its SHA-256 (the evidence), and the words on it (for `vet`)."""

    kind: str
    template: str
    pdf: bytes
    sha256: str
    text: str

    def __repr__(self) -> str:
        return f"RenderedLetter(kind={self.kind!r}, template={self.template!r}, sha256={self.sha256[:12]!r}…)"


def template_for(kind: str, jurisdiction: str, *, rules: Profile | None = None) -> str:
    """The template a letter of `kind` uses in `jurisdiction`; LetterTemplateMissing if none."""
    if kind not in LETTER_KINDS:
        raise ValueError(f"unknown letter kind {kind!r}")
    locale = (rules or profile(jurisdiction)).locale
    variants = {
        "right_to_cure": [jurisdiction],
        "collection_notice": [jurisdiction.split("-")[0]],
        "hardship_plan": [locale, "en"],
        "notice_of_sale": [jurisdiction, jurisdiction.split("-")[0]],
        "deficiency_explanation": [jurisdiction.split("-")[0]],
        "arrears_notice": [jurisdiction.split("-")[0]],
        "validation_notice": [jurisdiction.split("-")[0]],
    }[kind]
    for variant in variants:
        name = f"{kind}.{variant}.j2"
        try:
            _environment().get_template(name)
        except TemplateNotFound:
            continue
        return name
    raise LetterTemplateMissing(f"no {kind} letter for {jurisdiction}")


def _values(kind: str, ctx: LetterContext) -> dict[str, object]:
    def money(amount: Decimal | None, what: str) -> str:
        if amount is None:
            raise ValueError(f"a {kind} letter needs {what}")
        return format_money(amount, ctx.currency)

    def day(value: date | None, what: str) -> str:
        if value is None:
            raise ValueError(f"a {kind} letter needs {what}")
        return value.isoformat()

    values: dict[str, object] = {
        "lender": ctx.lender,
        "lender_contact": ctx.lender_contact,
        "borrower_name": ctx.borrower_name,
        "account_reference": ctx.account_reference,
        "letter_date": ctx.letter_date.isoformat(),
        "vehicle": ctx.vehicle,
    }
    if kind in ("right_to_cure", "collection_notice"):
        values["amount_to_cure"] = money(ctx.amount_to_cure, "the amount to cure")
        values["cure_deadline"] = last = day(ctx.cure_deadline, "the cure deadline")
        # CCA 1974 s.88(1)(b): "the date before which that action is to be taken", the day the
        # period has ended (`CureNotice.deadline` is its first instant).
        values["remedy_before"] = (date.fromisoformat(last) + timedelta(days=1)).isoformat()
        values["itemization"] = [(label, format_money(a, ctx.currency)) for label, a in ctx.itemization]
        # Wis. Stat. 425.104(1): the notice states the amount to cure itemized; the items add up.
        itemized = bool(ctx.itemization) and sum(a for _, a in ctx.itemization) == ctx.amount_to_cure
        if ctx.jurisdiction == "US-WI" and kind == "right_to_cure" and not itemized:
            raise ValueError("a US-WI notice itemizes the amount to cure, and the items add up to it")
    elif kind == "notice_of_sale":
        values["sale_after"] = day(ctx.sale_after, "the first day of the sale")
        if not ctx.vehicle:
            raise ValueError("a notice_of_sale letter describes the vehicle (UCC 9-614(1)(A))")
        # What to pay to reinstate and to redeem (Cal. Civ. Code 2983.2(a), 2983.3), where the
        # context keeps them: a notice stored before it did renders as it was mailed.
        values["jurisdiction"] = ctx.jurisdiction
        values["itemization"] = [(label, format_money(a, ctx.currency)) for label, a in ctx.itemization]
        if ctx.reinstatement_denied:
            if ctx.amount_to_cure is not None:
                raise ValueError("a notice_of_sale letter states a right to reinstate or why there is none")
            values["reinstatement_denied"] = ctx.reinstatement_denied
        if ctx.amount_to_cure is not None:
            values["amount_to_cure"] = money(ctx.amount_to_cure, "the past due")
    elif kind == "deficiency_explanation":
        values.update(_explanation(ctx, money, day))
    elif kind == "arrears_notice":
        values["arrears"] = money(ctx.amount_to_cure, "the sum of the arrears")
        values["balance"] = money(ctx.balance, "the balance still to pay")
        # CCA 1974 s.86B(3)-(5): the notices are owed while the debtor is in arrears, no longer.
        if ctx.amount_to_cure is not None and ctx.amount_to_cure <= 0:
            raise ValueError("an arrears_notice letter states arrears above zero")
    elif kind == "validation_notice":
        values["balance"] = money(ctx.balance, "the debt")
        values["itemized_on"] = as_of = day(ctx.itemized_on, "the itemization date")
        values["validation_ends"] = ends = day(ctx.validation_ends, "the end of the validation period")
        # Itemized as of the notice's day: nothing charged or paid since (`validation_notice_context`).
        if as_of != values["letter_date"]:
            raise ValueError("a validation_notice letter itemizes the debt as of its own date")
        values["nothing"] = money(Decimal(0), "")
        # 1006.34(b)(5): 30 days after a receipt five business days after mailing, which are a
        # week at least: a sooner end is a miscount.
        if date.fromisoformat(ends) < ctx.letter_date + timedelta(days=37):
            raise ValueError("a validation_notice letter's validation period ends 37 days after it or later")
    else:
        values["plan_installment"] = money(ctx.plan_installment, "the plan's instalment")
        values["plan_first_due"] = day(ctx.plan_first_due, "the plan's first due date")
        values["plan_accepted_on"] = day(ctx.plan_accepted_on, "the day the plan was accepted")
        if not ctx.plan_installments or not ctx.plan_description:
            raise ValueError("a hardship_plan letter needs the plan's description and number of payments")
        values["plan_installments"] = ctx.plan_installments
        values["plan_description"] = ctx.plan_description
        later = ctx.plan_later_installment
        values["plan_later_installment"] = money(later, "the plan's later payments") if later else ""
        values["plan_later_installments"] = ctx.plan_later_installments or 0
    return values


def _explanation(
    ctx: LetterContext, money: Callable[[Decimal | None, str], str], day: Callable[[date | None, str], str]
) -> dict[str, object]:
    """UCC 9-616(c)'s amounts, checked to add up: a letter whose (6) is not (3) + (4) - (5)
    explains nothing."""
    amounts = (ctx.secured, ctx.proceeds, ctx.expenses, ctx.credits, ctx.deficiency, ctx.surplus)
    if any(a is None for a in amounts):
        raise ValueError("a deficiency_explanation letter states the six amounts of UCC 9-616(c)")
    secured, proceeds, expenses, credits, deficiency, surplus = (Decimal(a or 0) for a in amounts)
    after = secured - proceeds
    if (deficiency and surplus) or deficiency - surplus != after + expenses - credits:
        raise ValueError("a deficiency_explanation letter's amounts do not add up (UCC 9-616(c)(6))")
    return {
        "sold_on": day(ctx.sold_on, "the date of the sale"),
        "secured_on": day(ctx.secured_on, "the day the obligations are calculated as of"),
        "secured": money(secured, "the obligations secured"),
        "proceeds": money(proceeds, "the proceeds"),
        "after_proceeds": money(after, "") if after >= 0 else "",
        "proceeds_over": money(-after, "") if after < 0 else "",
        "expenses": money(expenses, "the expenses"),
        "credits": money(credits, "the credits"),
        "deficiency": money(deficiency, "the deficiency") if deficiency else "",
        "surplus": money(surplus, "the surplus") if surplus else "",
    }


def render(kind: LetterKind | str, context: LetterContext, *, rules: Profile | None = None) -> RenderedLetter:
    """The letter of `kind` for `context`: deterministic, so the same inputs give identical bytes.

    `rules` is the jurisdiction's profile under the lender's policy; the file's by default.
    Raises ValueError when the context lacks what the kind must say, LetterTemplateMissing when
    the jurisdiction has no such letter."""
    name = template_for(kind, context.jurisdiction, rules=rules)
    text = _environment().get_template(name).render(**_values(kind, context)).strip() + "\n"
    paper = LETTER if context.jurisdiction.split("-")[0] in _LETTER_PAPER else A4
    pdf = _pdf(
        text,
        cjk=_needs_cjk_font("\n".join((text, *context.borrower_address))),
        paper=paper,
        title=text.splitlines()[0],
        address=context.borrower_address,
    )
    return RenderedLetter(kind, name, pdf, hashlib.sha256(pdf).hexdigest(), text)


def vet(
    letter: RenderedLetter, context: LetterContext, *, rules: Profile | None = None
) -> ContentFinding | None:
    """The first content rule the letter's words break (threats, abuse, the lender unnamed), or None:
    `arrears.compliance.content.check_content` on the letter channel, where no opt-out is owed.
    Then the lines its envelope's window shows to whoever handles the post: the name says nothing
    of a debt, the address lines no threat, insult or debt either (`screen_address`). The import
    screens them too; an address stored before it did, or written by an agent, is caught here."""
    fill = {"name": context.borrower_name, "lender": context.lender}
    found = check_content(
        letter.text,
        lender=context.lender,
        profile=rules or profile(context.jurisdiction),
        channel="letter",
        fill=fill,
    )
    if found is not None or not context.borrower_address:
        return found
    name, *lines = context.borrower_address
    return screen_envelope(name) or next(filter(None, map(screen_address, lines)), None)


# -- the page ---------------------------------------------------------------------------------------


@cache
def _environment() -> Environment:
    # Plain text, not HTML: autoescape would turn "&" in a lender's name into "&amp;".
    return Environment(
        loader=PackageLoader("arrears.letters", "templates"),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
    )


def _latin(text: str) -> bool:
    """Whether Helvetica sets `text`: its WinAnsi encoding is Windows-1252 (English, and the accents
    of Western Europe: José Núñez, Zoë Ångström)."""
    return _encodes(text, "cp1252")


def _needs_cjk_font(text: str) -> bool:
    """Helvetica where it sets every character, the Song font where Chinese is written; ValueError
    naming the characters neither sets (ễ, Ł, an emoji): a box in the borrower's name on a legal
    notice. The Song font is taken to set GBK and Latin-1 (¥ in an amount)."""
    if _latin(text):
        return False
    unset = sorted({c for c in text if not _latin(c) and not _encodes(c, "gbk")})
    if unset:
        raise ValueError(
            f"the letter's fonts cannot set {', '.join(map(repr, unset[:8]))}: a name or address "
            "with them must be imported as it can be printed (Nguyen for Nguyễn), then the letter written "
            "again (`arrears letters rewrite`)"
        )
    return True


def _encodes(text: str, codec: str) -> bool:
    try:
        text.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


@cache
def _cjk_font() -> str:
    pdfmetrics.registerFont(UnicodeCIDFont(_CJK_FONT))
    return _CJK_FONT


@lru_cache(maxsize=16_384)
def _width(text: str, font: str, size: float) -> float:
    """A word's width, remembered: letters of one kind share most of their words, and a cycle
    renders thousands of them."""
    return pdfmetrics.stringWidth(text, font, size)


def _wrap(line: str, font: str, size: float, width: float) -> list[str]:
    """`line` cut to fit `width`: at spaces for Latin text, at any character for Chinese.

    Each word (each character of Chinese) is measured once and the widths added up: the fonts have
    no kerning, so a line is as wide as its parts, and a long paragraph costs no more than its length.
    """
    if not line:
        return [""]
    measure = partial(_width, font=font, size=size)
    out: list[str] = []
    if _latin(line):  # words; Chinese breaks at any character
        space = measure(" ")
        current, used = "", 0.0
        for word in line.split(" "):
            wide = measure(word)
            if current and used + space + wide > width:
                out.append(current)
                current = word.lstrip()
                used = measure(current)
            elif current:
                current, used = f"{current} {word}", used + space + wide
            else:
                current, used = word, wide
        return [*out, current]
    current, used = "", 0.0
    for char in line:
        wide = measure(char)
        if current and used + wide > width:
            out.append(current)
            current, used = "", 0.0
        current, used = current + char, used + wide
    return [*out, current]


def _fit(line: str, font: str, size: float, width: float) -> list[str]:
    """`line` as `_wrap` breaks it, and a piece still wider than `width` (a word longer than a line:
    a 200-character name without a space) cut between characters: nothing runs off the paper."""
    out: list[str] = []
    for piece in _wrap(line, font, size, width):
        while _width(piece, font, size) > width and len(piece) > 1:
            cut, used = 0, 0.0
            while cut < len(piece) - 1 and used + _width(piece[cut], font, size) <= width:
                used += _width(piece[cut], font, size)
                cut += 1
            cut = max(cut, 1)
            out.append(piece[:cut])
            piece = piece[cut:]
        out.append(piece)
    return out


def _pdf(text: str, *, cjk: bool, paper: tuple[float, float], title: str, address: Sequence[str]) -> bytes:
    buffer = io.BytesIO()
    font = _cjk_font() if cjk else _LATIN_FONT
    bold = font if cjk else "Helvetica-Bold"
    # invariant=1: a fixed creation date and document id, so the bytes depend on the text alone.
    canvas = Canvas(buffer, pagesize=paper, invariant=1, pageCompression=1)
    canvas.setTitle(title)
    canvas.setAuthor("arrears")
    canvas.setCreator("arrears.letters")
    width, height = paper
    usable = width - 2 * _MARGIN
    y = height - _MARGIN

    def line_out(content: str, face: str, size: float) -> None:
        nonlocal y
        if y < _MARGIN:
            canvas.showPage()
            y = height - _MARGIN
        canvas.setFont(face, size)
        canvas.drawString(_MARGIN, y, content)
        y -= _LEADING

    lines = text.splitlines()
    for piece in _fit(lines[0], bold, _TITLE_SIZE, usable):  # a long title wraps as the body does
        line_out(piece, bold, _TITLE_SIZE)
    if address:  # the window of a #10 envelope sits below the heading
        y -= _LEADING / 2
        for part in address:  # a long name wraps within the window, as the body does
            for piece in _fit(part, font, _BODY_SIZE, usable):
                line_out(piece, font, _BODY_SIZE)
    for raw in lines[1:]:
        emphasised = raw.isupper() or raw.startswith(_EMPHASISED)
        face = bold if emphasised else font
        for piece in _fit(raw, face, _BODY_SIZE, usable):
            line_out(piece, face, _BODY_SIZE)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()
