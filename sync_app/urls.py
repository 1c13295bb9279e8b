from django.urls import path

from sync_app import views
from zepix_admin.core.http import either_slash

urlpatterns = [
    path("sync/", views.sync_page, name="sync"),
    *either_slash("sync/run", views.run_sync_now, "sync-run"),
    *either_slash("sync/<str:plugin_id>/reset", views.reset_failures, "sync-reset"),
    path("backups/", views.backups_page, name="backups"),
    *either_slash("backups/start", views.start_backup, "backup-start"),
    *either_slash("backups/<int:backup_id>/restore", views.restore, "backup-restore"),
    path("trades/", views.trades, name="trades"),
    path("trades/<str:plugin_id>/<int:ticket>/", views.trade_in_admin, name="trade-admin"),
    path("chains/<str:plugin_id>/<str:chain_id>/", views.chain_in_admin, name="chain-admin"),
    *either_slash("api/sync/<str:plugin_id>/batches", views.api_sync_batches, "api-sync-batches"),
    *either_slash("api/sync/<str:plugin_id>/snapshot", views.api_sync_snapshot, "api-sync-snapshot"),
]
