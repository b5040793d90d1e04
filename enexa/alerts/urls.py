"""Routes of enexa.alerts under /v1/."""

from django.urls import path

from .views import AcknowledgeAlertView, AlertListView

urlpatterns = [
    path("alerts", AlertListView.as_view(), name="alerts"),
    path(
        "alerts/<str:alert_id>/acknowledge",
        AcknowledgeAlertView.as_view(),
        name="alert-acknowledge",
    ),
]
