"""OpenAPI schema helpers: how it describes our authentication, problem responses and bodies."""

from typing import Any

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers
from rest_framework_simplejwt.views import TokenViewBase

from .errors import PROBLEM_CONTENT_TYPE

Schema = dict[str, Any]
DATETIME: Schema = {"type": "string", "format": "date-time"}
PROBLEM: Schema = {"$ref": "#/components/schemas/Problem"}  # ProblemSerializer's component


def json_body(schema: Schema) -> dict[str, Schema]:
    """An `extend_schema(request=...)` of a JSON body of `schema` (a raw schema dict, e.g. a
    wire component of shared.openapi): JSON only, as every client sends."""
    return {"application/json": schema}


def nullable(schema: Schema) -> Schema:
    return {**schema, "nullable": True}


def fields(**properties: Schema) -> Schema:
    """An object that always has all of `properties` (null where a value is unknown)."""
    return {"type": "object", "properties": properties, "required": list(properties)}


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


def problems(*codes: int) -> dict:
    """`extend_schema` responses: a problem document for each of `codes`, beyond those
    ProblemAutoSchema adds by itself."""
    return {(code, PROBLEM_CONTENT_TYPE): ProblemSerializer for code in codes}


class ProblemAutoSchema(AutoSchema):
    """Adds the problem responses an operation can give to the ones it declares: 401 and 403
    when it has a caller (403 also for writes), 404 when a path names a resource or a list
    pages, 400 when it takes input (a body, filters or query parameters), 415 when it takes a
    body, 409 for deletes, 412 (and 428 when required) with `If-Match`, 429 where rate limits
    apply, and 503 everywhere (the database is down, enexa.api.middleware)."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        codes = []
        needs_caller = bool(self.view.get_authenticators())
        if needs_caller or isinstance(self.view, TokenViewBase):
            codes.append("401")  # a missing or bad token; for login, bad credentials
        if needs_caller or self.method in ("POST", "PUT", "PATCH", "DELETE"):
            # any call with a caller: staff-only reads, and a controller key used from an
            # address outside its allowlist
            codes.append("403")
        if "{" in self.path or (self._is_list_view() and self._get_paginator()):
            codes.append("404")  # a resource, or a page past the end
        parameters = self.get_override_parameters() or []
        takes_query = any(getattr(p, "location", None) == "query" for p in parameters)
        if self.method in ("POST", "PUT", "PATCH") or self.get_filter_backends() or takes_query:
            codes.append("400")
        if self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None:
            codes.append("415")  # a body that is not JSON
        if self.method == "DELETE":
            codes.append("409")
        if_match = [p for p in parameters if getattr(p, "name", None) == "If-Match"]
        if if_match:
            codes.append("412")  # a stale version
            if if_match[0].required:
                codes.append("428")  # no If-Match at all
        if self.view.get_throttles():
            codes.append("429")  # rate limits (enexa.api.throttling), with Retry-After
        codes.append("503")  # with Retry-After
        for code in codes:
            responses.setdefault(
                code,
                self._get_response_for_code(
                    ProblemSerializer, code, media_types=[PROBLEM_CONTENT_TYPE]
                ),
            )
        return responses
