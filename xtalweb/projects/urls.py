from django.urls import path

from xtalweb.reports import views as report_views

from . import cluster_views, downloads, history, steering_views, views

urlpatterns = [
    path("", views.project_list, name="project_list"),
    path("new/", views.project_new, name="project_new"),
    path("<int:pk>/", views.project_detail, name="project_detail"),
    path("<int:pk>/status.json", views.project_status, name="project_status"),
    path("<int:pk>/history/", history.project_history, name="project_history"),
    path("<int:pk>/compare/", history.compare_runs, name="compare_runs"),
    path("<int:pk>/datasets/", history.project_datasets, name="project_datasets"),
    path("<int:pk>/runs/new/<slug:stage>/", views.stagerun_new, name="stagerun_new"),
    path("<int:pk>/runs/<int:run_id>/retry", views.stagerun_retry, name="stagerun_retry"),
    path("<int:pk>/runs/<int:run_id>/log", views.stagerun_log, name="stagerun_log"),
    path("<int:pk>/runs/<int:run_id>/files/<str:name>", downloads.stagerun_file, name="stagerun_file"),
    path("<int:pk>/runs/<int:run_id>/drop", views.scale_drop, name="scale_drop"),
    path("<int:pk>/runs/<int:run_id>/merge-at-d-min", steering_views.merge_at_d_min, name="merge_at_d_min"),
    path("<int:pk>/runs/<int:run_id>/drop-delta-cc-half", steering_views.delta_cc_half_drop,
         name="delta_cc_half_drop"),
    path("<int:pk>/runs/<int:run_id>/cluster-merge", cluster_views.cluster_merge, name="cluster_merge"),
    path("<int:pk>/runs/<int:run_id>/datasets/", history.run_datasets_view, name="run_datasets"),
    path("<int:pk>/runs/<int:run_id>/", report_views.stagerun_report, name="stagerun_report"),
    path("<int:pk>/runs/<int:run_id>/report.json", report_views.stagerun_report_json, name="stagerun_report_json"),
]
