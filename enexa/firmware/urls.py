"""Routes of enexa.firmware under /v1/."""

from django.urls import path

from . import views

urlpatterns = [
    # Fixed paths before `firmware/<version>`: "latest" and "outdated" are not versions.
    path("firmware/latest", views.LatestFirmwareView.as_view(), name="firmware-latest"),
    path("firmware/outdated", views.OutdatedControllersView.as_view(), name="firmware-outdated"),
    path("firmware", views.FirmwareReleasesView.as_view(), name="firmware-releases"),
    path("firmware/<str:version>", views.FirmwareReleaseView.as_view(), name="firmware-release"),
    path(
        "firmware/<str:version>/rollout",
        views.FirmwareRolloutView.as_view(),
        name="firmware-rollout",
    ),
    path(
        "controllers/<str:controller_id>/firmware",
        views.ControllerFirmwareView.as_view(),
        name="controller-firmware",
    ),
]
