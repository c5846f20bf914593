"""Optional API keys. With ``TEMPO_API_KEYS`` set, every non-health route needs ``Authorization: Bearer``.

A request's *owner* is a fingerprint of its key (videos belong to the key that uploaded them);
with keys off every request has the same owner, ``public``.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request

from service.errors import Unauthorized

PUBLIC_OWNER = "public"


def fingerprint(key: str) -> str:
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:16]


async def require_owner(request: Request) -> str:
    allowed: list[str] = request.app.state.settings.api_keys
    if not allowed:
        return PUBLIC_OWNER
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    token = token.strip()
    if not any(hmac.compare_digest(token, k) for k in allowed):
        raise Unauthorized("invalid API key")
    return fingerprint(token)
