"""What an inbound SMS asks for: an opt-out, an opt-in, word that the number is not the
borrower's, or a reply for the lifecycle to read.

Pure functions over the text the borrower sent; the webhook records what they decide
(`arrears.storage.inbound`). Carriers honour the same keywords on their side, but the law binds
the lender, not the gateway, so we keep our own ledger (providers.md).
"""

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers

from arrears.invisible import visible
from arrears.vocabulary import Hold

__all__ = [
    "AMBIGUOUS_SENDER",
    "OPT_IN_KEYWORDS",
    "OPT_OUT_KEYWORDS",
    "Classified",
    "InboundKind",
    "attribute",
    "classify",
    "hardship_statement",
    "inbound_address",
    "normalise",
    "storable",
]


class InboundKind(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    WRONG_NUMBER = "wrong_number"  # the number is not the borrower's: nothing more is sent to it
    REPLY = "reply"


# The whole message, once normalised, is one of these. Carrier keywords (CTIA; Twilio's defaults)
# and the mainland ones Aliyun and China's carriers honour: "回T退订" (TD, T, 退订) and 取消.
OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "退订", "取消", "TD", "T"}
    # The FCC's words for revoking consent in reply to a text (47 CFR 64.1200(a)(10), FCC 24-24):
    # stop, quit, end, revoke, opt out, cancel, unsubscribe.
    | {"REVOKE", "OPT OUT", "OPT-OUT", "OPTOUT"}
    # STOP as a mainland borrower writes it (refusals in more words: _REFUSAL below).
    | {"停止", "停", "取消订阅"}
)
# Resuming: START and UNSTOP (CTIA), 订阅 on the mainland. Only a number's own opt-in lifts only the
# holds its opt-out placed (`arrears.storage.inbound.record_opt_in`); a cease-contact request stays.
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP", "订阅"})

