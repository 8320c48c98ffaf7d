"""Top-level URLs: auth, admin, projects.

Every page needs a login but the login page itself (tests/web/test_security.py walks
them all). Of Django's auth views only log in, log out and password change are served:
password reset by e-mail is not (no mail is configured; an administrator resets
passwords in the admin)."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from django.views.generic import RedirectView

from xtalweb.reports.views import plotly_js

urlpatterns = [
    path("", login_required(RedirectView.as_view(pattern_name="project_list", permanent=False))),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password_change/done/", auth_views.PasswordChangeDoneView.as_view(),
         name="password_change_done"),
    path("admin/", admin.site.urls),
    path("projects/", include("xtalweb.projects.urls")),
    path("vendor/plotly.min.js", plotly_js, name="plotly_js"),
]
