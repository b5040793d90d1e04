"""The site-visibility rules: which sites and controllers a caller sees, and who may act on a
site. enexa.api.scoping applies them to every site-scoped view."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from enexa.registry.choices import MemberRole
from enexa.registry.models import Controller, Site, SiteMembership

from .principals import is_controller, is_staff_user


def visible_site_pks(user: Any) -> set[int] | None:
    """The primary keys of the sites `user` may see; None means every site (staff)."""
    if is_controller(user):
        return {user.site_pk}
    if not user or not user.is_authenticated:
        return set()
    if user.is_staff:
        return None
    return set(SiteMembership.objects.filter(user=user).values_list("site_id", flat=True))


def scope_to_caller(queryset: QuerySet, user: Any, site_field: str) -> QuerySet:
    """Narrow `queryset` to the sites `user` may see; `site_field` is the ORM path to the Site
    ("" when the model is Site itself)."""
    site_pks = visible_site_pks(user)
    if site_pks is None:
        return queryset
    lookup = f"{site_field}__in" if site_field else "pk__in"
    return queryset.filter(**{lookup: site_pks})


def visible_sites(user: Any) -> QuerySet[Site]:
    return scope_to_caller(Site.objects.all(), user, "")


def visible_controllers(user: Any) -> QuerySet[Controller]:
    """Staff see every controller, users their sites', a controller key only itself (not its
    site's other controllers)."""
    controllers = Controller.objects.select_related("site")
    if is_controller(user):
        return controllers.filter(pk=user.controller_pk)
    return scope_to_caller(controllers, user, "site")


def may_operate(user: Any, site_pk: int, *, controller_own_site: bool = False) -> bool:
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
    return SiteMembership.objects.filter(
        user=user, site_id=site_pk, role=MemberRole.OPERATOR
    ).exists()