# Reg F 1006.6(e): a consumer may opt out in free form, so a longer message that names STOP,
# UNSUBSCRIBE, REVOKE, OPT OUT or 退订 as a word still opts out ("I revoke my consent"). END,
# CANCEL, QUIT, T and TD count only alone: as words inside a sentence ("can I pay at the end of
# the month") they say nothing about contact. Erring this way costs a reminder; erring the other
# way texts someone who asked us to stop. Only "stop by" as in visiting ("I'll stop by the branch
# to pay") is no stop word: no reasonable reader takes it for one (47 CFR 64.1200(a)(10)).
_FREE_FORM_OPT_OUT = re.compile(
    r"(?<![A-Z])(STOP(?! BY (?:THE|YOUR|MY|A|AN|TOMORROW|TODAY|TONIGHT|LATER|SOON|THIS|NEXT|ON|AT|IN|TO|AND)"
    r"(?![A-Z]))|UNSUBSCRIBE|REVOKE|OPT[ -]?OUT|OPT ME OUT)(?![A-Z])|退订"
)
# A keyword with only courtesy around it is that keyword ("Cancel please", "END now", "请取消"): the
# FCC's seven words bind in a reply however it is said; "cancel the late fee" is no keyword.
_COURTESY = frozenset(
    {"PLEASE", "PLS", "PLZ", "KINDLY", "NOW", "ASAP", "ALL", "THANKS", "THANK", "YOU", "THX", "TY"}
)
_WORDS = re.compile(r"[\W_]+")
# Nor does revoking take a keyword. The FCC counts any reasonable means, a reply in other words
# included (FCC 24-24; 47 CFR 64.1200(a)(10)); on the mainland, once a user plainly refuses texts
# the sender must stop (MIIT Order 31, 通信短信息服务管理规定, art. 19). So a plain refusal opts
# out: "don't text me", "no more texts", 别再发了, 请不要再给我发短信, 不要再联系我, 不想再收到你们的短信.
_OR = r"(?: OR | AND | NOR | ?[&/] ?)"
_REFUSAL = re.compile(
    # Texts alone or with calls ("don't text or call me"), but not calls alone: we only text.
    r"(?<![A-Z])(?:DON['\u2019]?T|DO NOT|NEVER) (?:EVER )?(?:(?:CALL|PHONE|EMAIL)" + _OR + r")?"
    r"(?:TEXT|MESSAGE|SMS|CONTACT)(?:" + _OR + r"(?:CALL|PHONE|EMAIL))? ME(?![A-Z])"
    r"|(?<![A-Z])(?:DON['\u2019]?T|DO NOT|NEVER) (?:EVER )?SEND ME (?:ANY )?(?:MORE )?"
    r"(?:TEXTS|TEXT MESSAGES|MESSAGES|SMS)(?![A-Z])"
    r"|(?<![A-Z])(?:NO MORE (?:TEXTS?|TEXT MESSAGES|MESSAGES|SMS)|LEAVE ME ALONE)(?![A-Z])"
    # "Remove me" or "take me off your list" (the commonest way a list is left), "quit texting
    # me"; not "remove me from the loan", which is about the contract.
    r"|(?<![A-Z])REMOVE ME(?! FROM (?:THE|THIS|THAT|MY) (?:LOAN|ACCOUNT|CONTRACT|TITLE|CAR)\b)(?![A-Z])"
    r"|(?<![A-Z])TAKE ME OFF(?: OF)? (?:YOUR |UR |THE |THIS |YA )?(?:[A-Z]+ )?LIST(?![A-Z])"
    r"|(?<![A-Z])QUIT (?:TEXTING|MESSAGING|CALLING|CONTACTING|BOTHERING|HARASSING) ME(?![A-Z])"
    # A negation, then sending or contacting (with what is sent, whom, or nothing after it:
    # "公司不再发工资" is not one, 停止联系 and 不要再联系了 are).
    r"|(?:别|不要|不用|不必|请勿|勿|停止|不再)再?(?:给我)?"
    r"(?:发送?|联系)(?:(?<=[发送]).{0,4}?(?:短信|信息|消息)|(?<=联系)我|[了啦]|(?=[,.!?;:。、 ]|$))"
    r"|(?:别|不要|不用|不必|请勿|勿|停止|不再)再?(?:给我)?打扰"
    r"|不想再?(?:收到|接收).{0,6}?(?:短信|信息|消息)|拒收|拒绝接收|不再接收|勿扰|免打扰"
)

# Whoever answers says the number is not the borrower's. Every message we send names a debt, so
# one more to a stranger discloses it (FDCPA 805(b); CN: a third party is never told of the debt,
# CBA 2026 guideline), and the number may have been reassigned (TCPA). Only plain statements:
# "wrong amount", 你们算错了, 不是我不想还 and "I don't know who this is" (us, not them) say
# nothing about whose number it is.
_WRONG_NUMBER = re.compile(
    r"(?<![A-Z])WRONG (?:NUMBER|PERSON|GUY|LADY|PHONE|#)(?![A-Z])"
    r"|(?<![A-Z])(?:NO ?ONE|NOBODY) (?:HERE )?(?:BY THAT NAME|NAMED|CALLED|BY THE NAME)(?![A-Z])"
    r"|(?<![A-Z])(?:NOT|ISN['\u2019]?T) (?:HIS|HER|THEIR|THE[IR]*) (?:NUMBER|PHONE)(?![A-Z])"
    r"|(?<![A-Z])(?:DON['\u2019]?T|DO NOT) KNOW (?:THIS|THAT|THE) PERSON(?![A-Z])"
    r"|打错了|发错了|发错人|发错号|找错人|不是本人|本人不是|查无此人|没有这个人|不认识(?:这个人|此人|这人)"
    r"|(?:这|此)?(?:不是|非)(?:他|她)的(?:号码|手机|电话)|号码(?:已经)?换(?:人|主人|主)了"
)

