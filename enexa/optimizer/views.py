"""Planning endpoints: a site's prices, its plans, the plan in force and how it is followed."""

from datetime import datetime, timedelta

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from enexa.api.schema import problems
from enexa.api.scoping import SiteView
from enexa.core.errors import InvalidInput
from enexa.core.principals import principal_label
from shared.fields import read_range

from . import services
from .choices import PlanReason
from .serializers import (
    PlanActualSerializer,
    PlanListSerializer,
    PlanReleaseSerializer,
    PlanRequestSerializer,
    PlanSerializer,
    PricesSerializer,
)

# What `GET .../prices` shows without a range: today (UTC) and tomorrow.
DEFAULT_PRICE_DAYS = 2
# The longest range one `GET .../prices` reads.
MAX_PRICE_RANGE = timedelta(days=31)
# The most plans `GET .../plans` lists.
MAX_PLANS_LISTED = 100


def price_range(params) -> tuple[datetime, datetime]:
    """[from, to) of a prices read (RFC 3339), with field errors for bad values."""
    errors: dict[str, list[str]] = {}
    start, end = read_range(params, errors)
    if errors:
        raise InvalidInput("The range is invalid.", errors)
    start = start or timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    end = end or start + timedelta(days=DEFAULT_PRICE_DAYS)
    if end <= start:
        raise InvalidInput("The range is invalid.", {"to": ["Must be after from."]})
    if end - start > MAX_PRICE_RANGE:
        raise InvalidInput("The range is invalid.", {"to": ["At most 31 days after from."]})
    return start, end


class SitePricesView(SiteView):
    """`GET`/`PUT /v1/sites/{site_id}/prices`: import and export prices per slot."""

    write_denied = "Only staff and the site's operators may set prices."

    @extend_schema(
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATETIME, description="Default: today 00:00."),
            OpenApiParameter(
                "to", OpenApiTypes.DATETIME, description="Exclusive; default from + 2 days."
            ),
        ],
        responses={200: PricesSerializer},
    )
    def get(self, request, site_id: str):
        start, end = price_range(request.query_params)
        return Response(services.prices_between(self.site, start, end))

    @extend_schema(request=PricesSerializer, responses={200: PricesSerializer})
    def put(self, request, site_id: str):
        schedule = services.replace_prices(self.site, request.data)
        return Response(schedule.to_dict())


class SitePlansView(SiteView):
    """`GET /v1/sites/{site_id}/plans` (newest first) and `POST` (a new plan, solved now)."""

    write_denied = "Only staff and the site's operators may make plans."

    @extend_schema(
        parameters=[OpenApiParameter("limit", OpenApiTypes.INT, description="At most 100.")],
        responses={200: PlanListSerializer},
    )
    def get(self, request, site_id: str):
        raw = request.query_params.get("limit", "20")
        # ASCII digits only: str.isdigit() also takes superscripts, which int() refuses.
        limit = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 3 else 0
        if not 1 <= limit <= MAX_PLANS_LISTED:
            raise InvalidInput("The limit is invalid.", {"limit": ["Must be 1-100."]})
        plans = services.plans_of(self.site).select_related("site")[:limit]
        return Response({"plans": [services.plan_view(p) for p in plans]})

    @extend_schema(request=PlanRequestSerializer, responses={201: PlanSerializer, **problems(422)})
    def post(self, request, site_id: str):
        body = PlanRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        plan = services.create_plan(
            self.site,
            reason=PlanReason.MANUAL,
            horizon_h=body.validated_data.get("horizon_h"),
            slot_minutes=body.validated_data.get("slot_minutes"),
            dispatch=body.validated_data["dispatch"],
            by=principal_label(request.user),
        )
        return Response(services.plan_view(plan), status=status.HTTP_201_CREATED)


class SitePlanView(SiteView):
    """`GET /v1/sites/{site_id}/plan`: the plan in force (404 when there is none); `DELETE`:
    the optimizer releases the site (back to manual control until a plan is dispatched)."""

    write_denied = "Only staff and the site's operators may release a site from its plan."

    @extend_schema(responses={200: PlanSerializer})
    def get(self, request, site_id: str):
        plan = services.plan_in_force(self.site)
        if plan is None:
            raise NotFound(f"{self.site.code} has no plan in force.")
        return Response(services.plan_view(plan))

    @extend_schema(responses={200: PlanReleaseSerializer})
    def delete(self, request, site_id: str):
        release = services.release_site(self.site, by=principal_label(request.user))
        return Response(services.release_view(release))


class SitePlanActualView(SiteView):
    """`GET /v1/sites/{site_id}/plan/actual`: per slot of the plan in force, planned against
    measured SOC, battery power and grid import."""

    @extend_schema(responses={200: PlanActualSerializer})
    def get(self, request, site_id: str):
        plan = services.plan_in_force(self.site)
        if plan is None:
            raise NotFound(f"{self.site.code} has no plan in force.")
        return Response(
            {"plan_id": plan.code, "site_id": self.site.code, "slots": services.plan_actual(plan)}
        )
