from host.settings import *  # noqa: F403

ROOT_URLCONF = "host.urls_without_notifications"
INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "ninja"]  # noqa: F405
