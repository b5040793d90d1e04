"""Views of the API plumbing itself: health."""
from django.db import connection
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


@extend_schema(
    responses={
        200: inline_serializer("Health", {"status": serializers.CharField(),
                                          "database": serializers.CharField()}),
        503: inline_serializer("HealthDown", {"status": serializers.CharField(),
                                              "database": serializers.CharField()}),
    },
    auth=[],
)
@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
@throttle_classes([])  # monitors and start-up probes poll it
def health(request):
    """Liveness and dependencies: 503 when the database is down."""
    db = database_ok()
    body = {"status": "ok" if db else "degraded", "database": "ok" if db else "down"}
    response = Response(body, status=200 if db else 503)
    if not db:
        response["Retry-After"] = "5"
    return response
