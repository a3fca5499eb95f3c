"""How many flow runs run at once, one place for `arrears serve` (deployments/serve.py) and for the
work pool of deployments/prefect.yaml (deployments/work_pool.py), so the two never disagree.

Kept apart from serve.py, which imports every flow: `python -m deployments.work_pool` needs only
these numbers.
"""

__all__ = ["CONCURRENCY", "SERVE_LIMIT"]

# Flow runs (each its own process) the served process, or the pool's workers, run at once: the
# cycle, the outbox sweep, a few reviews and referrals between two suspensions, and an account
# run or two.
SERVE_LIMIT = 8
# Per deployment: one cycle and one sweep at a time; review and referral runs in a few slots
# (each runs for seconds, then suspends and frees its slot).
CONCURRENCY = {
    "daily": 1,
    "outbox": 1,
    "shard": 4,
    "monthly": 1,
    "account": 2,
    "review": 3,
    "referral": 2,
}
