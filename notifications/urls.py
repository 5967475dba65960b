"""HTTP routes of the app: the API (api.py), health, and the dashboard (views.py)."""

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
