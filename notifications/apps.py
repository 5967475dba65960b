from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, conf, db  # noqa: F401 (importing checks registers them)

        conf.apply_defaults()
        db.install()
