"""RFC 9457 problem details for every API error, the domain errors (enexa.core.errors) included."""

import logging
from http import HTTPStatus

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler

from enexa.core.errors import DomainError, InvalidInput, RequestTooLarge

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "https://enexa.io/problems/"


def flatten_errors(detail, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error detail into `field.path -> [messages]`."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            for field, messages in flatten_errors(value, name).items():
                out.setdefault(field, []).extend(messages)
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            out[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                name = f"{prefix}.{index}" if prefix else str(index)
                for field, messages in flatten_errors(item, name).items():
                    out.setdefault(field, []).extend(messages)
    else:
        out[prefix or "non_field_errors"] = [str(detail)]
    return out


def problem_body(status_code: int, title: str, detail: str, code: str, errors=None) -> dict:
    body = {"type": PROBLEM_BASE + code, "title": title, "status": status_code, "detail": detail}
    if errors:
        body["errors"] = errors
    return body


def problem_response(
    status_code: int,
    title: str,
    detail: str,
    code: str,
    errors=None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    """A plain Django problem response, for code paths outside DRF (middleware, 404 handler)."""
    response = JsonResponse(
        problem_body(status_code, title, detail, code, errors),
        status=status_code,
        content_type=PROBLEM_CONTENT_TYPE,
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def problem_exception_handler(exc, context):
    """DRF exception handler: every error leaves as application/problem+json."""
    request = context.get("request")
    if request is not None:  # a problem is JSON even where the view renders CSV
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = PROBLEM_CONTENT_TYPE
    if isinstance(exc, SuspiciousOperation):  # Django's request limits: too big, too many fields
        exc = (RequestTooLarge if isinstance(exc, RequestDataTooBig) else InvalidInput)(str(exc))
    if isinstance(exc, DomainError):
        response = Response(
            problem_body(exc.status, exc.title, exc.detail, exc.code, exc.errors),
            status=exc.status,
        )
        response.content_type = PROBLEM_CONTENT_TYPE
        if exc.status == status.HTTP_401_UNAUTHORIZED:
            response["WWW-Authenticate"] = 'Bearer realm="enexa"'
        return response
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    response = exception_handler(exc, context)
    if response is None:
        return None
    errors = None
    if isinstance(exc, exceptions.ValidationError):
        errors = flatten_errors(exc.detail)
        title, detail, code = "Invalid input", "The request has invalid fields.", "invalid"
    else:
        detail = exc.detail
        if isinstance(detail, dict):  # simplejwt's InvalidToken carries {"detail", "messages"}
            detail = detail.get("detail", "")
        detail = detail if isinstance(detail, str) else str(detail)
        code = getattr(exc, "default_code", "error")
        title = str(getattr(exc, "default_detail", "") or "")
        if not title or "{" in title:  # a template (405, 415): the detail has its values
            title = HTTPStatus(response.status_code).phrase
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        response["Retry-After"] = str(max(1, int(exc.wait + 0.999)))
    response.data = problem_body(response.status_code, title, str(detail), code, errors)
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


def not_found_view(request, exception=None):
    """handler404: problem details under /v1/, Django's page elsewhere."""
    if request.path.startswith("/v1/"):
        return problem_response(404, "Not found", "Not found.", "not_found")
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def server_error_view(request):
    """handler500: never a stack trace on the API."""
    if request.path.startswith("/v1/"):
        return problem_response(500, "Server error", "An internal error occurred.", "server_error")
    from django.views.defaults import server_error

    return server_error(request)
