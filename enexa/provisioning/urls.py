"""Routes of enexa.provisioning under /v1/."""

from django.urls import path

from . import views

urlpatterns = [
    path("provisioning/register", views.RegisterView.as_view(), name="provisioning-register"),
    path(
        "provisioning/initial-config",
        views.InitialConfigView.as_view(),
        name="provisioning-initial-config",
    ),
    path("provisioning/activate", views.ActivateView.as_view(), name="provisioning-activate"),
    path(
        "sites/<str:site_id>/enrollment-tokens",
        views.EnrollmentTokenView.as_view(),
        name="site-enrollment-tokens",
    ),
    path(
        "controllers/<str:controller_id>/api-keys/rotate",
        views.RotateApiKeyView.as_view(),
        name="controller-api-keys-rotate",
    ),
    path(
        "controllers/<str:controller_id>/api-keys/revoke",
        views.RevokeApiKeysView.as_view(),
        name="controller-api-keys-revoke",
    ),
    path(
        "controllers/<str:controller_id>/access",
        views.ControllerAccessView.as_view(),
        name="controller-access",
    ),
    path(
        "controllers/<str:controller_id>/state",
        views.ControllerStateView.as_view(),
        name="controller-state",
    ),
]
