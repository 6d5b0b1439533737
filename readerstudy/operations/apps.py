from django.apps import AppConfig


class OperationsConfig(AppConfig):
    """Study operations in the browser, for study admins: set-up, import, readers, launch, live progress."""

    name = "readerstudy.operations"
    label = "operations"
