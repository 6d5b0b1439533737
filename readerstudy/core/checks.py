"""Deploy checks (``manage.py check --deploy``) for what Django's own cannot know about this project.

Both are warnings, not errors: the demo runs exactly so (DEBUG on), and a small trial may choose to. With DEBUG off
they say what a real study's server needs (README, Production topology).
"""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Warning, register
from django.utils.module_loading import import_string

TAG = "readerstudy"


@register(TAG, deploy=True)
def check_tasks_backend(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    from django_tasks.backends.immediate import ImmediateBackend

    if settings.DEBUG:
        return []
    backend = str(settings.TASKS["default"]["BACKEND"])
    try:
        immediate = issubclass(import_string(backend), ImmediateBackend)
    except ImportError:
        return []  # django_tasks' own check reports a backend that does not import
    if not immediate:
        return []
    return [
        Warning(
            "background work (inference!) would run inside web requests: set TASKS_BACKEND=database and run task "
            "workers",
            hint="TASKS_BACKEND=database, then `manage.py task_worker --queue-name default` beside the web server and "
            "`manage.py task_worker --queue-name inference --device cuda` on GPU machines (README, Production "
            "topology).",
            id="readerstudy.W001",
        )
    ]


@register(TAG, deploy=True)
def check_database(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    if settings.DEBUG:
        return []
    return [
        Warning(
            f"database {alias!r} is SQLite while DEBUG is off: one writer at a time, no task workers on other "
            "machines, no row locks",
            hint="Set DATABASE_URL=postgres://USER@HOST:5432/NAME (README, PostgreSQL).",
            id="readerstudy.W002",
        )
        for alias, database in settings.DATABASES.items()
        if database["ENGINE"] == "django.db.backends.sqlite3"
    ]
