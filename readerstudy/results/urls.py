from django.urls import path

from readerstudy.results import views

app_name = "results"

urlpatterns = [
    path("", views.index, name="index"),
    path("study/<int:study_id>/", views.study_results, name="study"),
    path("export/<int:export_id>/download", views.download_export, name="download"),
    path("run/<int:run_id>/", views.run_report, name="run"),
    path("run/<int:run_id>/status", views.run_status, name="status"),
    path("run/<int:run_id>/report.html", views.run_report_download, name="report"),
    path("run/<int:run_id>/figure/<slug:name>.<str:fmt>", views.run_figure, name="figure"),
]
