"""Service bearer tokens: Enexa's credentials on this API, several valid at once for rotation."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from amperio.settings import get_settings


@dataclass(frozen=True)
class ServicePrincipal:
    """The caller holding one of the configured service tokens (Enexa)."""

    token_index: int
    is_authenticated: bool = True


def match_token(presented: str, tokens: tuple[str, ...]) -> int | None:
    """Index of the configured token `presented` equals, compared in constant time.

    Every token is compared, so the time taken does not tell which one (or how much) matched."""
    found = None
    for index, token in enumerate(tokens):
        if hmac.compare_digest(presented.encode(), token.encode()):
            found = index
    return found


class ServiceTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <token>` against `AMPERIO_SERVICE_TOKENS`; anything else is 401."""

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None  # no credentials: the permission check answers 401
        index = match_token(token.strip(), get_settings().service_tokens)
        if index is None:
            raise exceptions.AuthenticationFailed("Invalid service token.")
        return ServicePrincipal(index), None

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="amperio"'


class ServiceTokenScheme(OpenApiAuthenticationExtension):
    """Documents the service token as HTTP bearer auth in the OpenAPI schema."""

    target_class = "amperio.api.auth.ServiceTokenAuthentication"
    name = "serviceToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "AMPERIO_SERVICE_TOKENS"}
