"""What a borrower's name can carry into a message past the content check (compliance.md, China
and Reg F/CONC: no threats, no insults): the name is read as the borrower reads it in the
message, at import (`screen_name`) and when the message is decided and sent (`check_contact`)."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from arrears.compliance import ContactRequest, ContactState, Verdict, VerdictKind, check_contact
from arrears.compliance.content import screen_name
from arrears.invisible import visible
from arrears.messages import MessageContext, display_name, render, template_params
from arrears.policy import DEFAULT_POLICY

LENDER = "Arrears Auto Finance"
NOON_SHANGHAI = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)  # Tuesday 12:00 in Asia/Shanghai
NOON_LA = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)  # Tuesday 12:00 in America/Los_Angeles


def _verdict(jurisdiction: str, name: str) -> tuple[Verdict, str]:
    """The decision-time verdict of a reminder to a borrower called `name`, as `decide_message`
    renders and checks it, and the body. A CN message greets the whole name, a US one the first."""
    cn = jurisdiction == "CN"
    ctx = MessageContext(
        lender=LENDER,
        borrower_name=name,
        jurisdiction=jurisdiction,
        currency="CNY" if cn else "USD",
        past_due_amount=Decimal("300"),
        installment_amount=Decimal("300"),
        days_past_due=5,
    )
    fill = template_params(ctx)
    prof = DEFAULT_POLICY.profile(jurisdiction)
    body = render("reminder", ctx, fill, profile=prof)
    request = ContactRequest(
        account_id="A-1",
        jurisdiction=jurisdiction,
        timezone="Asia/Shanghai" if cn else "America/Los_Angeles",
        template="reminder",
        body=body,
        lender=LENDER,
        address="+8613912345678" if cn else "+12133734253",
        fill=tuple(fill.items()),
        stage="reminder",
        episode=1,
    )
    v = check_contact(
        request=request, state=ContactState(), policy=DEFAULT_POLICY, now=NOON_SHANGHAI if cn else NOON_LA
    )
    return v, body


def _blocked(jurisdiction: str, name: str, rule: str, greeted: str) -> None:
    """`name` is refused at import, and a message greeting it (`greeted` in its body) is blocked."""
    v, body = _verdict(jurisdiction, name)
    assert greeted in body, body
    assert v.kind is VerdictKind.BLOCK and v.reason == rule, (v, body)
    finding = screen_name(name)
    assert finding is not None and finding.rule == rule, finding


def _sent(name: str) -> None:
    """`name` is taken at import, and messages greeting it, whole (CN) or its first word (US), go."""
    assert screen_name(name) is None
    for jurisdiction, locale in (("CN", "zh-CN"), ("US-CA", "en")):
        v, body = _verdict(jurisdiction, name)
        assert display_name(name, locale) in body and v.kind is VerdictKind.SEND, (v, body)


# --- a word that begins with a stem ------------------------------------------------------------


@pytest.mark.parametrize("name", ["Shithead", "Shitbag Jones", "Moronic", "Damnfool", "Killer Smith"])
def test_a_name_word_that_begins_with_an_insult_stem_is_read_as_the_stem(name: str) -> None:
    """`shit*`, `moron*`, `damn*`, `kill*` read "Hi Shithead," as the insult it is: only the real
    names the lexicon lists (`[names] words`) are left out of a name, not every word a stem begins."""
    rule = "content:threat" if name.startswith("Kill") else "content:abuse"
    _blocked("US-CA", name, rule, name.split()[0])


@pytest.mark.parametrize(
    "name",
    [
        "Killian Murphy",
        "Aoife Killeen",
        "Adebayo Shittu",
        "Meir Shitrit",
        "Giulia Moroni",
        "Reyes Moronta",
        "James Crookes",
        "Dragan Damnjanović",
    ],
)
def test_a_real_name_that_begins_with_a_stem_is_a_name(name: str) -> None:
    """Killian, Shittu, Moroni, Crookes, Damnjanović: listed names, taken and greeted."""
    _sent(name)


# --- the surnames that are lexicon words --------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Li we will kill you",
        "Wang we will hurt you",
        "Zhang we ruin you",
        "shame on you Li",
        "John-will-kill-you",
        "LI WE WILL KILL YOU",
        "Killian we will kill you",
        "Li will kill",
    ],
)
def test_an_allowed_surname_in_a_sentence_is_a_threat(name: str) -> None:
    """Kill, Hurt, Ruin, Shame are surnames only in a name made of name words: in a sentence (a
    lower-case word that is no particle, or a pronoun) they are threats, and a CN message greets
    the whole name."""
    _blocked("CN", name, "content:threat", name)


@pytest.mark.parametrize(
    "name",
    [
        "Killian Hurt",
        "Mary Shame",
        "MARY SHAME",
        "Dana Crook",
        "Crook, Dana",
        "Hurt Killian",
        "Maria de la Hurt",
        "Zoë Crook",
        "José Hurt",
        "Anna Hell",
    ],
)
def test_an_allowed_surname_in_a_name_is_a_name(name: str) -> None:
    """A borrower called Hurt or Shame is not threatened by our greeting: in a name whose words
    are capitalised (or particles: de, la), the surnames of `[names] allowed` are names."""
    _sent(name)


@pytest.mark.parametrize(
    "name", ["王小明", "欧阳娜娜", "Zoë Nuñez", "Søren Ærø", "Nguyễn Thị Mỹ", "Zoe\u0308 Ng"]
)
def test_names_without_lexicon_words_are_taken_and_greeted(name: str) -> None:
    """Chinese names and names with accents (composed or not) are names."""
    _sent(name)


# --- code points nobody sees --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Dead\u034fbeat",  # combining grapheme joiner
        "Idi\ufe0fot",  # variation selector 16
        "Idi\U000e0100ot",  # variation selector 17 (supplement)
        "Scu\u034fm",
        "Dead\u200bbeat",  # zero-width space
        "Dead\u200dbeat",  # zero-width joiner
        "Id\u00adiot",  # soft hyphen
        "Mor\u2060on",  # word joiner
        "Scu\ufeffm",  # byte-order mark
        "Dead\u3164beat",  # Hangul filler (NFKC: U+1160)
    ],
)
def test_an_invisible_code_point_inside_an_insult_does_not_hide_it(name: str) -> None:
    """A default-ignorable code point splits the word for a pattern, not for the reader: the check
    reads the name without it, and the greeting drops it."""
    _blocked("US-CA", name, "content:abuse", visible(name))


def test_a_greeting_drops_the_code_points_nobody_sees() -> None:
    """What is sent is what was checked: a greeting carries no invisible code point, and keeps the
    name's letters and marks (an accent, a Devanagari vowel sign)."""
    assert display_name("Dead\u034fbeat Jones", "en") == "Deadbeat"
    assert display_name("王\u200b小明", "zh-CN") == "王小明"
    assert display_name("Zoe\u0308\ufe0f", "en") == "Zoë"
    assert display_name("प्रिया", "en") == "प्रिया"


