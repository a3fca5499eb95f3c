"""What a borrower's free text asks for, in the words people really use (`arrears.inbound`)."""

import pytest

from arrears.inbound import InboundKind, classify, storable
from arrears.vocabulary import Hold

# -- what a borrower's words ask for ----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "回T",  # our own footer, 回T退订 (profiles/CN.toml), as the borrower echoes it
        "回复T",
        "回复TD",
        "请回复T",
        "回TD。",
    ],
)
def test_the_mainland_footer_echoed_opts_out(body: str) -> None:
    """Every text to a mainland borrower ends "回T退订" (reply T to unsubscribe); a borrower who
    answers with the instruction itself ("回T", "回复TD") has asked to unsubscribe as plainly as "T"."""
    assert classify(body).kind is InboundKind.OPT_OUT


@pytest.mark.parametrize(
    "body",
    [
        "Do not text or call me",
        "don't call or text me",
        "Don't text or call me again",
        "don't send me texts",
        "Don't send me any more messages",
        "no more text",
        "Opt me out",
        "please opt me out of these",
        "停止联系",
        "不要再联系了",
    ],
)
def test_a_plain_refusal_in_other_common_words_opts_out(body: str) -> None:
    """A plain refusal opts out whatever the words (FCC 24-24, MIIT Order 31 art. 19): a refusal of
    texts and calls together, of texts "sent", "opt me out", or 停止联系 without its object."""
    assert classify(body).kind is InboundKind.OPT_OUT


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ("I don't call or text much, email me", InboundKind.REPLY),
        ("Don't send me the letter, I will pay Friday", InboundKind.REPLY),
        ("联系方式变了", InboundKind.REPLY),
    ],
)
def test_what_only_sounds_like_a_refusal_is_a_reply(body: str, kind: InboundKind) -> None:
    """The wider refusals take no habit or request about something else for one."""
    assert classify(body).kind is kind


@pytest.mark.parametrize(
    ("body", "hold"),
    [
        ("I declared bankruptcy last month", Hold.BANKRUPTCY),
        ("I've declared chapter 7", Hold.BANKRUPTCY),
        ("we're declaring bankruptcy", Hold.BANKRUPTCY),
        ("Chapter 13 bankruptcy, case 26-10234", Hold.BANKRUPTCY),
        ("bankruptcy was filed on 11/20", Hold.BANKRUPTCY),
        ("停止催收", Hold.CEASE_CONTACT),
        ("请停止对我的催收", Hold.CEASE_CONTACT),
        ("停止联系", Hold.CEASE_CONTACT),
    ],
)
def test_common_words_for_a_filing_or_a_cease_request_place_the_hold(body: str, hold: Hold) -> None:
    """Saying one "declared bankruptcy" is how most people say they filed, whose automatic stay binds from
    notice (11 USC 362); 停止催收 is the plain form of 停止一切催收 (FDCPA 805(c)'s cease request)."""
    assert classify(body).hold is hold


@pytest.mark.parametrize(
    "body",
    ["I might have to declare bankruptcy", "如果我还了，你们会停止催收吗", "chapter 7 of the contract"],
)
def test_talk_of_bankruptcy_or_collection_is_no_statement(body: str) -> None:
    """A possibility or a question places no hold."""
    assert classify(body).hold is None


def test_storable_replaces_what_no_database_can_hold() -> None:
    """A NUL and a lone surrogate (half an emoji, as a JSON escape) become U+FFFD; the rest stays."""
    assert storable("退订 \ud83d 😀\x00") == "退订 \ufffd 😀\ufffd"
