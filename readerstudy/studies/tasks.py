"""Case import as a background task: started from the import page, its ImportRun row shows the progress.

The task only finds its run and hands it to ``studies.importing.run_import``, which calls actions only.
"""

from django_tasks import task

from readerstudy.studies.importing import run_import
from readerstudy.studies.models import ImportRun


@task()
def import_task(*, run_id: int) -> None:
    run = ImportRun.objects.select_related("study", "created_by").get(pk=run_id)
    if run.finished:  # a task delivered twice imports once
        return
    run_import(run)
