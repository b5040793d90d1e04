"""The caller's address (X-Forwarded-For believed only from trusted proxies) and the allowlist."""

from __future__ import annotations

from typing import Any

from amperio.settings import get_settings
from shared.network import ip_in, resolve_client_ip

__all__ = ["allowed", "client_ip", "ip_in", "resolve_client_ip"]


def client_ip(request: Any) -> str | None:
    """The address of a Django (or DRF) request's caller, worked out once per request (the
    allowlist, throttles and the audit row all ask)."""
    request = getattr(request, "_request", request)
    try:
        return request.amperio_client_ip
    except AttributeError:
        request.amperio_client_ip = resolve_client_ip(
            request.META.get("REMOTE_ADDR"),
            request.META.get("HTTP_X_FORWARDED_FOR", ""),
            get_settings().trusted_proxies,
        )
        return request.amperio_client_ip


def allowed(ip: str | None, allowlist: tuple[str, ...]) -> bool:
    """Every caller when the allowlist is empty; else only addresses inside it."""
    return not allowlist or ip_in(ip, allowlist)
