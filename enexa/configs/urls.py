"""Routes of enexa.configs under /v1/."""

from django.urls import path

from . import views

prefix = "controllers/<str:controller_id>/config"

urlpatterns = [
    path(prefix, views.ControllerConfigView.as_view(), name="controller-config"),
    path(
        f"{prefix}/version",
        views.ControllerConfigVersionView.as_view(),
        name="controller-config-version",
    ),
    path(
        f"{prefix}/state", views.ControllerConfigStateView.as_view(), name="controller-config-state"
    ),
    path(
        f"{prefix}/versions",
        views.ControllerConfigVersionsView.as_view(),
        name="controller-config-versions",
    ),
    path(
        f"{prefix}/versions/<int:number>",
        views.ControllerConfigVersionDetailView.as_view(),
        name="controller-config-version-detail",
    ),
    path(
        f"{prefix}/versions/<int:number>/diff",
        views.ControllerConfigVersionDiffView.as_view(),
        name="controller-config-version-diff",
    ),
    path(
        f"{prefix}/versions/<int:number>/restore",
        views.ControllerConfigRestoreView.as_view(),
        name="controller-config-version-restore",
    ),
    path("config/<str:site_id>", views.SiteConfigView.as_view(), name="site-config"),
]
