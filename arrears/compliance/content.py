"""What a message may say, checked on the rendered body at decision time and again at send time.

In this order, the first failure names the rule:
- `content:missing`: there is no body to check, so nothing is sent;
- `content:threat`, `content:abuse`: a word of the lexicon (lexicon.toml, zh and en, each kind
  with its sources), in the text as the borrower reads it, names included: a name is ours to
  send, so `王小明，逾期不还将报警抓你坐牢` as a name is a threat, and a name that is an insult
  still is one. Left out of the names: the real names the lexicon lists (`[names] words`:
  Killian, Shittu), and in a name that reads as one, not as a sentence, the surnames it lists
  (`[names] allowed`: a borrower called Crook is not an insult). Code points nobody sees
  (`arrears.invisible`) are not read: Deadbeat with a combining grapheme joiner inside is
  Deadbeat to its reader. Names are screened the same way at import (`screen_name`), and so are
  mailing addresses (`screen_address`, less the real places of `[places]`), which a letter's
  window prints; name and address alike may hold no word of `[envelope]` either
  (`screen_envelope`: "c/o DEBT COLLECTIONS DEPT"), which would tell whoever handles the post;
- `content:third-party-debt`: a message to anyone but the debtor says nothing of the debt: no
  debt word, no amount, no figure of the account;
- `content:identity`: the lender is named (CBA 2026 guideline: on first contact; we ask it of
  every message);
- `content:opt-out`: where the profile requires it (Reg F 1006.6(e)), a text carries the opt-out
  instruction.
"""

import re
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

from arrears.invisible import visible
from arrears.jurisdictions import Profile

__all__ = ["ContentFinding", "check_content", "lexicon", "screen_address", "screen_envelope", "screen_name"]

# Amounts in any of our currencies, before or after the figure.
_AMOUNT = re.compile(r"[¥$£€]\s?\d|\d[\d,.]*\s?(?:元|块|美元|英镑|欧元|USD|CNY|GBP|EUR|RMB)", re.IGNORECASE)
_NOT_WORD = re.compile(r"[\W_]+")
_GAP = r"[\W_]*"
_DIGITS = re.compile(r"\d+")
_NEVER = r"(?!)"  # matches nowhere
# The kinds of words no message may hold, in the order a finding names them.
_SCREENED = ("threat", "abuse")
# Values filled into a template that are names, not our words: left out of the lexicon check.
_NAMES = ("name", "lender")
# Values that are figures of the account: a third party must not read any of them.
_FIGURES = ("amount", "installment", "days", "due_date")


@dataclass(frozen=True, slots=True)
class ContentFinding:
    rule: str  # content:threat, content:abuse, ...
    detail: str


@cache
def lexicon() -> dict[str, dict[str, tuple[str, ...]]]:
    """kind -> language (or list) -> words, as lexicon.toml states them."""
    text = (resources.files("arrears.compliance") / "lexicon.toml").read_text(encoding="utf-8")
    return {
        kind: {lang: tuple(words) for lang, words in langs.items()}
        for kind, langs in tomllib.loads(text).items()
    }


def _english(words: list[str]) -> str:
    """The words as one pattern, each a whole word, its spaces any run of whitespace, a final `*`
    any ending."""
    # No words: a pattern that never matches (an empty alternation would match the empty string
    # everywhere, and a kind without English words would never reach its Chinese).
    if not words:
        return _NEVER
    stems = [(w[:-1].split(), True) if w.endswith("*") else (w.split(), False) for w in words]
    alternatives = "|".join(
        r"\s+".join(map(re.escape, parts)) + (r"\w*" if open_end else "") for parts, open_end in stems
    )
    return r"(?<!\w)(?:" + alternatives + r")(?!\w)"


def _starts(words: list[str]) -> str:
    """A lookahead for the first characters of the words: a search then passes over a position
    none of them stands at in two tests, instead of trying each of ~65 words there that ignoring
    case keeps the regex engine from ruling out at once (a Chinese text: 8 -> 2.7 µs). It only
    filters, so it matches where the pattern without it matches, in the same case rules."""
    firsts = set()
    for word in words:
        stem = word.removesuffix("*").lstrip()
        if not stem:  # a word that is only `*`: it may start anywhere
            return ""
        firsts.add(stem[0])
    if not firsts:
        return ""
    return "(?=[" + "".join(re.escape(c) for c in sorted(firsts)) + "])"


