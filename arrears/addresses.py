"""A borrower's mailing address, as the accounts file gives it (DESIGN §8's address columns) and
as letters and the Metro 2 file use it."""

from dataclasses import dataclass

__all__ = ["MailingAddress", "mailable"]


@dataclass(frozen=True, slots=True)
class MailingAddress:
    line1: str
    line2: str  # "" when none
    city: str
    state: str  # US: the two-letter state; elsewhere the province or region, or ""
    postal_code: str
    country: str  # ISO 3166-1 alpha-2

    def lines(self) -> tuple[str, ...]:
        """The address as printed in an envelope's window."""
        place = " ".join(p for p in (self.city + ",", self.state, self.postal_code) if p.strip(","))
        return tuple(x for x in (self.line1, self.line2, place, self.country) if x)


def mailable(
    line1: str | None,
    line2: str | None,
    city: str | None,
    state: str | None,
    postal_code: str | None,
    country: str | None,
) -> MailingAddress | None:
    """The address stored in an account's columns, or None when it lacks what the post needs: a
    first line, a city, a postal code and a country."""
    if not (line1 and city and postal_code and country):
        return None
    return MailingAddress(line1, line2 or "", city, state or "", postal_code, country)
