"""drf-spectacular extensions: how the OpenAPI schema describes our authentication classes."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class JWTScheme(SimpleJWTScheme):
    target_class = "enexa.api.authentication.JWTAuthentication"
    name = "jwtAuth"


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "enexa.api.authentication.ApiKeyAuthentication"
    name = "controllerApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A controller's API key (`enx_<lookup>.<secret>`), issued at "
            "provisioning.",
        }