@cache
def _patterns(*kinds: str) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """The English pattern of the words of `kinds` (any of them), the same in lower case for a
    text in lower case, and the Chinese pattern."""
    en_words = [w for kind in kinds for w in lexicon()[kind].get("en", ())]
    zh_words = [w for kind in kinds for w in lexicon()[kind].get("zh", ())]
    lower = [w.lower() for w in en_words]
    en = re.compile(_starts(en_words) + _english(en_words), re.IGNORECASE)
    en_lower = re.compile(_starts(lower) + _english(lower))
    # A Chinese word with anything but word characters between its own: spaces and punctuation
    # cannot split it ("坐 牢" is 坐牢), and the text is searched as it is, not copied without them.
    # (A word of punctuation alone is no word: it would match the empty string everywhere.)
    zh_words = [stem for stem in (_NOT_WORD.sub("", w) for w in zh_words) if stem]
    zh = re.compile("|".join(_GAP.join(map(re.escape, w)) for w in zh_words) if zh_words else _NEVER)
    return en, en_lower, zh


def _find(text: str, *kinds: str) -> str | None:
    """The first word of `kinds` in `text`, or None. Chinese words are looked for across spaces
    and punctuation, which cannot split a Chinese word.

    An ASCII text is searched in lower case without IGNORECASE, 2-3 times faster and the same
    match: in ASCII, letters match ignoring case exactly when their lower cases are equal, and
    lowering keeps every character where it was. (Not so beyond ASCII: IGNORECASE matches the
    long s, U+017F, to `s`, and U+0130 lowers to two characters.)"""
    en, en_lower, zh = _patterns(*kinds)
    if text.isascii():
        found = en_lower.search(text.lower())
        return text[found.start() : found.end()] if found else None
    found = en.search(text)
    if found:
        return found.group(0)
    found = zh.search(text)
    return _NOT_WORD.sub("", found.group(0)) if found else None


# Control characters (C0, C1, DEL) and the bidirectional overrides that make text read otherwise
# than it is stored (Trojan Source, CVE-2021-42574).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_LETTERS = re.compile(r"[^\W\d_]+")


def _whole(words: tuple[str, ...]) -> re.Pattern[str] | None:
    """The words as one pattern, each a whole word in any case; None for none."""
    if not words:
        return None
    # In any case, so the first characters' lookahead (`_starts`) is too: it only filters.
    return re.compile(
        _starts(list(words)) + r"(?<!\w)(?:" + "|".join(map(re.escape, words)) + r")(?!\w)", re.IGNORECASE
    )


@dataclass(frozen=True, slots=True)
class _NameRules:
    """`[names]` of the lexicon, compiled once."""

    either: re.Pattern[str] | None  # a real name or an allowed surname: most names hold neither
    words: re.Pattern[str] | None  # the real names that begin with a stem (Killian, Shittu)
    allowed: re.Pattern[str] | None  # the lexicon words that are also surnames (Crook, Hurt)
    particles: frozenset[str]  # folded
    pronouns: frozenset[str]  # folded


@cache
def _name_rules() -> _NameRules:
    names = lexicon().get("names", {})
    words, allowed = names.get("words", ()), names.get("allowed", ())
    return _NameRules(
        _whole((*words, *allowed)),
        _whole(words),
        _whole(allowed),
        frozenset(w.casefold() for w in names.get("particles", ())),
        frozenset(w.casefold() for w in names.get("pronouns", ())),
    )


def _reads_as_a_name(name: str) -> bool:
    """Whether every word of `name` is a word of names: capitalised (or of a script without case:
    王小明), or a particle (de, van, bin), and no pronoun. "Killian Hurt", "MARY SHAME" and
    "Crook, Dana" read as names; "Li we will kill you", "John-will-kill-you" and "LI WE WILL KILL
    YOU" as sentences, which a CN greeting of the whole name would send."""
    rules = _name_rules()
    for word in _LETTERS.findall(name):
        folded = word.casefold()
        if folded in rules.pronouns or (word[0].islower() and folded not in rules.particles):
            return False
    return True


