"""Thin views of Amperio's API: parse, call a service, map domain errors to problem details."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from prometheus_client import CONTENT_TYPE_LATEST
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from amperio.api import serializers, services
from amperio.api.errors import problem
from amperio.api.middleware import note_command
from amperio.api.serializers import problems
from amperio.backend.fleet import UnknownSite
from amperio.dispatch.errors import CommandConflict, CommandError, LimitsUnknown, UnknownCommand
from amperio.settings import get_settings
from shared import openapi as wire
from shared.errors import SchemaError
from shared.metrics import refusal

LIMITS_RETRY_AFTER_S = "5"


class DispatchView(APIView):
    """`POST /v1/dispatch`: store the command, queue its task, answer 202."""

    @extend_schema(
        request={"application/json": wire.ref("DispatchCommand")},
        responses={
            202: serializers.DispatchAcceptedSerializer,
            200: OpenApiResponse(
                serializers.DispatchStatusSerializer, description="A replayed command_id."
            ),
            **problems(400, 401, 403, 404, 415, 422, 429, 503),
        },
    )
    def post(self, request: Request) -> Response:
        settings = get_settings()
        body_id = request.data.get("command_id") if isinstance(request.data, dict) else None
        note_command(request, body_id if isinstance(body_id, str) else None)
        try:
            record, created = services.accept_command(
                settings, request.data, request.headers.get("Idempotency-Key")
            )
        except UnknownSite as exc:
            return problem(404, "Site not served", exc.detail, "unknown_site")
        except SchemaError as exc:
            return problem(
                400, "Invalid input", "The command has invalid fields.", "invalid", exc.errors
            )
        except CommandConflict as exc:
            return problem(422, "Command id reused", exc.detail, "command_id_reused", exc.errors)
        except LimitsUnknown as exc:
            return problem(
                503,
                "Limits unknown",
                exc.detail,
                "limits_unknown",
                headers={"Retry-After": LIMITS_RETRY_AFTER_S},
            )
        except CommandError as exc:
            return problem(400, "Beyond the equipment limits", exc.detail, "limits", exc.errors)
        note_command(request, record["command_id"])
        if created:
            return Response(
                {"command_id": record["command_id"], "status": record["status"]}, status=202
            )
        return Response(record, status=200)


class DispatchStatusView(APIView):
    """`GET /v1/dispatch/{command_id}`: queued, applied (registers), rejected, failed, expired."""

    @extend_schema(
        responses={
            200: serializers.DispatchStatusSerializer,
            **problems(401, 403, 404, 429),
        }
    )
    def get(self, request: Request, command_id: str) -> Response:
        try:
            record = services.command_status(get_settings(), command_id)
        except UnknownCommand as exc:
            return problem(404, "Not found", exc.detail, "not_found")
        return Response(record)


class HealthView(APIView):
    """`GET /v1/health`: open to monitoring (never rate limited, as Enexa's); says how each
    site's gateway is doing."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(responses={200: serializers.HealthSerializer})
    def get(self, request: Request) -> Response:
        return Response(services.health(get_settings()))


class MetricsView(APIView):
    """`GET /metrics`: the Prometheus text format (outside /v1/ and its schema); with
    AMPERIO_METRICS_TOKEN set, only for `Authorization: Bearer <that token>`, which is not a
    service token (a scraper may not dispatch)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []  # Prometheus scrapes on its own schedule
    schema = None  # not part of the /v1/ contract's schema

    def get(self, request: Request) -> HttpResponse:
        settings = get_settings()
        refused = refusal(request.headers.get("Authorization", ""), settings.metrics_token)
        if refused is not None:
            return HttpResponse(**refused)
        return HttpResponse(services.metrics_text(settings), content_type=CONTENT_TYPE_LATEST)


def unlisted(view: Any) -> Any:
    """`view` at a second address (`/v1/health/` beside `/v1/health`) that the OpenAPI schema
    leaves out: the schema lists the DRF views it finds, and this plain function is not one."""

    def same_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        return view(request, *args, **kwargs)

    same_view.view_class = view.view_class  # type: ignore[attr-defined]  # what serves it
    return same_view
