"""The credit-bureau provider kind: protocol and types, the REST client, the sandbox server.

from integrations.bureau import PullRequest, COLLECTION_PURPOSE
from integrations.providers import build_provider
with build_provider("bureau", "sandbox", handle.base_url, handle.credentials) as bureau:
    profile = bureau.pull(PullRequest("pull-A-1-2026-11", "A-1", "DANA WHITFIELD", COLLECTION_PURPOSE,
                                      national_id="123-45-6789"))
"""

from integrations.bureau.protocol import (
    COLLECTION_PURPOSE,
    PERMISSIBLE_PURPOSES,
    SCORE_BANDS,
    Address,
    Bankruptcy,
    BureauProfile,
    BureauProvider,
    FoundPhone,
    FurnishError,
    FurnishRequest,
    FurnishResult,
    PullRequest,
)

__all__ = [
    "COLLECTION_PURPOSE",
    "PERMISSIBLE_PURPOSES",
    "SCORE_BANDS",
    "Address",
    "Bankruptcy",
    "BureauProfile",
    "BureauProvider",
    "FoundPhone",
    "FurnishError",
    "FurnishRequest",
    "FurnishResult",
    "PullRequest",
]
