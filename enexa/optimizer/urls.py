"""Routes of enexa.optimizer under /v1/."""

from django.urls import path

from . import views

urlpatterns = [
    path("sites/<str:site_id>/prices", views.SitePricesView.as_view(), name="site-prices"),
    path("sites/<str:site_id>/plans", views.SitePlansView.as_view(), name="site-plans"),
    path("sites/<str:site_id>/plan", views.SitePlanView.as_view(), name="site-plan"),
    path(
        "sites/<str:site_id>/plan/actual",
        views.SitePlanActualView.as_view(),
        name="site-plan-actual",
    ),
]
