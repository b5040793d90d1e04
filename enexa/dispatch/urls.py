"""Routes of enexa.dispatch under /v1/."""

from django.urls import path

from .views import CommandDetailView, SiteCommandsView

urlpatterns = [
    path("sites/<str:site_id>/commands", SiteCommandsView.as_view(), name="site-commands"),
    path("commands/<str:command_id>", CommandDetailView.as_view(), name="command-detail"),
]
