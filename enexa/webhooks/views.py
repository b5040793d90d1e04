"""Webhook endpoints: subscribe (the secret shown once), read, change and delete an endpoint,
its delivery log, and a manual retry of one delivery or of many dead letters. A caller sees
its own endpoints (staff every one); a controller's key none."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response

from enexa.api.pagination import envelope

from . import services
from .models import WebhookDelivery
from .serializers import (
    BulkRetriedSerializer,
    BulkRetrySerializer,
    WebhookCreatedSerializer,
    WebhookDeliverySerializer,
    WebhookSerializer,
    WebhookSubscriptionSerializer,
)


class OwnWebhooksMixin:
    # Another caller's endpoint is simply not found (404), as another site's resource is.

    lookup_field = "code"
    lookup_url_kwarg = "webhook_id"

    def get_queryset(self):
        return services.visible_webhooks(self.request.user)


class WebhookListView(OwnWebhooksMixin, generics.ListAPIView):
    """`GET`/`POST /v1/webhooks`: the caller's endpoints; subscribe a new one."""

    serializer_class = WebhookSerializer
    pagination_class = envelope("webhooks")

    @extend_schema(request=WebhookSubscriptionSerializer, responses={201: WebhookCreatedSerializer})
    def post(self, request):
        body = WebhookSubscriptionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        webhook, secret = services.create_webhook(
            owner=request.user,
            url=body.validated_data["url"],
            events=body.validated_data["events"],
            site_codes=body.validated_data.get("sites"),
        )
        data = WebhookCreatedSerializer(webhook, context={"secret": secret}).data
        return Response(data, status=status.HTTP_201_CREATED)


class WebhookDetailView(OwnWebhooksMixin, generics.RetrieveDestroyAPIView):
    """`GET`/`PATCH`/`DELETE /v1/webhooks/{id}`: one endpoint (never its secret)."""

    serializer_class = WebhookSerializer

    @extend_schema(request=WebhookSubscriptionSerializer, responses={200: WebhookSerializer})
    def patch(self, request, webhook_id: str):
        webhook = self.get_object()
        body = WebhookSubscriptionSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        webhook = services.update_webhook(webhook, user=request.user, changes=body.validated_data)
        return Response(WebhookSerializer(webhook).data)

    def perform_destroy(self, instance):
        services.delete_webhook(instance, user=self.request.user)


class WebhookDeliveriesView(OwnWebhooksMixin, generics.ListAPIView):
    """`GET /v1/webhooks/{id}/deliveries`: the endpoint's deliveries, newest first, each with
    every attempt (time, status code, error, duration)."""

    serializer_class = WebhookDeliverySerializer
    pagination_class = envelope("deliveries")

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular reads the model only
            return WebhookDelivery.objects.none()
        webhook = get_object_or_404(super().get_queryset(), code=self.kwargs["webhook_id"])
        return (
            WebhookDelivery.objects.filter(webhook=webhook)
            .select_related("site")
            .prefetch_related("attempt_log")
        )


class RetryDeliveryView(OwnWebhooksMixin, generics.GenericAPIView):
    """`POST /v1/webhooks/{id}/deliveries/{delivery_id}/retry`: try a delivery again now."""

    serializer_class = WebhookDeliverySerializer

    @extend_schema(request=None, responses={202: WebhookDeliverySerializer})
    def post(self, request, webhook_id: str, delivery_id: str):
        webhook = self.get_object()
        delivery = get_object_or_404(WebhookDelivery, webhook=webhook, code=delivery_id)
        delivery = services.retry_delivery(delivery, user=request.user)
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class RetryDeadLettersView(OwnWebhooksMixin, generics.GenericAPIView):
    """`POST /v1/webhooks/{id}/deliveries/retry`: give every dead letter of the endpoint (or
    those the body chooses) one more attempt, on the worker; answers how many."""

    serializer_class = BulkRetrySerializer

    # Its own operationId: the generated one is the single retry's, which must not change.
    @extend_schema(
        operation_id="webhooks_dead_letters_retry",
        request=BulkRetrySerializer,
        responses={202: BulkRetriedSerializer},
    )
    def post(self, request, webhook_id: str):
        webhook = self.get_object()
        body = BulkRetrySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        chosen = body.validated_data
        done = services.retry_dead_letters(
            WebhookDelivery.objects.filter(webhook=webhook),
            user=request.user,
            codes=chosen.get("ids"),
            start=chosen.get("from"),
            end=chosen.get("to"),
        )
        return Response(BulkRetriedSerializer(done).data, status=status.HTTP_202_ACCEPTED)
