from django.urls import path

from config_app import views

urlpatterns = [
    path("config/", views.config_index, name="config"),
    path("config/stream", views.event_stream, name="config-stream"),
    path("config/<str:scope>/", views.scope_page, name="config-scope"),
    path("config/<str:scope>/row", views.save_row, name="config-row"),
    path("config/<str:scope>/history/", views.history, name="config-history"),
    path("config/<str:scope>/rollback/<int:version>/", views.rollback, name="config-rollback"),
    path("config/<str:scope>/undo/<int:version>/", views.undo, name="config-undo"),
    path("api/config/<str:scope>", views.api_config, name="api-config"),
    path("api/config/<str:scope>/ack", views.api_ack, name="api-config-ack"),
    path("api/config/<str:scope>/subscribers", views.api_subscribers, name="api-config-subscribers"),
]
