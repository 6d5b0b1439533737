from django.urls import path

from readerstudy.results import views

app_name = "results"

urlpatterns = [
    path("", views.index, name="index"),
    path("study/<id:study_id>/", views.study_results, name="study"),
    path("export/<id:export_id>/download", views.download_export, name="download"),
    path("run/<id:run_id>/", views.run_report, name="run"),
    path("run/<id:run_id>/status", views.run_status, name="status"),
    path("run/<id:run_id>/report.html", views.run_report_download, name="report"),
    path("run/<id:run_id>/result.json", views.run_result_download, name="result"),
    path("run/<id:run_id>/figure/<slug:name>.<str:fmt>", views.run_figure, name="figure"),
]
