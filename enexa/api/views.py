"""Views of the API plumbing itself: health, and a second address for a view."""

from django.conf import settings
from django.db import connection
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import (
    api_view,
    authentication_classes,
    permission_classes,
    throttle_classes,
)
from rest_framework.permissions import AllowAny
from rest_framework.response import Response


def database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - any failure means "down" here
        return False


def redis_ok() -> bool:
    from enexa.api.throttling import redis_client

    try:
        return bool(redis_client().ping())
    except Exception:  # noqa: BLE001 - any failure means "down" here
        return False


HEALTH_FIELDS = {
    "status": serializers.CharField(help_text="ok, or degraded when a dependency is down"),
    "database": serializers.CharField(help_text="ok or down"),
    "redis": serializers.CharField(
        required=False,
        help_text="ok or down (rate limits then count per process); "
        "absent when REDIS_URL is not set",
    ),
}


HEALTH = inline_serializer("Health", HEALTH_FIELDS)


# One component for both: two inline serializers over the same fields left 503 without a body.
@extend_schema(responses={200: HEALTH, 503: HEALTH}, auth=[])
@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
@throttle_classes([])  # monitors and start-up probes poll it
def health(request):
    """Liveness and dependencies: 503 when the database is down."""
    db = database_ok()
    body = {"status": "ok", "database": "ok" if db else "down"}
    if settings.REDIS_URL:
        body["redis"] = "ok" if redis_ok() else "down"
    if "down" in body.values():
        body["status"] = "degraded"
    response = Response(body, status=200 if db else 503)
    if not db:
        response["Retry-After"] = "5"
    return response


def unlisted(view):
    """`view` at a second address (`/v1/health/` beside `/v1/health`) that the OpenAPI schema
    leaves out: the schema lists the DRF views it finds, and this plain function is not one."""

    def same_view(request, *args, **kwargs):
        return view(request, *args, **kwargs)

    return csrf_exempt(same_view)  # as DRF's own views are
