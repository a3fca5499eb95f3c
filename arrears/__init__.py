"""arrears: the domain core.

Models, lifecycle rules, policy, compliance, storage and settings. Nothing here imports Prefect,
httpx or any other package of ours (DESIGN.md §1), so every decision can be tested as a plain
function and replayed from stored facts.
"""

__version__ = "0.1.0"
