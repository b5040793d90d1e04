"""The caller's address (X-Forwarded-For is believed only from TRUSTED_PROXIES), and the check
that an outbound target (a webhook) is not an address inside."""

import ipaddress
import socket
from collections.abc import Iterable
from functools import lru_cache

from django.conf import settings


# One entry per distinct list: the trusted proxies and each controller's IP allowlist.
@lru_cache(maxsize=1024)
def _networks(entries: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def ip_in(ip: str | None, networks: Iterable) -> bool:
    """Whether `ip` lies in one of `networks` (CIDR strings, parsed once per distinct list);
    False when `ip` is missing or not an address."""
    if not ip:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in net for net in _networks(tuple(str(entry) for entry in networks)))


def _trusted(ip: str) -> bool:
    return bool(settings.TRUSTED_PROXIES) and ip_in(ip, settings.TRUSTED_PROXIES)


def client_ip(request) -> str | None:
    """REMOTE_ADDR, unless it is a trusted proxy: then the right-most X-Forwarded-For entry
    that is not itself a trusted proxy (entries left of it are client-supplied, so unproven).

    Worked out once per request (authentication, throttling and the audit row all ask), and
    kept on the Django request, which a DRF request wraps."""
    request = getattr(request, "_request", request)
    try:
        return request.enexa_client_ip
    except AttributeError:
        request.enexa_client_ip = _client_ip(request.META)
        return request.enexa_client_ip


def _client_ip(meta) -> str | None:
    remote = meta.get("REMOTE_ADDR") or None
    if remote is None or not _trusted(remote):
        return remote
    forwarded = [
        hop.strip() for hop in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()
    ]
    for hop in reversed(forwarded):
        if not _trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return remote  # garbage from the proxy's client: fall back to what we know
    return remote


class UnsafeTarget(ValueError):
    """An outbound target that resolves to an address inside (loopback, private, link-local,
    reserved), or does not resolve at all."""


def is_public_address(ip: str) -> bool:
    """Whether `ip` is a global unicast address (an IPv4-mapped IPv6 address as its IPv4)."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def resolve_public(host: str, port: int, *, allow_private: bool = False) -> list[str]:
    """The addresses `host` resolves to, every one of them public (unless `allow_private`);
    raises UnsafeTarget otherwise. Callers connect to a returned address, not to the name, so
    a second resolution cannot swap in an inside address (DNS rebinding)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeTarget(f"{host} does not resolve.") from exc
    addresses = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
    if not addresses:
        raise UnsafeTarget(f"{host} does not resolve.")
    if not allow_private:
        inside = [a for a in addresses if not is_public_address(a)]
        if inside:
            raise UnsafeTarget(
                f"{host} resolves to {inside[0]}, a loopback, private, link-local or reserved "
                "address; webhooks go to public addresses only."
            )
    return addresses
