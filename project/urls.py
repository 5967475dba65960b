from django.contrib import admin
from django.urls import include, path

from notifications.forms import RateLimitedAdminLogin

# The admin's login is a login form too: the same limits, counted together with the dashboard's.
admin.site.login_form = RateLimitedAdminLogin

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("notifications.urls")),
]
