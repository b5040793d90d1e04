"""The HTTP floor of the ingest bench: a bare Django view answering a telemetry post's usual
answer without doing anything, served by the same gunicorn (`bench.http_floor:application`) and
hit by the same clients with the same bodies. What single posts reach is read against it."""

import secrets

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    SECRET_KEY=secrets.token_hex(16),
)

ANSWER = b'{"accepted":1,"duplicate":0,"rejected":0,"errors":[]}'


def telemetry(request):
    request.body  # read as the real view does  # noqa: B018
    return HttpResponse(ANSWER, status=201, content_type="application/json")


urlpatterns = [path("v1/telemetry", telemetry)]
application = get_wsgi_application()
