from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from zepix_admin import views
from zepix_admin.core.http import either_slash

urlpatterns = [
    path("", views.overview, name="overview"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics, name="metrics"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("alerts/", views.alert_list, name="alerts"),
    *either_slash("alerts/<int:alert_id>/acknowledge", views.acknowledge_alert, "alert-acknowledge"),
    *either_slash("alerts/<int:alert_id>/snooze", views.snooze_alert, "alert-snooze"),
    path("audit/", views.audit_log, name="audit"),
    path("charts/", views.charts_page, name="charts"),
    path("", include("config_app.urls")),
    path("", include("sync_app.urls")),
    path("admin/", admin.site.urls),
]

handler400 = "zepix_admin.views.bad_request"
handler403 = "zepix_admin.views.permission_denied"
handler404 = "zepix_admin.views.page_not_found"
handler500 = "zepix_admin.views.server_error"
