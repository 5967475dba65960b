"""HTTP routes of the app: the API, health and metrics (api_urls.py), and the dashboard (web_urls.py)."""

from django.urls import include, path

urlpatterns = [
    path("", include("notifications.api_urls")),
    path("", include("notifications.web_urls")),
]
