"""The credit-bureau provider kind: protocol and types, the REST client, the sandbox server.

from integrations.bureau import build_provider, PullRequest, COLLECTION_PURPOSE
with build_provider("sandbox", handle.base_url, handle.credentials) as bureau:
    profile = bureau.pull(PullRequest("pull-A-1-2026-11", "A-1", "DANA WHITFIELD", COLLECTION_PURPOSE,
                                      national_id="123-45-6789"))
"""

from integrations.bureau.factory import DEFAULT_PROVIDER, available_providers, build_provider, provider_class
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
    "DEFAULT_PROVIDER",
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
    "available_providers",
    "build_provider",
    "provider_class",
]
