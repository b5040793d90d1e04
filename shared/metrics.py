"""`GET /metrics` on both sides (the contract: Prometheus text, a bearer token when one is
configured): the token check, kept in one place."""

from __future__ import annotations

import hmac
from typing import Any

CHALLENGE = 'Bearer realm="metrics"'


def bearer_ok(authorization: str, token: str) -> bool:
    """True when no token is configured, or `authorization` is `Bearer <token>`, compared in
    constant time so the answer's timing tells nothing of the token."""
    if not token:
        return True
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def refusal(authorization: str, token: str) -> dict[str, Any] | None:
    """None when the scrape may go on, else the 401 answer's parts (keyword arguments of an
    HTTP response: content, status, content_type, headers)."""
    if bearer_ok(authorization, token):
        return None
    return {
        "content": b"A bearer token is required.\n",
        "status": 401,
        "content_type": "text/plain",
        "headers": {"WWW-Authenticate": CHALLENGE},
    }
