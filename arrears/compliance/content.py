"""What a message may say, checked on the rendered body at decision time and again at send time.

In this order, the first failure names the rule:
- `content:missing`: there is no body to check, so nothing is sent;
- `content:threat`, `content:abuse`: a word of the lexicon (lexicon.toml, zh and en, each kind
  with its sources). The values filled into the template (the borrower's and the lender's names)
  are taken out first: a borrower called Crook is not an insult, our own words are what we check;
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

from arrears.jurisdictions import Profile

__all__ = ["ContentFinding", "check_content", "lexicon"]

# Amounts in any of our currencies, before or after the figure.
_AMOUNT = re.compile(r"[¥$£€]\s?\d|\d[\d,.]*\s?(?:元|块|美元|英镑|欧元|USD|CNY|GBP|EUR|RMB)", re.IGNORECASE)
_NOT_WORD = re.compile(r"[\W_]+")
_DIGITS = re.compile(r"\d+")
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
    """kind -> language -> words, as lexicon.toml states them."""
    text = (resources.files("arrears.compliance") / "lexicon.toml").read_text(encoding="utf-8")
    return {
        kind: {lang: tuple(words) for lang, words in langs.items()}
        for kind, langs in tomllib.loads(text).items()
    }


@cache
def _patterns(kind: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    words = lexicon()[kind]

    def english(word: str) -> str:
        stem, open_end = (word[:-1], True) if word.endswith("*") else (word, False)
        return r"\s+".join(re.escape(part) for part in stem.split()) + (r"\w*" if open_end else "")

    en = re.compile(
        r"(?<!\w)(?:" + "|".join(english(w) for w in words.get("en", ())) + r")(?!\w)", re.IGNORECASE
    )
    zh = re.compile("|".join(re.escape(w) for w in words.get("zh", ())))
    return en, zh


def _find(kind: str, text: str) -> str | None:
    en, zh = _patterns(kind)
    found = en.search(text) or (None if text.isascii() else zh.search(_NOT_WORD.sub("", text)))
    return found.group(0) if found else None


@lru_cache(maxsize=4_096)
def _words(text: str) -> ContentFinding | None:
    """The first threat or abuse word in `text`. Cached: `text` is a message with the values it
    was filled with taken out, so the messages of one template share it."""
    for kind in ("threat", "abuse"):
        word = _find(kind, text)
        if word:
            return ContentFinding(f"content:{kind}", f"{kind} word {word!r}")
    return None


@lru_cache(maxsize=1_024)
def _normal_short(text: str) -> str:
    return _normal(text)


def _normal(text: str) -> str:
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


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
    text = _normal(body)
    # Our words: the body without the names it was filled with (not ours to judge). Runs of digits
    # become one 0: no word of the lexicon holds a digit, and the messages of one template then
    # share one text to check, so the check is cached.
    ours = text
    for value in sorted({v for v in (*(fill.get(k) for k in _NAMES), lender) if v}, key=len, reverse=True):
        ours = ours.replace(_normal_short(value), "\x00")
    ours = _DIGITS.sub("0", ours)
    finding = _words(ours)
    if finding is not None:
        return finding
    if third_party:
        word = _find("debt", ours)
        figure = next((k for k in _FIGURES if fill.get(k) and _normal(fill[k]) in text), None)
        amount = _AMOUNT.search(text)
        if word or figure or amount:
            what = f"debt word {word!r}" if word else f"the account's {figure}" if figure else "an amount"
            return ContentFinding("content:third-party-debt", f"a message to a third party carries {what}")
    if profile.identify_institution and not _names(text, lender):
        return ContentFinding("content:identity", "the lender is not named")
    if channel == "sms" and profile.sms_opt_out_required and _normal_short(profile.opt_out_text) not in text:
        return ContentFinding("content:opt-out", f"no opt-out instruction ({profile.opt_out_text!r})")
    return None
