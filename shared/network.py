"""Addresses as both APIs judge them: whether an address lies in a list of networks, and who
the caller is behind trusted proxies. Standard library only."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache


# One entry per distinct list: the trusted proxies and each allowlist.
@lru_cache(maxsize=1024)
def _networks(
    entries: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def ip_in(ip: str | None, networks: Iterable[str]) -> bool:
    """Whether `ip` lies in one of `networks` (CIDR strings, parsed once per distinct list);
    False when `ip` is missing or not an address."""
    if not ip:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in net for net in _networks(tuple(str(entry) for entry in networks)))


def resolve_client_ip(
    remote_addr: str | None, forwarded_for: str, trusted_proxies: Iterable[str]
) -> str | None:
    """`remote_addr`, unless it is a trusted proxy: then the right-most X-Forwarded-For entry
    that is not itself a trusted proxy (entries left of it are client-supplied, so unproven)."""
    trusted = tuple(trusted_proxies)
    remote = remote_addr or None
    if remote is None or not trusted or not ip_in(remote, trusted):
        return remote
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not ip_in(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return remote  # garbage from the proxy's client: fall back to what we know
    return remote
