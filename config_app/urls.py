from django.urls import path

from config_app import views
from zepix_admin.core.http import either_slash

urlpatterns = [
    path("config/", views.config_index, name="config"),
    path("config/stream", views.event_stream, name="config-stream"),
    path("config/<str:scope>/", views.scope_page, name="config-scope"),
    *either_slash("config/<str:scope>/row", views.save_row, "config-row"),
    path("config/<str:scope>/history/", views.history, name="config-history"),
    *either_slash("config/<str:scope>/rollback/<int:version>/", views.rollback, "config-rollback"),
    *either_slash("config/<str:scope>/undo/<int:version>/", views.undo, "config-undo"),
    *either_slash("api/config/<str:scope>", views.api_config, "api-config"),
    *either_slash("api/config/<str:scope>/ack", views.api_ack, "api-config-ack"),
    path("api/config/<str:scope>/subscribers", views.api_subscribers, name="api-config-subscribers"),
]
