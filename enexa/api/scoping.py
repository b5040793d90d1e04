"""Site scoping, written once: querysets narrowed to the caller's sites, and the base views
that look up a site or a controller (404 across sites) and check who may act on it."""

from typing import Any

from django.shortcuts import get_object_or_404
from rest_framework import viewsets
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import SAFE_METHODS
from rest_framework.views import APIView

from enexa.core.principals import is_controller
from enexa.core.visibility import may_operate, scope_to_caller, visible_controllers, visible_sites


class SiteScopedMixin:
    """Mix into any view with a queryset: another site's object is simply not found (404)."""

    site_field = "site"

    def get_queryset(self):
        return scope_to_caller(super().get_queryset(), self.request.user, self.site_field)


class SiteScopedViewSet(SiteScopedMixin, viewsets.ModelViewSet):
    lookup_field = "code"


def controller_or_404(user: Any, code: str):
    """The controller `code` if `user` may see it, else 404 (for a controller named in a query
    parameter rather than the path)."""
    return get_object_or_404(visible_controllers(user), code=code)


# The site-scoped bases carry comments, not docstrings: drf-spectacular describes an operation
# by the first docstring up its view's class tree, so a view without one would show the base's.


class ScopedLookup:
    # The check shared by the site and controller base views: a write (any unsafe method) is
    # for staff and the site's operators; a controller key writes only where
    # `controller_writes` says so (its own site's telemetry, not its configuration).

    controller_writes = False
    write_denied = "Only staff and the site's operators may do this."

    def may_write(self, user: Any, site_pk: int) -> bool:
        return may_operate(user, site_pk, controller_own_site=self.controller_writes)

    def check_may_write(self, request, site_pk: int) -> None:
        if request.method not in SAFE_METHODS and not self.may_write(request.user, site_pk):
            raise PermissionDenied(self.write_denied)


class SiteLookupMixin(ScopedLookup):
    # `self.site` is the URL's site if the caller may see it (else 404), found once, after
    # authentication and throttling and before the handler runs.

    site_kwarg = "site_id"

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.site = get_object_or_404(visible_sites(request.user), code=kwargs[self.site_kwarg])
        self.check_may_write(request, self.site.pk)


class ControllerLookupMixin(ScopedLookup):
    # `self.controller` is the URL's controller if the caller may see it (else 404): staff
    # any, users their sites', a controller key only itself. For a key's own controller nothing
    # is read until the handler asks (the gateway's polls answer from one read).

    controller_kwarg = "controller_id"

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        user, code = request.user, kwargs[self.controller_kwarg]
        self._controller = None
        if is_controller(user):
            if user.controller_code != code:
                raise NotFound()
            self.controller_pk, site_pk = user.controller_pk, user.site_pk
        else:
            self._controller = self._find_controller()
            self.controller_pk, site_pk = self._controller.pk, self._controller.site_id
        self.check_may_write(request, site_pk)

    def _find_controller(self):
        return controller_or_404(self.request.user, self.kwargs[self.controller_kwarg])

    @property
    def controller(self):
        if self._controller is None:
            self._controller = self._find_controller()
        return self._controller


class SiteView(SiteLookupMixin, APIView):
    pass  # the base of the views under a site (`.../{site_id}/...`)


class ControllerView(ControllerLookupMixin, APIView):
    pass  # the base of the views under a controller (`/v1/controllers/{controller_id}/...`)
