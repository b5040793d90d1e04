"""Dispatch endpoints: issue a command for a site, list a site's commands, follow one."""

from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response

from enexa.api.pagination import envelope
from enexa.api.scoping import SiteLookupMixin, SiteScopedMixin
from enexa.core.principals import principal_label

from . import services, tasks
from .models import Command
from .serializers import CommandSerializer, IssueCommandSerializer


class SiteCommandsView(SiteLookupMixin, generics.ListCreateAPIView):
    """`GET`/`POST /v1/sites/{site_id}/commands`."""

    write_denied = "Only staff and the site's operators may dispatch commands."

    serializer_class = CommandSerializer
    pagination_class = envelope("commands")
    queryset = Command.objects.select_related("site")

    def get_queryset(self):
        return super().get_queryset().filter(site=self.site)

    @extend_schema(
        request=IssueCommandSerializer, responses={202: CommandSerializer, 200: CommandSerializer}
    )
    def post(self, request, site_id: str):
        body = IssueCommandSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        command, created = services.issue_command(
            site=self.site,
            command=body.validated_data["command"],
            params=body.validated_data["params"],
            valid_until=body.validated_data.get("valid_until"),
            command_id=body.validated_data.get("command_id")
            or request.headers.get("Idempotency-Key"),
            created_by=principal_label(request.user),
        )
        if created:
            # Stored and answered at once; the worker delivers it once the row is committed.
            tasks.deliver_command.delay_on_commit(command.command_id)
        return Response(
            CommandSerializer(command).data,
            status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
        )


class CommandDetailView(SiteScopedMixin, generics.RetrieveAPIView):
    """`GET /v1/commands/{command_id}`: the last known status, refreshed from Amperio."""

    serializer_class = CommandSerializer
    queryset = Command.objects.select_related("site")
    lookup_field = "command_id"

    def get_object(self):
        return services.refresh_status(super().get_object())
