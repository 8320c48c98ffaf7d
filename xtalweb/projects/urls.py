from django.urls import path

from xtalweb.reports import views as report_views

from . import (
    cluster_views,
    downloads,
    history,
    live,
    review_views,
    status,
    steering_views,
    viewer_views,
    views,
)

urlpatterns = [
    path("", views.project_list, name="project_list"),
    path("new/", views.project_new, name="project_new"),
    path("<int:pk>/", views.project_detail, name="project_detail"),
    path("<int:pk>/status.json", status.project_status, name="project_status"),
    path("<int:pk>/history/", history.project_history, name="project_history"),
    path("<int:pk>/compare/", history.compare_runs, name="compare_runs"),
    path("<int:pk>/datasets/", history.project_datasets, name="project_datasets"),
    path("<int:pk>/runs/new/<slug:stage>/", views.stagerun_new, name="stagerun_new"),
    path("<int:pk>/runs/<int:run_id>/retry", views.stagerun_retry, name="stagerun_retry"),
    path("<int:pk>/runs/<int:run_id>/log", live.stagerun_log, name="stagerun_log"),
    path("<int:pk>/runs/<int:run_id>/log.json", live.stagerun_log_json, name="stagerun_log_json"),
    path("<int:pk>/runs/<int:run_id>/files/<str:name>", downloads.stagerun_file, name="stagerun_file"),
    path("<int:pk>/runs/<int:run_id>/drop", views.scale_drop, name="scale_drop"),
    path("<int:pk>/runs/<int:run_id>/merge-at-d-min", steering_views.merge_at_d_min, name="merge_at_d_min"),
    path("<int:pk>/runs/<int:run_id>/drop-delta-cc-half", steering_views.delta_cc_half_drop,
         name="delta_cc_half_drop"),
    path("<int:pk>/runs/<int:run_id>/cluster-merge", cluster_views.cluster_merge, name="cluster_merge"),
    path("<int:pk>/runs/<int:run_id>/datasets/", history.run_datasets_view, name="run_datasets"),
    path("<int:pk>/runs/<int:run_id>/", report_views.stagerun_report, name="stagerun_report"),
    path("<int:pk>/runs/<int:run_id>/report.json", report_views.stagerun_report_json, name="stagerun_report_json"),
    # lab-group review (issue 15)
    path("<int:pk>/notes/", review_views.note_add, name="note_add"),
    path("<int:pk>/flags/", review_views.flag_set, name="flag_set"),
    path("<int:pk>/shares/", review_views.share_add, name="share_add"),
    path("<int:pk>/shares/<int:share_id>/remove", review_views.share_remove, name="share_remove"),
    path("<int:pk>/activity/", review_views.project_activity, name="project_activity"),
    path("<int:pk>/runs/<int:run_id>/approve", review_views.approve_run, name="approve_run"),
    path("<int:pk>/runs/<int:run_id>/export-for-bundle", review_views.run_export, name="run_export_for_bundle"),
    path("<int:pk>/runs/<int:run_id>/bundle.zip", review_views.bundle_download, name="bundle_download"),
    # image viewer (issue 16)
    path("<int:pk>/sweeps/<int:sweep_id>/viewer/", viewer_views.sweep_viewer, name="sweep_viewer"),
    path("<int:pk>/sweeps/<int:sweep_id>/viewer/image.png", viewer_views.viewer_image, name="viewer_image"),
    path("<int:pk>/sweeps/<int:sweep_id>/viewer/overlay.json", viewer_views.viewer_overlay, name="viewer_overlay"),
    path("<int:pk>/sweeps/<int:sweep_id>/viewer/pixel.json", viewer_views.viewer_pixel, name="viewer_pixel"),
]