@lru_cache(maxsize=16_384)
def _as_checked(name: str) -> str:
    """A filled-in name as the word check reads it: without the real names the lexicon lists
    (Killian, Shittu: a stem would read them as threats or insults), and, if it reads as a name
    (`_reads_as_a_name`), without the lexicon words that are also surnames (Crook, Hurt, Kill).
    Any other word that begins with a stem is read as the stem reads it: Shithead is an insult."""
    return _as_name_reads(name)


def _as_name_reads(name: str) -> str:
    """`_as_checked`, uncached: what an address line, seldom the same twice, is read as."""
    rules = _name_rules()
    if rules.either is None or not rules.either.search(name):  # most names: one search
        return name
    if rules.allowed is not None and rules.allowed.search(name) and _reads_as_a_name(name):
        name = rules.allowed.sub(" ", name)
    return rules.words.sub(" ", name) if rules.words is not None else name


def screen_name(name: str) -> ContentFinding | None:
    """Why a borrower's name cannot be put into a message, or None: it is rendered into every one."""
    control = _CONTROL.search(name)
    if control is not None:
        return ContentFinding(
            "content:control", f"control character U+{ord(control.group()):04X} in the name"
        )
    return _words(_DIGITS.sub("0", _as_checked(_normal(name))))


def screen_envelope(text: str) -> ContentFinding | None:
    """Why `text` cannot be shown on an envelope, or None: a word of `[envelope]` tells whoever
    handles the post of a debt. The name and the address in a letter's window are."""
    word = _find(_normal(text), "envelope")
    if word is None:
        return None
    return ContentFinding(
        "content:third-party-debt", f"debt word {word!r}, which an envelope shows to whoever handles it"
    )


def screen_address(line: str) -> ContentFinding | None:
    """Why a part of a mailing address (a street line, a city, a state, a postal code) cannot be
    printed in an envelope's window, or None. What a name gets (`screen_name`): no control
    character, no threat or insult, read as a name is read ("Kill Devil Hills", "Hell" and "Crook
    County" are places, "LI WE WILL KILL YOU" a sentence), the real places of `[places]` left out
    (Killarney, Thief River Falls, 公安县); and nothing that tells of a debt (`screen_envelope`),
    which a letter's own words may say to the borrower but its envelope may not to the postman."""
    control = _CONTROL.search(line)
    if control is not None:
        return ContentFinding(
            "content:control", f"control character U+{ord(control.group()):04X} in the address"
        )
    return _address_words(_DIGITS.sub("0", _normal(line)))


@lru_cache(maxsize=65_536)
def _address_words(text: str) -> ContentFinding | None:
    """`screen_address` of a line without control characters, as normalised, its runs of digits one
    0 (no word of the lexicon holds a digit): cached, as "0 Main St" is the line of many a house."""
    return _first_word(_as_name_reads(_places().left_out(text))) or screen_envelope(text)


@dataclass(frozen=True, slots=True)
class _Places:
    """`[places] words`: English ones as whole words in any case, Chinese ones as they stand (a
    Chinese place is written without spaces around it: 湖北省公安县斗湖堤镇)."""

    latin: re.Pattern[str]  # in any case
    latin_lower: re.Pattern[str]  # the same for a text in lower case: most lines hold no place
    other: re.Pattern[str]

    def left_out(self, text: str) -> str:
        """`text` without the places it names."""
        if text.isascii():
            return self.latin.sub(" ", text) if self.latin_lower.search(text.lower()) else text
        return self.other.sub(" ", self.latin.sub(" ", text))


@cache
def _places() -> _Places:
    words = lexicon().get("places", {}).get("words", ())
    latin = [w.lower() for w in words if w.isascii()]
    alternatives = "|".join(map(re.escape, latin))
    whole = r"(?<!\w)(?:" + alternatives + r")(?!\w)" if latin else _NEVER
    other = "|".join(re.escape(w) for w in words if not w.isascii()) or _NEVER
    return _Places(
        re.compile(_starts(latin) + whole, re.IGNORECASE),
        re.compile(_starts(latin) + whole),
        re.compile(other),
    )


