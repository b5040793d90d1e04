"""The caller's address (X-Forwarded-For is believed only from TRUSTED_PROXIES), and the check
that an outbound target (a webhook) is not an address inside."""

import ipaddress
import socket

from django.conf import settings

from shared.network import ip_in, resolve_client_ip

__all__ = ["UnsafeTarget", "client_ip", "ip_in", "is_public_address", "resolve_public"]


def client_ip(request) -> str | None:
    """REMOTE_ADDR, unless it is a trusted proxy: then the right-most X-Forwarded-For entry
    that is not itself a trusted proxy (entries left of it are client-supplied, so unproven).

    Worked out once per request (authentication, throttling and the audit row all ask), and
    kept on the Django request, which a DRF request wraps."""
    request = getattr(request, "_request", request)
    try:
        return request.enexa_client_ip
    except AttributeError:
        request.enexa_client_ip = resolve_client_ip(
            request.META.get("REMOTE_ADDR"),
            request.META.get("HTTP_X_FORWARDED_FOR", ""),
            settings.TRUSTED_PROXIES or (),
        )
        return request.enexa_client_ip


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
