"""Prefect tasks: the only code that joins the database, the rules and the providers (DESIGN §1).

Every side effect is a task, so it is observable, retryable and named. No task runs per account
in the daily cycle: shards and batches are the unit (PREFECT.md).
"""

from arrears.masking import install_log_masking

# Every process that runs a task masks numbers in its log records, Prefect's run logs included: a
# served or pooled flow run is a process of its own that imports only its flow, and every flow
# imports from this package (a review's or a referral's as much as the cycle's).
install_log_masking()
