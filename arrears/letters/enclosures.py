"""What a notice must carry besides its own words, and how it goes into the notice's PDF.

Consumer Credit Act 1974 s.88(4A): a default notice "must also include a copy of the current
default information sheet under section 86A". The sheet's words are the FCA's, and the FCA
replaces them by version (the current one is effective from 25 October 2021,
fca.org.uk/firms/information-sheets-consumer-credit): arrears cannot ship it, so the lender
supplies the PDF (`ARREARS_FCA_DEFAULT_SHEET`) and replaces the file when the FCA does. A notice
without it is no valid default notice, and the agreement cannot be enforced on it: such a notice
is not mailed at all (`tasks.letters`).

A notice of sums in arrears (s.86B, the GB letter `arrears_notice`) must carry the FCA's arrears
information sheet the same way (s.86A), published by the FCA by version beside the default sheet:
the lender's copy is `ARREARS_FCA_ARREARS_SHEET`. Without it no notice is given, and while none is
given the agreement cannot be enforced and no interest or default sum runs (s.86D): such a notice
is blocked too, never mailed without it.

`ENCLOSURES` says which letters need which document, with the rule that asks for it; `enclose`
appends the documents' pages after the letter's own, a pure function of the bytes (the same
inputs give the same PDF), so the PDF stored and hashed is the one mailed. Who reads the file
and when is the caller's: `read_enclosure` reads and checks one.
"""

import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pypdf
from pypdf.errors import PyPdfError

__all__ = [
    "ARREARS_INFORMATION_SHEET",
    "DEFAULT_INFORMATION_SHEET",
    "ENCLOSURES",
    "Enclosed",
    "Enclosure",
    "enclose",
    "enclosures_for",
    "read_enclosure",
]


@dataclass(frozen=True, slots=True)
class Enclosure:
    """A document the law asks a letter to carry, and the setting that names the lender's copy."""

    name: str  # as the audit trail records it
    title: str  # as a person reads it
    setting: str  # the `Settings` field with the file's path
    source: str
    # How the reason begins of a letter blocked without it: one prefix per document, so that
    # `arrears letters rewrite --blocked-for` rewrites the letters of the one just configured.
    missing: str

    @property
    def env(self) -> str:
        """The environment variable that sets it."""
        return f"ARREARS_{self.setting.upper()}"


DEFAULT_INFORMATION_SHEET = Enclosure(
    name="fca_default_information_sheet",
    title="the FCA's default information sheet",
    setting="fca_default_sheet",
    source=(
        "Consumer Credit Act 1974 s.88(4A): a default notice must include a copy of the current "
        "default information sheet under s.86A"
    ),
    missing="no default information sheet",
)

ARREARS_INFORMATION_SHEET = Enclosure(
    name="fca_arrears_information_sheet",
    title="the FCA's arrears information sheet",
    setting="fca_arrears_sheet",
    source=(
        "Consumer Credit Act 1974 ss.86A-86B: a notice of sums in arrears must include a copy of the "
        "current arrears information sheet under s.86A"
    ),
    missing="no arrears information sheet",
)

# (letter kind, country of the jurisdiction) -> what goes with it. The IE default notice (Consumer
# Credit Act 1995 s.54) has no such sheet; US and CN letters carry none.
ENCLOSURES: Mapping[tuple[str, str], tuple[Enclosure, ...]] = {
    ("right_to_cure", "GB"): (DEFAULT_INFORMATION_SHEET,),
    ("arrears_notice", "GB"): (ARREARS_INFORMATION_SHEET,),
}


def enclosures_for(kind: str, jurisdiction: str) -> tuple[Enclosure, ...]:
    """What a letter of `kind` in `jurisdiction` (a profile code: GB, US-IA) must carry."""
    return ENCLOSURES.get((kind, jurisdiction.split("-")[0]), ())


@dataclass(frozen=True, slots=True)
class Enclosed:
    """A document as the lender supplied it: its bytes, and the evidence of which one went with a
    letter (its SHA-256 and its page count: the FCA's sheet changes by version)."""

    enclosure: Enclosure
    pdf: bytes
    sha256: str
    pages: int

    def evidence(self) -> dict[str, object]:
        """What the letter's audit event records of it."""
        return {
            "name": self.enclosure.name,
            "sha256": self.sha256,
            "pages": self.pages,
            "source": self.enclosure.source,
        }

    def __repr__(self) -> str:
        return f"Enclosed({self.enclosure.name!r}, sha256={self.sha256[:12]!r}…, pages={self.pages})"


def read_enclosure(enclosure: Enclosure, path: Path) -> Enclosed:
    """The document at `path`, checked: a PDF pypdf opens, with at least one page. ValueError
    naming the setting and what is wrong (no such file, unreadable, no PDF, no page)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"{enclosure.env}: {path}: {error.strerror or error}") from None
    pages = _pages(data, f"{enclosure.env}: {path}")
    return Enclosed(enclosure, data, hashlib.sha256(data).hexdigest(), pages)


def _pages(data: bytes, what: str) -> int:
    """How many pages the PDF `data` has; ValueError when pypdf cannot read it or it has none."""
    if not data.startswith(b"%PDF-"):
        raise ValueError(f"{what} is not a PDF")
    try:
        pages = len(pypdf.PdfReader(io.BytesIO(data)).pages)
    # pypdf's own errors, and what a damaged file trips inside it before it raises one of them.
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
        raise ValueError(f"{what} is not a PDF pypdf can read: {type(error).__name__}: {error}") from None
    if pages < 1:
        raise ValueError(f"{what} has no page")
    return pages


def enclose(letter: bytes, *documents: Enclosed) -> bytes:
    """The letter's PDF with each document's pages after its own, in order. The letter's
    metadata (title, author, the fixed dates of a deterministic render) is kept, and the same
    inputs give the same bytes; no document: the letter as it is."""
    if not documents:
        return letter
    writer = pypdf.PdfWriter(clone_from=io.BytesIO(letter))
    for document in documents:
        writer.append(io.BytesIO(document.pdf))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