# What the borrower writes that pauses collection until a person has looked (DESIGN: disputes
# and bankruptcy pause collection): a dispute of the debt or any part of it, in writing, which a
# text is (Reg F 1006.34 and 1006.38; CN: 有异议 is for the lender to check before it collects), and
# word of a bankruptcy filing, whose automatic stay binds from notice (11 USC 362). A person lifts
# the hold (`arrears hold lift`). "I might go bankrupt" and 公司破产了 are hardship, not a filing.
# Then what stops contact, not the remedies (the cease-contact hold's scope): a written request to
# cease communication (FDCPA 805(c), Reg F 1006.6(c)), and word that an attorney represents the
# borrower, after which the borrower is not contacted directly (805(a)(2), 1006.6(b)(2)). Word
# of a death places nothing: the deceased hold reports ECOA code X to the bureaus, which a text
# from anyone must not do; a person confirms it and places that hold.
_STATEMENTS: tuple[tuple[Hold, re.Pattern[str]], ...] = (
    (
        Hold.DISPUTE,
        re.compile(
            r"(?<![A-Z])DISPUT(?:E|ES|ED|ING)(?![A-Z])"
            r"|(?<![A-Z])(?:NOT|ISN['\u2019]?T|AIN['\u2019]?T) MY (?:DEBT|LOAN|CAR|ACCOUNT|BALANCE)(?![A-Z])"
            # "I don't owe this" disputes it (1006.38: any part); "I don't owe that until Friday" does not.
            r"|(?<![A-Z])(?:DON['\u2019]?T|DO NOT) OWE (?:YOU )?"
            r"(?:THIS|THAT|THE (?:DEBT|BALANCE|MONEY|AMOUNT)|ANYTHING)(?: MUCH)?(?![A-Z])"
            r"(?! (?:UNTIL|TILL|TIL|BEFORE|AFTER|YET)(?![A-Z]))"
            r"|(?<![A-Z])IDENTITY THEFT(?![A-Z])"
            r"|(?<![A-Z])NEVER (?:TOOK OUT|SIGNED(?: UP)? FOR|HAD|OPENED) (?:A|THIS|THAT|ANY)"
            r" (?:CAR |AUTO )?(?:LOAN|ACCOUNT)(?![A-Z])"
            r"|有异议|提出异议|不认(?:可)?(?:这笔|这个)?(?:债务|欠款|账|贷款)|不是我(?:借|贷|欠)的"
            r"|我(?:从来)?没(?:有)?(?:借|贷)过|被冒名|冒用我的|身份被盗"
        ),
    ),
    (
        Hold.BANKRUPTCY,
        re.compile(
            r"(?<![A-Z])(?:FILED|FILING|FILE|FILES) (?:FOR )?(?:A |AN |MY |OUR )?"
            r"(?:CHAPTER (?:7|11|13|SEVEN|ELEVEN|THIRTEEN)|BANKRUPTCY)(?![A-Z0-9])"
            r"|(?<![A-Z])(?:IN|UNDER) (?:A |MY |OUR )?(?:CHAPTER (?:7|11|13)|BANKRUPTCY|CH\.? ?(?:7|11|13))"
            r"(?![A-Z0-9])"
            # "I have a chapter 13 case", "our chapter 7 trustee"
            r"|(?<![A-Z])CHAPTER (?:7|11|13|SEVEN|ELEVEN|THIRTEEN)"
            r" (?:CASE|PETITION|PLAN|TRUSTEE|FILING)(?![A-Z])"
            # "Declared bankruptcy" is how most people say they filed; "declare" is only intent.
            r"|(?<![A-Z])(?:DECLARED|DECLARING) (?:FOR )?(?:CHAPTER (?:7|11|13|SEVEN|ELEVEN|THIRTEEN)"
            r"|BANKRUPTCY|BK|CH\.? ?(?:7|11|13))(?![A-Z0-9])"
            r"|(?<![A-Z])CHAPTER (?:7|11|13|SEVEN|ELEVEN|THIRTEEN) BANKRUPTCY(?![A-Z])"
            r"|(?<![A-Z])BANKRUPTCY (?:WAS |HAS BEEN |IS |GOT )?(?:FILED|DISCHARGED)(?![A-Z])"
            r"|(?<![A-Z])BANKRUPTCY (?:CASE|PETITION|LAWYER|ATTORNEY|TRUSTEE|COURT|NUMBER|FILING)(?![A-Z])"
            r"|(?<![A-Z])AUTOMATIC STAY(?![A-Z])"
            # As texts write it: "filed BK", "filed ch 13", "my BK lawyer".
            r"|(?<![A-Z])(?:FILED|FILING|FILE|FILES) (?:FOR )?(?:A |AN |MY |OUR )?"
            r"(?:BK|CH\.? ?(?:7|11|13))(?![A-Z0-9])"
            r"|(?<![A-Z])BK (?:CASE|PETITION|LAWYER|ATTORNEY|TRUSTEE|COURT|NUMBER)(?![A-Z])"
            r"|个人破产|(?:我|本人)(?:已经?|已)?(?:申请了?(?:个人)?)?破产"
            # A court that took the petition: 法院已受理我的破产申请, 破产申请已经受理, 破产案件
            r"|受理[^。，,.!?！？]{0,6}破产申请|破产申请[^。，,.!?！？]{0,4}受理|破产案件"
        ),
    ),
    (
        Hold.CEASE_CONTACT,
        re.compile(
            r"(?<![A-Z])CEASE AND DESIST(?![A-Z])"
            r"|(?<![A-Z])(?:CEASE|STOP|END) (?:ALL )?(?:FURTHER )?(?:COMMUNICATIONS?|CONTACTING ME|COLLECTION"
            r" CALLS)(?![A-Z])"
            r"|(?<![A-Z])(?:CONTACT|CALL|TALK TO|SPEAK (?:TO|WITH)|DEAL WITH|GO THROUGH) MY"
            r" (?:ATTORNEY|LAWYER|COUNSEL)(?![A-Z])"
            r"|(?<![A-Z])MY (?:ATTORNEY|LAWYER|COUNSEL) (?:IS HANDLING|HANDLES|WILL HANDLE|REPRESENTS|WILL"
            r" CONTACT)(?![A-Z])"
            r"|(?<![A-Z])(?:REPRESENTED BY|I HAVE|I(?:['\u2019]VE| HAVE)? (?:GOT|HIRED|RETAINED))"
            r" (?:AN |A |MY )?(?:ATTORNEY|LAWYER|COUNSEL)(?![A-Z])"
            r"|(?<![A-Z])(?:AN |A )(?:ATTORNEY|LAWYER) (?:REPRESENTS|IS REPRESENTING) ME(?![A-Z])"
            r"|(?:联系|找|打给|咨询)我(?:的)?律师|(?:已|已经)?委托(?:了)?律师|我的律师(?:会|将)"
            # 停止催收 as 停止一切催收; not a question ("你们会停止催收吗").
            r"|停止(?:一切|所有|任何)?(?:对我的?)?(?:联系|沟通|催收)(?![^,.!;。！，]{0,4}[吗呢?？])"
        ),
    ),
)

