from django.contrib import admin
from django.urls import include, path

from shop import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("notifications/", include("notifications.urls")),
    path("orders/", views.place_order),
    path("", views.home),
]
