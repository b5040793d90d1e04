"""Registry endpoints: sites, their equipment, controllers and equipment specs (staff write)."""

from django.db.models import Prefetch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework.decorators import action
from rest_framework.response import Response

from enexa.api.pagination import envelope
from enexa.api.parsers import JSONParser
from enexa.api.permissions import IsStaffOrReadOnly
from enexa.api.scoping import SiteScopedViewSet

from .choices import EquipmentKind
from .filters import ControllerFilter, EquipmentFilter, SiteFilter
from .models import Controller, Equipment, Site
from .serializers import (
    ControllerSerializer,
    EquipmentSerializer,
    EquipmentSpecsSerializer,
    SiteEquipmentSerializer,
    SiteSerializer,
)
from .services import delete_registry_object


def code_parameter(name: str, what: str) -> OpenApiParameter:
    return OpenApiParameter(
        name, OpenApiTypes.STR, OpenApiParameter.PATH, description=f"The {what}'s code."
    )


class RegistryViewSet(SiteScopedViewSet):
    """Everyone authenticated reads within their sites; staff create, update and delete."""

    permission_classes = [IsStaffOrReadOnly]
    parser_classes = [JSONParser]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_destroy(self, instance):
        delete_registry_object(instance)


@extend_schema_view(
    list=extend_schema(summary="Sites the caller may see"),
    retrieve=extend_schema(summary="Site detail", parameters=[code_parameter("site_id", "site")]),
    create=extend_schema(summary="Register a site (staff)"),
    partial_update=extend_schema(
        summary="Update a site (staff)", parameters=[code_parameter("site_id", "site")]
    ),
    destroy=extend_schema(
        summary="Delete a site (staff); 409 while controllers remain",
        parameters=[code_parameter("site_id", "site")],
    ),
)
class SiteViewSet(RegistryViewSet):
    """Sites: operators see those they are members of, staff all of them."""

    queryset = Site.objects.all()
    serializer_class = SiteSerializer
    filterset_class = SiteFilter
    pagination_class = envelope("sites")
    lookup_url_kwarg = "site_id"
    site_field = ""

    @extend_schema(
        summary="The site's equipment, grouped by kind",
        parameters=[code_parameter("site_id", "site")],
        responses=SiteEquipmentSerializer,
        filters=False,
    )
    @action(detail=True, methods=["get"], pagination_class=None, filterset_class=None)
    def equipment(self, request, site_id: str):
        site = self.get_object()
        units = Prefetch("children", queryset=Equipment.objects.select_related("site", "parent"))
        items = list(site.equipment.select_related("site", "parent").prefetch_related(units))
        battery = next((e for e in items if e.kind == EquipmentKind.BATTERY_SYSTEM), None)
        body = {
            "battery": battery,
            "chargers": [e for e in items if e.kind == EquipmentKind.CHARGER],
            "meters": [e for e in items if e.kind == EquipmentKind.METER],
        }
        return Response(SiteEquipmentSerializer(body, context=self.get_serializer_context()).data)


@extend_schema_view(
    list=extend_schema(summary="Controllers of the caller's sites"),
    retrieve=extend_schema(
        summary="Controller detail with its assigned assets",
        parameters=[code_parameter("controller_id", "controller")],
    ),
    create=extend_schema(summary="Pre-register a controller by serial (staff)"),
    partial_update=extend_schema(
        summary="Update a controller (staff)",
        parameters=[code_parameter("controller_id", "controller")],
    ),
    destroy=extend_schema(
        summary="Delete a controller (staff)",
        parameters=[code_parameter("controller_id", "controller")],
    ),
)
class ControllerViewSet(RegistryViewSet):
    """Controllers (site gateways); `state` changes only through provisioning and security."""

    queryset = Controller.objects.select_related("site").prefetch_related("assets")
    serializer_class = ControllerSerializer
    filterset_class = ControllerFilter
    pagination_class = envelope("controllers")
    lookup_url_kwarg = "controller_id"


@extend_schema_view(
    list=extend_schema(summary="Equipment of the caller's sites"),
    retrieve=extend_schema(
        summary="Equipment detail", parameters=[code_parameter("asset_id", "asset")]
    ),
    create=extend_schema(summary="Register equipment with its specs (staff)"),
    partial_update=extend_schema(
        summary="Update equipment or its specs (staff)",
        parameters=[code_parameter("asset_id", "asset")],
    ),
    destroy=extend_schema(
        summary="Delete equipment (staff)", parameters=[code_parameter("asset_id", "asset")]
    ),
)
class EquipmentViewSet(RegistryViewSet):
    """Equipment of the sites with its specifications."""

    queryset = Equipment.objects.select_related("site", "parent")
    serializer_class = EquipmentSerializer
    filterset_class = EquipmentFilter
    pagination_class = envelope("equipment")
    lookup_url_kwarg = "asset_id"

    @extend_schema(
        summary="The asset's specifications",
        parameters=[code_parameter("asset_id", "asset")],
        responses=EquipmentSpecsSerializer,
        filters=False,
    )
    @action(detail=True, methods=["get"], pagination_class=None, filterset_class=None)
    def specs(self, request, asset_id: str):
        return Response(EquipmentSpecsSerializer(self.get_object()).data)
