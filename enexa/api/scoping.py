"""The site-scoped base viewset: the one place where every queryset is narrowed to the caller."""

from rest_framework import viewsets

from .principals import is_controller, is_staff_user, visible_site_pks


def scope_to_caller(queryset, user, site_field: str):
    """Narrow `queryset` to the sites `user` may see; `site_field` is the ORM path to the Site
    ("" when the model is Site itself)."""
    site_pks = visible_site_pks(user)
    if site_pks is None:
        return queryset
    lookup = f"{site_field}__in" if site_field else "pk__in"
    return queryset.filter(**{lookup: site_pks})


class SiteScopedMixin:
    """Mix into any view with a queryset: another site's object is simply not found (404)."""

    site_field = "site"

    def get_queryset(self):
        return scope_to_caller(super().get_queryset(), self.request.user, self.site_field)


class SiteScopedViewSet(SiteScopedMixin, viewsets.ModelViewSet):
    lookup_field = "code"


def caller_site(request, site_id: str):
    """The site `site_id` if the caller may see it (else 404)."""
    from django.shortcuts import get_object_or_404

    from enexa.registry.models import Site

    return get_object_or_404(scope_to_caller(Site.objects.all(), request.user, ""), code=site_id)


def caller_controller(request, controller_id: str):
    """The controller `controller_id` if the caller may see it (else 404): staff any, users
    their sites', a controller key only itself (not its site's other controllers)."""
    from django.shortcuts import get_object_or_404
    from rest_framework.exceptions import NotFound

    from enexa.registry.models import Controller

    user = request.user
    if is_controller(user) and user.controller_code != controller_id:
        raise NotFound()
    controllers = scope_to_caller(Controller.objects.select_related("site"), user, "site")
    return get_object_or_404(controllers, code=controller_id)


def may_operate(user, site_pk: int, *, controller_own_site: bool = False) -> bool:
    """Whether `user` may act on the site (dispatch, configure, post telemetry): staff, or an
    operator of the site (a viewer only reads). A controller key may only when
    `controller_own_site` and it is its own site: a gateway posts its site's telemetry, but
    commands and configuration are a person's decision."""
    if is_controller(user):
        return controller_own_site and user.site_pk == site_pk
    if is_staff_user(user):
        return True
    if not getattr(user, "is_authenticated", False):
        return False
    from enexa.registry.choices import MemberRole
    from enexa.registry.models import SiteMembership

    return SiteMembership.objects.filter(
        user=user, site_id=site_pk, role=MemberRole.OPERATOR
    ).exists()
