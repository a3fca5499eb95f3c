"""Days-past-due buckets: the 30-day steps that lenders, bureaus (Metro 2) and reports share."""

__all__ = ["BUCKETS"]

# (label, lowest days past due), ascending; a bucket runs up to the next one's lowest day. The
# bucketing itself is SQL, stored with the days past due (`storage.cycle.refresh_days_past_due`).
BUCKETS: tuple[tuple[str, int], ...] = (
    ("current", 0),
    ("1-29", 1),
    ("30-59", 30),
    ("60-89", 60),
    ("90-119", 90),
    ("120-179", 120),
    ("180+", 180),
)
