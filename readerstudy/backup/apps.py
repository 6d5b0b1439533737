from django.apps import AppConfig


class BackupConfig(AppConfig):
    name = "readerstudy.backup"
    label = "backup"
    verbose_name = "Study backup and restore"
