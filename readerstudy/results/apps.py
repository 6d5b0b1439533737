from django.apps import AppConfig


class ResultsConfig(AppConfig):
    name = "readerstudy.results"
    label = "results"
    verbose_name = "Results"
