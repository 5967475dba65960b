"""The dashboard's pages and the small JSON endpoints its scripts poll."""

from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import URLPattern, URLResolver, path
from django.views.generic import RedirectView

from . import away_views, views

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.home, name="home"),
    # Browsers ask for /favicon.ico on pages without an icon link (the admin's, a JSON reply).
    path("favicon.ico", RedirectView.as_view(url=static("notifications/favicon.svg"), permanent=True)),
    path("login/", views.LoginView.as_view(), name="login"),
    # Django's LogoutView accepts POST only: a link or a prefetch cannot log anyone out.
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("inbox/", views.inbox, name="inbox"),
    path("inbox/items", views.inbox_items, name="inbox-items"),
    path("inbox/read", views.inbox_read, name="inbox-read"),
    path("topics/", views.topics, name="topics"),
    path("compose/", views.compose, name="compose"),
    path("ops/", views.ops_page, name="ops"),
    path("ops/data", views.ops_data, name="ops-data"),
    path("preferences/", away_views.preferences, name="preferences"),
    path("unsubscribe/", away_views.unsubscribe, name="unsubscribe"),
    path("action/", away_views.action, name="action"),
]
