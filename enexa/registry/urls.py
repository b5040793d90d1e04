"""Routes of enexa.registry under /v1/ (the contract's paths, no trailing slashes)."""

from django.urls import path

from .views import ControllerViewSet, EquipmentViewSet, SiteViewSet

COLLECTION = {"get": "list", "post": "create"}
ITEM = {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}

urlpatterns = [
    path("sites", SiteViewSet.as_view(COLLECTION), name="site-list"),
    path("sites/<str:site_id>", SiteViewSet.as_view(ITEM), name="site-detail"),
    path(
        "sites/<str:site_id>/equipment",
        SiteViewSet.as_view({"get": "equipment"}),
        name="site-equipment",
    ),
    path("controllers", ControllerViewSet.as_view(COLLECTION), name="controller-list"),
    path(
        "controllers/<str:controller_id>", ControllerViewSet.as_view(ITEM), name="controller-detail"
    ),
    path("equipment", EquipmentViewSet.as_view(COLLECTION), name="equipment-list"),
    path("equipment/<str:asset_id>", EquipmentViewSet.as_view(ITEM), name="equipment-detail"),
    path(
        "equipment/<str:asset_id>/specs",
        EquipmentViewSet.as_view({"get": "specs"}),
        name="equipment-specs",
    ),
]
