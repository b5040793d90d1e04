"""Authentication classes, in the house order: controller API keys first, then JWTs; failed
attempts are counted per client address (enexa.api.throttling)."""

from rest_framework import authentication, exceptions
from rest_framework_simplejwt.authentication import JWTAuthentication as SimpleJWTAuthentication

from enexa.core.network import client_ip
from enexa.core.principals import API_KEY_PREFIX
from enexa.provisioning.services import authenticate_api_key

from .throttling import count_auth_failure, refuse_after_auth_failures


def bearer_token(request) -> str | None:
    header = authentication.get_authorization_header(request).decode("latin-1")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Claims only `Bearer enx_...` tokens: a controller's API key (shape `enx_<lookup>.<secret>`).

    Anything else is left to the next class, so a JWT never reaches this one."""

    def authenticate(self, request):
        token = bearer_token(request)
        if token is None or not token.startswith(API_KEY_PREFIX):
            return None
        refuse_after_auth_failures(request)
        principal = authenticate_api_key(token, client_ip=client_ip(request))
        if principal is None:
            count_auth_failure(request)
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired API key.")
        return principal, token

    def authenticate_header(self, request):
        return 'Bearer realm="enexa"'


class JWTAuthentication(SimpleJWTAuthentication):
    """simplejwt, answering 401 with the same WWW-Authenticate as the key class; failures count
    against the address's `auth_failure` limit like bad API keys."""

    def authenticate(self, request):
        if self.get_header(request) is None:
            return None
        refuse_after_auth_failures(request)
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            count_auth_failure(request)
            raise

    def authenticate_header(self, request):
        return 'Bearer realm="enexa"'
