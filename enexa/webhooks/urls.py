"""Routes of enexa.webhooks under /v1/."""

from django.urls import path

from .views import (
    RetryDeadLettersView,
    RetryDeliveryView,
    WebhookDeliveriesView,
    WebhookDetailView,
    WebhookListView,
)

urlpatterns = [
    path("webhooks", WebhookListView.as_view(), name="webhooks"),
    path("webhooks/<str:webhook_id>", WebhookDetailView.as_view(), name="webhook-detail"),
    path(
        "webhooks/<str:webhook_id>/deliveries",
        WebhookDeliveriesView.as_view(),
        name="webhook-deliveries",
    ),
    path(
        "webhooks/<str:webhook_id>/deliveries/retry",
        RetryDeadLettersView.as_view(),
        name="webhook-dead-letters-retry",
    ),
    path(
        "webhooks/<str:webhook_id>/deliveries/<str:delivery_id>/retry",
        RetryDeliveryView.as_view(),
        name="webhook-delivery-retry",
    ),
]
