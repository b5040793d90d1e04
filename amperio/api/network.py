"""The caller's address (X-Forwarded-For believed only from trusted proxies) and the allowlist."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from amperio.settings import get_settings


@lru_cache(maxsize=64)
def _networks(
    entries: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def ip_in(ip: str | None, networks: tuple[str, ...]) -> bool:
    """Whether `ip` lies in one of `networks` (CIDR strings); False when `ip` is missing or not
    an address."""
    if not ip:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in net for net in _networks(networks))


def resolve_client_ip(
    remote_addr: str | None, forwarded_for: str, trusted_proxies: tuple[str, ...]
) -> str | None:
    """`remote_addr`, unless it is a trusted proxy: then the right-most X-Forwarded-For entry
    that is not itself a trusted proxy (entries left of it are client-supplied, so unproven)."""
    remote = remote_addr or None
    if remote is None or not ip_in(remote, trusted_proxies):
        return remote
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not ip_in(hop, trusted_proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return remote  # garbage from the proxy's client: fall back to what we know
    return remote


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
