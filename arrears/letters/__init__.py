"""Letters: legal notices and confirmations rendered as deterministic PDFs (see `arrears.letters.render`)."""

from arrears.letters.render import (
    LETTER_KINDS,
    LetterContext,
    LetterKind,
    LetterTemplateMissing,
    RenderedLetter,
    render,
    template_for,
    vet,
)

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
