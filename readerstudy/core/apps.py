from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "readerstudy.core"
    label = "core"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from django.urls import register_converter

        from readerstudy.core import checks  # noqa: F401  (registers the deploy checks)
        from readerstudy.core.converters import IdConverter

        # Registered once for every app's urls.py (reading's and results' both use <id:...>).
        register_converter(IdConverter, "id")
