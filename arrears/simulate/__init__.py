"""The portfolio simulator: seeded, pure, streaming accounts and payments.

`arrears demo`, the benchmark (up to a million accounts) and the tests need portfolios that look
like a lender's: valid phone numbers in the borrower's time zone, mailing addresses in the
borrower's state, loans whose numbers add up, delinquency weighted toward the early buckets, a few
holds, dead numbers and missing addresses. They also need to
know what the file cannot say, how able and willing each borrower is to pay, so that a simulated
day of payments behaves the way the segments of DESIGN §2 are meant to.

Everything here is a pure function of its arguments and the seed: the same seed gives the same
rows on every machine, and `generate_portfolio(n)` is a prefix of `generate_portfolio(m)` for
n < m, so a benchmark can grow a portfolio without changing the accounts it already had. Rows are
streamed, never held: a million accounts cost the memory of one.

Phone numbers are built from patterns rather than checked with `phonenumbers` row by row (which
would dominate the run time); `tests/test_simulate.py` checks that every pattern yields numbers
that `phonenumbers.is_valid_number` accepts, in the time zone and state that the number implies.

`portfolio` generates the accounts, `payments` a day of payments, `files` writes both as import
files; this package names what callers use.
"""

from arrears.simulate.files import write_accounts_file, write_payments_file
from arrears.simulate.payments import PAYMENT_COLUMNS, AccountState, PaymentRow, simulate_payments
from arrears.simulate.portfolio import ACCOUNT_COLUMNS, PortfolioRow, generate_portfolio

__all__ = [
    "ACCOUNT_COLUMNS",
    "PAYMENT_COLUMNS",
    "AccountState",
    "PaymentRow",
    "PortfolioRow",
    "generate_portfolio",
    "simulate_payments",
    "write_accounts_file",
    "write_payments_file",
]
