"""Code points nobody sees, and the text without them.

A reader sees Deadbeat where a pattern reads Dead, a combining grapheme joiner and beat as
two words: the content check (`arrears.compliance.content`) reads a text without them, and a
message's greeting (`arrears.messages.display_name`) drops them, so what is sent is what was
checked. A module of its own: both import it, and neither the other (the greeting would load the
compliance rules, holidays and time zones; the screen at import, the templates).
"""

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import regex

__all__ = ["visible"]


@cache
def _ignorable() -> "regex.Pattern[str]":
    """Unicode's default-ignorable code points (Default_Ignorable_Code_Point, DerivedCoreProperties
    .txt), as the `regex` module knows them from its Unicode tables: the soft hyphen, the combining
    grapheme joiner, the zero-width space and joiners, the bidirectional marks, the variation
    selectors, the byte-order mark, the tags, the Hangul fillers and the rest. Loaded on the first
    text that is not ASCII: importing `regex` costs ~25 ms, which every process importing the
    messages (the CLI, each worker) paid at start, most of them for ASCII texts alone."""
    import regex

    return regex.compile(r"\p{Default_Ignorable_Code_Point}")


def visible(text: str) -> str:
    """`text` without its default-ignorable code points: what its reader reads. None is ASCII, so
    an ASCII text is returned as it is, without a search."""
    return text if text.isascii() else _ignorable().sub("", text)
