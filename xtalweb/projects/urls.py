from django.urls import path

from . import views

urlpatterns = [
    path("", views.project_list, name="project_list"),
    path("new/", views.project_new, name="project_new"),
    path("<int:pk>/", views.project_detail, name="project_detail"),
    path("<int:pk>/status.json", views.project_status, name="project_status"),
    path("<int:pk>/runs/<int:run_id>/log", views.stagerun_log, name="stagerun_log"),
]
