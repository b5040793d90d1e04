"""Service bearer tokens: Enexa's credentials on this API, several valid at once for rotation,
each with an optional expiry; failed attempts are counted per client address."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from amperio.api import throttling
from amperio.settings import ServiceToken, get_settings


@dataclass(frozen=True)
class ServicePrincipal:
    """The caller holding one of the configured service tokens (Enexa), known by its name."""

    name: str
    is_authenticated: bool = True


def match_token(presented: str, tokens: tuple[ServiceToken, ...]) -> ServiceToken | None:
    """The configured token `presented` equals, compared in constant time.

    Every token is compared, so the time taken does not tell which one (or how much) matched."""
    found = None
    for token in tokens:
        if hmac.compare_digest(presented.encode(), token.secret.encode()):
            found = token
    return found


class ServiceTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <token>` against `AMPERIO_SERVICE_TOKENS`; a wrong or expired
    token is 401, and past `auth_failure` failures from one address, 429."""

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return None  # no credentials: the permission check answers 401
        throttling.refuse_if_failing(request)
        token = match_token(presented.strip(), get_settings().service_tokens)
        if token is None or token.expired(datetime.now(UTC)):
            throttling.note_auth_failure(request)
            detail = "Invalid service token." if token is None else "Service token expired."
            raise exceptions.AuthenticationFailed(detail)
        return ServicePrincipal(token.name), None

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="amperio"'


class IsService(permissions.BasePermission):
    """Only a caller holding a valid service token; a call without one counts as a failed
    authentication of its address (and is 429 once that address is past the limit)."""

    def has_permission(self, request, view) -> bool:
        if request.user is not None:
            return True
        throttling.refuse_if_failing(request)
        throttling.note_auth_failure(request)
        return False


class ServiceTokenScheme(OpenApiAuthenticationExtension):
    """Documents the service token as HTTP bearer auth in the OpenAPI schema."""

    target_class = "amperio.api.auth.ServiceTokenAuthentication"
    name = "serviceToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "AMPERIO_SERVICE_TOKENS"}
