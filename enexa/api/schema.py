"""OpenAPI schema helpers: how it describes our authentication and problem responses."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

from .errors import PROBLEM_CONTENT_TYPE


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


class ProblemSerializer(serializers.Serializer):
    """An RFC 9457 problem document, as every API error is sent."""

    type = serializers.URLField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Field -> messages, for validation failures (nested fields as `a.b`).",
    )


class ProblemAutoSchema(AutoSchema):
    """Adds the problem responses an operation can give to the ones it declares: 401 when it
    needs a caller, 403 for writes, 404 when a path names a resource, 400 when it takes input,
    409 for deletes, 429 where rate limits apply."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        codes = []
        if self.view.get_authenticators():
            codes.append("401")
        if self.method in ("POST", "PUT", "PATCH", "DELETE"):
            codes.append("403")
        if "{" in self.path:
            codes.append("404")
        if self.method in ("POST", "PUT", "PATCH") or self.get_filter_backends():
            codes.append("400")
        if self.method == "DELETE":
            codes.append("409")
        if self.view.get_throttles():
            codes.append("429")  # rate limits (enexa.api.throttling), with Retry-After
        for code in codes:
            responses.setdefault(
                code,
                self._get_response_for_code(
                    ProblemSerializer, code, media_types=[PROBLEM_CONTENT_TYPE]
                ),
            )
        return responses