# Word that the borrower cannot pay, not that they will not: work or income lost, illness, a
# business gone under. It makes them unable (`arrears.segmentation.ability_after_hardship`): the
# strategic defaulter's early review is for the able who will not pay, and negotiation offers the
# unable and willing a plan (DESIGN §2). "I can't pay until Friday" is a date, not a hardship.
_HARDSHIP = re.compile(
    r"(?<![A-Z])(?:LOST|LOSE|LOSING) (?:MY|OUR|HIS|HER) (?:JOB|WORK|INCOME|BUSINESS)(?![A-Z])"
    r"|(?<![A-Z])(?:LAID|LAYED) OFF(?![A-Z])|(?<![A-Z])UNEMPLOYED(?![A-Z])|(?<![A-Z])OUT OF WORK(?![A-Z])"
    r"|(?<![A-Z])(?:CAN['\u2019]?T|CANNOT|CAN NOT|UNABLE TO) AFFORD(?![A-Z])"
    r"|(?<![A-Z])(?:MEDICAL BILLS|IN (?:THE )?HOSPITAL|HOSPITALI[SZ]ED)(?![A-Z])"
    r"|(?<![A-Z])(?:HOURS|PAY|SALARY|WAGES) (?:WERE |WAS |GOT |HAVE BEEN |HAS BEEN )?CUT(?![A-Z])"
    r"|(?<![A-Z])(?:GO|GOING) BANKRUPT(?![A-Z])"
    r"|失业|下岗|被裁|裁员|(?:丢|没)了?工作|没有工作|收入(?:减少|下降|没了)|生病|住院|还不起|没钱还"
    r"|公司(?:破产|倒闭)"
)

