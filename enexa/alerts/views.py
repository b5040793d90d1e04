"""Alert endpoints: the alerts of the caller's sites, and acknowledging one."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from enexa.api.pagination import envelope
from enexa.api.scoping import SiteScopedMixin
from enexa.core.principals import is_staff_user, principal_label
from enexa.core.visibility import may_operate

from . import services
from .choices import AlertState
from .models import Alert
from .serializers import AlertSerializer


class AlertListView(SiteScopedMixin, generics.ListAPIView):
    """`GET /v1/alerts?site=&state=`: the alerts of the sites the caller sees, newest first."""

    serializer_class = AlertSerializer
    pagination_class = envelope("alerts")
    queryset = Alert.objects.select_related("site")

    def get_queryset(self):
        params = self.request.query_params
        return services.filter_alerts(
            super().get_queryset(), site=params.get("site"), state=params.get("state")
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("site", OpenApiTypes.STR, description="A site's id."),
            OpenApiParameter("state", OpenApiTypes.STR, enum=AlertState.values),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class AcknowledgeAlertView(SiteScopedMixin, generics.GenericAPIView):
    """`POST /v1/alerts/{id}/acknowledge`: the alert is seen; it stays until it resolves."""

    serializer_class = AlertSerializer
    queryset = Alert.objects.select_related("site")
    lookup_field = "code"
    lookup_url_kwarg = "alert_id"

    @extend_schema(request=None, responses={200: AlertSerializer})
    def post(self, request, alert_id: str):
        alert = self.get_object()
        allowed = (
            may_operate(request.user, alert.site_id)
            if alert.site_id is not None
            else is_staff_user(request.user)
        )
        if not allowed:
            raise PermissionDenied("Only staff and the site's operators may acknowledge alerts.")
        alert = services.acknowledge(alert, by=principal_label(request.user))
        return Response(AlertSerializer(alert).data)
