from django.urls import path

from sync_app import views

urlpatterns = [
    path("sync/", views.sync_page, name="sync"),
    path("sync/run", views.run_sync_now, name="sync-run"),
    path("sync/<str:plugin_id>/reset", views.reset_failures, name="sync-reset"),
    path("backups/", views.backups_page, name="backups"),
    path("backups/start", views.start_backup, name="backup-start"),
    path("backups/<int:backup_id>/restore", views.restore, name="backup-restore"),
    path("trades/", views.trades, name="trades"),
    path("trades/<str:plugin_id>/<int:ticket>/", views.trade_in_admin, name="trade-admin"),
    path("chains/<str:plugin_id>/<str:chain_id>/", views.chain_in_admin, name="chain-admin"),
]