def test_the_invisible_code_points_are_dropped_and_no_letter_or_mark_of_a_name() -> None:
    """`visible` drops what Unicode calls default-ignorable (the soft hyphen, the combining grapheme
    joiner, the zero-width space, joiners and marks, variation selectors, the byte-order mark, a
    tag character) and keeps every letter and mark a name is written with (a combining diaeresis,
    a virama, a Hangul syllable)."""
    hidden = "\u00ad\u034f\u200b\u200c\u200d\u200e\u2060\ufe0f\ufeff\U000e0041\U000e0100"
    assert visible(f"Dead{hidden}beat") == "Deadbeat"
    for name in ("Zoe\u0308", "प्रिया", "김민준", "王小明", "Dana"):
        assert visible(name) == name


# --- traditional characters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("王小明老賴", "content:abuse"),  # 老赖
        ("王小明騙子", "content:abuse"),  # 骗子
        ("王小明滾", "content:abuse"),  # 滚
        ("王小明後果自負", "content:threat"),  # 后果自负
        ("王小明報警", "content:threat"),  # 报警
        ("王小明監獄", "content:threat"),  # 监狱
        ("王小明聯繫你家人", "content:threat"),  # 联系你家人
    ],
)
def test_a_lexicon_word_in_traditional_characters_is_found(name: str, rule: str) -> None:
    """NFKC does not fold traditional characters to simplified: the lexicon lists both forms."""
    _blocked("CN", name, rule, name)
