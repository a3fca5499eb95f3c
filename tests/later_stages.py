"""The old name of `tests.later_stage_helpers`, kept only for `benchmarks/reviews.py`, whose
generated script imports it (benchmarks/ is being changed elsewhere); switch that import, then
delete this module."""

from tests.later_stage_helpers import account_t, import_rows, us_account

__all__ = ["account_t", "import_rows", "us_account"]
