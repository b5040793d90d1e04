"""Routes of enexa.dashboard under /app/ (namespace dashboard)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("", views.fleet, name="fleet"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", views.PasswordChangeView.as_view(), name="password_change"),
    path("password/done/", views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("sites/<str:site_id>/", views.site_page, name="site"),
    path("sites/<str:site_id>/live", views.site_live, name="site-live"),
    path("sites/<str:site_id>/chart", views.chart_data, name="site-chart"),
    path("sites/<str:site_id>/export.csv", views.export_csv, name="site-export"),
    path("sites/<str:site_id>/commands", views.dispatch, name="site-dispatch"),
]
