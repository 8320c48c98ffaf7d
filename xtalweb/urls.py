"""Top-level URLs: auth, admin, projects."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from xtalweb.reports.views import plotly_js

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="project_list", permanent=False)),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("projects/", include("xtalweb.projects.urls")),
    path("vendor/plotly.min.js", plotly_js, name="plotly_js"),
]
