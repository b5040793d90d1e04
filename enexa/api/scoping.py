"""The site-scoped base viewset: the one place where every queryset is narrowed to the caller."""
from rest_framework import viewsets

from .principals import visible_site_pks


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
