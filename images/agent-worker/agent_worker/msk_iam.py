"""Amazon MSK IAM authentication: SASL/OAUTHBEARER tokens signed with AWS credentials.

MSK with IAM client auth takes as the OAUTHBEARER token a SigV4-presigned
`kafka-cluster:Connect` URL for the cluster's region, base64url-encoded, valid for
15 minutes. The AWS MSK IAM signer builds it locally from the default credential chain
(in a pod: IRSA's web identity token). One token is shared by the connections made
while it has more than a minute left, then a new one is signed.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka.abc import AbstractTokenProvider
from aws_msk_iam_sasl_signer import MSKAuthTokenProvider  # pyright: ignore[reportMissingTypeStubs]


def sign_token(region: str) -> tuple[str, int]:
    """(token, expiry in epoch milliseconds), signed with the default credential chain."""
    token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    return str(token), int(expiry_ms)  # pyright: ignore[reportUnknownArgumentType]


class MskIamTokenProvider(AbstractTokenProvider):
    """aiokafka's `sasl_oauth_token_provider` for MSK IAM."""

    REFRESH_BEFORE_MS = 60_000

    def __init__(self, region: str) -> None:
        self.region = region
        self._token: str | None = None
        self._expiry_ms = 0
        self._lock = asyncio.Lock()

    async def token(self) -> str:  # pyright: ignore[reportIncompatibleMethodOverride]
        async with self._lock:
            now_ms = int(time.time() * 1000)
            if self._token is None or self._expiry_ms - now_ms < self.REFRESH_BEFORE_MS:
                # Resolving credentials may read files or call STS: off the event loop.
                self._token, self._expiry_ms = await asyncio.to_thread(sign_token, self.region)
            return self._token
