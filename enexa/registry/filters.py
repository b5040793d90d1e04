"""Query-string filters of the registry lists (?site_id=, ?kind=, ?state=, ?q=)."""

import django_filters
from django.db.models import Q

from .choices import ControllerState, EquipmentKind
from .models import Controller, Equipment, Site


def search(queryset, fields: list[str], value: str):
    query = Q()
    for field in fields:
        query |= Q(**{f"{field}__icontains": value})
    return queryset.filter(query)


class SiteFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="filter_q", label="Code, name or address contains")
    timezone = django_filters.CharFilter()

    class Meta:
        model = Site
        fields = ["q", "timezone"]

    def filter_q(self, queryset, name, value):
        return search(queryset, ["code", "name", "address"], value)


class ControllerFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="filter_q", label="Code, serial or model contains")
    site_id = django_filters.CharFilter(field_name="site__code", label="Site code")
    state = django_filters.MultipleChoiceFilter(choices=ControllerState.choices)
    model = django_filters.CharFilter()
    serial = django_filters.CharFilter()

    class Meta:
        model = Controller
        fields = ["q", "site_id", "state", "model", "serial"]

    def filter_q(self, queryset, name, value):
        return search(queryset, ["code", "serial", "model"], value)


class EquipmentFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="filter_q", label="Code, name, model or serial contains")
    site_id = django_filters.CharFilter(field_name="site__code", label="Site code")
    kind = django_filters.MultipleChoiceFilter(choices=EquipmentKind.choices)
    parent_id = django_filters.CharFilter(field_name="parent__code", label="Battery system code")

    class Meta:
        model = Equipment
        fields = ["q", "site_id", "kind", "parent_id"]

    def filter_q(self, queryset, name, value):
        return search(queryset, ["code", "name", "model", "serial"], value)
