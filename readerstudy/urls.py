from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from readerstudy.logins import throttle_logins
from readerstudy.reading.urls import api_patterns
from readerstudy.views import healthz, home, ping

urlpatterns = [
    path("", home, name="home"),
    path("healthz", healthz, name="healthz"),  # unauthenticated: load balancers and monitoring
    # Both login forms go through the per-address throttle (the admin's before admin.site.urls claims it).
    path("admin/login/", throttle_logins(admin.site.login)),
    path("admin/", admin.site.urls),
    path("accounts/login/", throttle_logins(auth_views.LoginView.as_view()), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # The set-password link of a new reader account (operations' readers page e-mails it; one use).
    path(
        "accounts/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("accounts/reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("reading/", include("readerstudy.reading.urls")),
    path("results/", include("readerstudy.results.urls")),
    path("studies/", include("readerstudy.operations.urls")),
    path("api/ping/", ping, name="ping"),
    path("api/", include(api_patterns)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
]
