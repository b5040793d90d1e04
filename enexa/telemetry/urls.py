"""Routes of enexa.telemetry under /v1/."""

from django.urls import path

from . import views

urlpatterns = [
    path("telemetry", views.TelemetryIngestView.as_view(), name="telemetry"),
    path("status", views.StatusView.as_view(), name="status"),
    path("events", views.EventIngestView.as_view(), name="events"),
    path("sites/<str:site_id>/telemetry", views.SiteTelemetryView.as_view(), name="site-telemetry"),
    path(
        "sites/<str:site_id>/telemetry/latest",
        views.SiteTelemetryLatestView.as_view(),
        name="site-telemetry-latest",
    ),
    path("sites/<str:site_id>/status", views.SiteStatusView.as_view(), name="site-status"),
    path("sites/<str:site_id>/events", views.SiteEventsView.as_view(), name="site-events"),
    path("sites/<str:site_id>/outages", views.SiteOutagesView.as_view(), name="site-outages"),
    path("sites/<str:site_id>/energy", views.SiteEnergyView.as_view(), name="site-energy"),
    path(
        "sites/<str:site_id>/availability",
        views.SiteAvailabilityView.as_view(),
        name="site-availability",
    ),
]
