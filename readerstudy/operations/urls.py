from django.urls import path

from readerstudy.operations import configure, imports, overview, planning, progress, readers, views

app_name = "operations"

# <id:...> is core.converters.IdConverter, registered by CoreConfig.ready().
urlpatterns = [
    path("", views.study_list, name="studies"),
    path("<id:study_id>/", overview.overview, name="overview"),
    path("<id:study_id>/launch/", overview.launch, name="launch"),
    path("<id:study_id>/interim/", overview.interim, name="interim"),
    path("<id:study_id>/precompute/", overview.precompute, name="precompute"),
    path("<id:study_id>/push-seg/", overview.push_seg, name="push_seg"),
    path("<id:study_id>/configure/", configure.configure, name="configure"),
    path("<id:study_id>/planning/", planning.planning, name="planning"),
    path("<id:study_id>/readers/", readers.readers, name="readers"),
    path("<id:study_id>/readers/<id:membership_id>/", readers.update_reader, name="reader"),
    path("<id:study_id>/readers/<id:membership_id>/remove/", readers.remove_reader, name="remove_reader"),
    path("<id:study_id>/progress/", progress.progress_page, name="progress"),
    path("<id:study_id>/progress.json", progress.progress_json, name="progress_json"),
    path("<id:study_id>/progress.csv", progress.progress_csv, name="progress_csv"),
    path("<id:study_id>/import/", imports.import_page, name="import"),
    path("<id:study_id>/import/runs/<id:run_id>/", imports.import_run, name="import_run"),
    path("<id:study_id>/import/runs/<id:run_id>.json", imports.import_run_json, name="import_run_json"),
]