def _first_word(text: str) -> ContentFinding | None:
    """The first threat or abuse word in `text`."""
    if _find(text, *_SCREENED) is None:  # most texts: one search for both kinds
        return None
    for kind in _SCREENED:
        word = _find(text, kind)
        if word:
            return ContentFinding(f"content:{kind}", f"{kind} word {word!r}")
    return None


# `_first_word`, cached: runs of digits in a message are one 0, so the messages of one template to
# one borrower share it.
_words = lru_cache(maxsize=4_096)(_first_word)


@lru_cache(maxsize=1_024)
def _normal_short(text: str) -> str:
    return _normal(text)


def _normal(text: str) -> str:
    """`text` as the check reads it: NFKC (full-width forms folded), without what nobody sees
    (`visible`, after NFKC, which makes U+1160 of the Hangul fillers). ASCII is left as it is."""
    return text if text.isascii() else visible(unicodedata.normalize("NFKC", text))


def _names(text: str, lender: str) -> bool:
    """Whether `text` names the lender (exactly, or ignoring case)."""
    if not lender:
        return False
    name = _normal_short(lender)
    return name in text or name.casefold() in text.casefold()


def check_content(
    body: str | None,
    *,
    lender: str,
    profile: Profile,
    channel: str = "sms",
    third_party: bool = False,
    fill: Mapping[str, str] | None = None,
) -> ContentFinding | None:
    """The first content rule `body` breaks, or None. `fill` holds the values the template was
    filled with (`template_params`)."""
    if not body or not body.strip():
        return ContentFinding("content:missing", "no rendered body to check")
    fill = fill or {}
    if not third_party:  # only the names of `fill` are read: the same send, checked again, is cached
        return _checked_send(body, lender, profile, channel, fill.get("name"), fill.get("lender"))
    return _check(body, lender, profile, channel, third_party, fill)


# A dispatch batch's messages and more (`ARREARS_DISPATCH_BATCH`, 10,000 by default). The re-check
# of a batch larger than this finds none of its checks: it walks the batch in the order the checks
# went in, and each check it computes again evicts the next one it needs.
SEND_CHECKS_KEPT = 32_768


@lru_cache(maxsize=SEND_CHECKS_KEPT)
def _checked_send(
    body: str, lender: str, profile: Profile, channel: str, name: str | None, filled_lender: str | None
) -> ContentFinding | None:
    """`check_content` of a message to the debtor. Cached: a dispatch batch checks each of its
    messages at send time and again, right after recording it, in the compliance re-check."""
    fill = {k: v for k, v in (("name", name), ("lender", filled_lender)) if v is not None}
    return _check(body, lender, profile, channel, False, fill)


def _check(
    body: str, lender: str, profile: Profile, channel: str, third_party: bool, fill: Mapping[str, str]
) -> ContentFinding | None:
    text = _normal(body)
    names = sorted({v for v in (*(fill.get(k) for k in _NAMES), lender) if v}, key=len, reverse=True)
    # Threats and insults are looked for in the whole text the borrower reads, the names in it
    # too, less the names the lexicon allows in them (`_as_checked`). Runs of digits become one 0:
    # no word of the lexicon holds a digit, and the check is cached.
    read = text
    for value in names:
        read = read.replace(_normal_short(value), _as_checked(_normal_short(value)))
    finding = _words(_DIGITS.sub("0", read))
    if finding is not None:
        return finding
    if third_party:
        # What a third party must not be told is judged on our words: the body without its names.
        ours = text
        for value in names:
            ours = ours.replace(_normal_short(value), "\x00")
        word = _find(_DIGITS.sub("0", ours), "debt")
        figure = next((k for k in _FIGURES if fill.get(k) and _normal(fill[k]) in text), None)
        amount = _AMOUNT.search(text)
        if word or figure or amount:
            what = f"debt word {word!r}" if word else f"the account's {figure}" if figure else "an amount"
            return ContentFinding("content:third-party-debt", f"a message to a third party carries {what}")
    if profile.identify_institution and not _names(text, lender):
        return ContentFinding("content:identity", "the lender is not named")
    opt_out = _normal_short(profile.opt_out_text)
    if channel == "sms" and profile.sms_opt_out_required and (not opt_out or opt_out not in text):
        return ContentFinding("content:opt-out", f"no opt-out instruction ({profile.opt_out_text!r})")
    return None