_EDGE = re.compile(r"^[\W_]+|[\W_]+$")
_UNSEEN = frozenset({"Cf", "Cc"})  # format and control characters: no reader sees them
_SPACES = re.compile(r"\s+")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # half of a pair (a whole pair is one code point)


@dataclass(frozen=True, slots=True)
class Classified:
    kind: InboundKind
    text: str  # normalised: NFKC, upper case, single spaces, no surrounding punctuation
    keyword: str | None = None  # the keyword that decided an opt-out or opt-in, if one did
    # A hold the borrower's words call for, whatever else the text is (a dispute, a bankruptcy),
    # with the words that call for it: "STOP, I dispute this debt" opts out and disputes.
    hold: Hold | None = None
    statement: str | None = None


def normalise(body: str) -> str:
    """Full-width forms folded (NFKC: "ＳＴＯＰ" is "STOP", U+3000 is a space), invisible format
    characters dropped (a zero-width space inside "S\u200bTOP", a byte-order mark, bidirectional
    marks, a control character: a phone's keyboard, a pasted text or a gateway adds them, and a
    reader sees STOP), upper case,
    whitespace collapsed, punctuation around the message dropped ("Stop." and "退订。" count)."""
    return _EDGE.sub("", _folded(body))


def storable(body: str) -> str:
    """The borrower's words as the database keeps them: a NUL, which PostgreSQL's text refuses (the
    whole callback would be lost: Twilio does not post an inbound text twice) and a gateway may make
    of GSM's "@" (0x00), becomes U+FFFD, the mark of a character that could not be read; so does a
    lone surrogate, which no UTF-8 text holds (SQLite's driver refuses it too) but a JSON escape
    does: half an emoji, where a gateway cut a long text between the two halves of a pair
    (`"\\ud83d"` in Aliyun's SmsUp). All else is kept as sent."""
    return whole_characters(body.replace("\x00", "\ufffd"))


