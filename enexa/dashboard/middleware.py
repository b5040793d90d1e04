"""The dashboard's 405 page. Django has no handler405: require_GET, require_POST and a
class-based view's http_method_not_allowed each return an empty HttpResponseNotAllowed.
Turning that response into the dashboard's page here covers every /app/ view, Django's own auth
views included, without wrapping each one; elsewhere (the API's problem details, the admin)
nothing changes."""

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed

from .views import in_dashboard, method_not_allowed


class MethodNotAllowedPageMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # Only Django's empty 405: a view that answers its own 405 keeps its body.
        if isinstance(response, HttpResponseNotAllowed) and in_dashboard(request):
            return method_not_allowed(request, response)
        return response