def whole_characters(text: str) -> str:
    """`text` with each lone surrogate (half an emoji, from a JSON escape) made U+FFFD: no UTF-8
    text, file or database holds one."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def _folded(body: str) -> str:
    """`normalise` but for the punctuation around the message, where a "#" may be a word: "wrong #"."""
    # Not read: what nobody sees (`visible`: a combining grapheme joiner or a variation selector
    # inside "STOP" too), and any other format or control character.
    text = visible(unicodedata.normalize("NFKC", body))
    text = "".join(c for c in text if c.isspace() or unicodedata.category(c) not in _UNSEEN).upper()
    return _SPACES.sub(" ", text).strip()


def classify(body: str, vendor_keyword: str | None = None) -> Classified:
    """Opt-out, opt-in, wrong number or a reply, and the hold an opt-out or a reply calls for. An
    opt-out word wins over an opt-in word in one message, and over a wrong number ("Stop. Wrong
    number"): the number is opted out as asked.

    `vendor_keyword` is the vendor's own reading, where it gives one (Twilio's OptOutType: STOP,
    START or HELP, for keywords the lender configured there, "ALTO" or "PARAR" among them). The
    vendor stops or resumes sending to the number on it, so arrears follows at once: its STOP opts
    out whatever the words; its START opts in unless the words opt out."""
    read = _classify(body)
    said = f"{vendor_keyword} (vendor)"
    if vendor_keyword == "STOP" and read.kind is not InboundKind.OPT_OUT:
        return Classified(InboundKind.OPT_OUT, read.text, said, read.hold, read.statement)
    if vendor_keyword == "START" and read.kind not in (InboundKind.OPT_OUT, InboundKind.OPT_IN):
        return Classified(InboundKind.OPT_IN, read.text, said)
    return read


def _classify(body: str) -> Classified:
    folded = _folded(body)
    text = _EDGE.sub("", folded)
    if text in OPT_OUT_KEYWORDS:
        return Classified(InboundKind.OPT_OUT, text, text)
    if (core := _without_courtesy(text)) in OPT_OUT_KEYWORDS:
        return Classified(InboundKind.OPT_OUT, text, core)
    # A keyword on a line of its own, a signature under it: "Cancel\n\nSent from my iPhone".
    first = normalise(next((line for line in body.splitlines() if normalise(line)), ""))
    if first != text and (first in OPT_OUT_KEYWORDS or _without_courtesy(first) in OPT_OUT_KEYWORDS):
        return Classified(InboundKind.OPT_OUT, text, _without_courtesy(first) or first)
    if text in OPT_IN_KEYWORDS:
        return Classified(InboundKind.OPT_IN, text, text)
    found = _FREE_FORM_OPT_OUT.search(text) or _REFUSAL.search(text)
    wrong = None if found else _WRONG_NUMBER.search(folded)
    if wrong:  # a stranger's "not my debt" disputes nothing
        return Classified(InboundKind.WRONG_NUMBER, text, wrong.group(0))
    hold, statement = next(
        ((kind, said.group(0)) for kind, pattern in _STATEMENTS if (said := pattern.search(text))),
        (None, None),
    )
    if found:
        return Classified(InboundKind.OPT_OUT, text, found.group(0), hold, statement)
    return Classified(InboundKind.REPLY, text, None, hold, statement)


def hardship_statement(body: str) -> str | None:
    """The words of a reply that tell of a hardship (`_HARDSHIP`), as normalised; None if none."""
    found = _HARDSHIP.search(normalise(body))
    return found.group(0) if found else None


def _without_courtesy(text: str) -> str:
    """The words of a normalised text but its courtesy ones, and 请 and 谢谢 around a mainland word,
    and 回 or 回复 (reply) before it: "回T" and "回复TD" echo our own footer, 回T退订."""
    words = (
        w.removeprefix("请").removeprefix("回复").removeprefix("回").removesuffix("谢谢")
        for w in _WORDS.split(text)
    )
    return " ".join(w for w in words if w and w not in _COURTESY)


def inbound_address(number: str, default_region: str | None = None) -> str | None:
    """The E.164 form of a sender's number as a gateway gives it (`+…`, or national digits in
    `default_region`, e.g. Aliyun's 11-digit mainland mobiles); None if it is not a number."""
    text = number.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        parsed = phonenumbers.parse(text, None if text.startswith("+") else default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


AMBIGUOUS_SENDER = "ambiguous sender"


def attribute(open_accounts: Sequence[str], messaged: Sequence[str]) -> str | None:
    """The one account a reply can be attributed to, or None (an agent decides: `AMBIGUOUS_SENDER`).

    `open_accounts` hold the sender's number; `messaged` are those of them we texted at that number
    lately. A reply is for the only open account with the number, or, when several share it (a
    family phone, a recycled number), for the only one of them we texted: what it answers. Guessing
    wrong would write one borrower's promise on another's loan, so anything else is not attributed.
    """
    if len(open_accounts) == 1:
        return open_accounts[0]
    answered = set(messaged) & set(open_accounts)
    return answered.pop() if len(answered) == 1 else None
