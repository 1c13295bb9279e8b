import sqlite3

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from plugins_app import plugins, registry
from plugins_app.plugin_apps import models_for
from sync_app import scheduler, shipping, sync, tasks, trade_search
from sync_app.backup import BackupError, restore_backup
from sync_app.models import Backup, BackupRun, SyncRun
from zepix_admin.core import audit, worker
from zepix_admin.core.access import ADMIN, OPERATOR, PLUGIN_HOST, actor_name, may_ship, role_required
from zepix_admin.core.api import api_endpoint
from zepix_admin.core.errors import Invalid
from zepix_admin.core.exports import EXPORT_BLOCK_ROWS, csv_download
from zepix_admin.core.http import AuthenticatedHttpRequest, render_page
from zepix_admin.core.limits import without_statement_time_limit


def sync_health_with_databases() -> dict:
    """The sync's health, each plugin with what is wrong with its database (the page names it)."""
    report = sync.health()
    for plugin_id, entry in report["plugins"].items():
        problem = plugins.database_problem(plugin_id)
        entry["database_problem"] = f"{problem}. {plugins.repair_hint(plugin_id, problem)}" if problem else ""
    return report


def sync_state_context(notice: str = "", *, asked: bool = False) -> dict:
    """A page shows the state as it finds it (its next refresh sees more); right after the request
    asked for a sync (``asked``), a task a worker has in hand is looked for again (tasks.in_flight)."""
    runs = list(SyncRun.objects.all()[:20])
    running = any(run.running_now for run in runs[:3])
    queued = tasks.manual_pending(tasks.MANUAL_SYNC, in_hand_seconds=None if asked else 0)
    return {
        "health": sync_health_with_databases(),
        "runs": runs,
        "notice": notice,
        "sync_busy": "Sync running…" if running else "Sync queued…" if queued else "",
        "schedules": scheduler.schedule_status(),
    }


@require_GET
def sync_page(request: AuthenticatedHttpRequest):
    return render_page(request, "sync/sync.html", sync_state_context(), fragment="state")


@require_POST
@role_required(OPERATOR)
def run_sync_now(request: AuthenticatedHttpRequest):
    plugin_id = request.POST.get("plugin") or None
    if plugin_id:
        plugins.check_declared(plugin_id)
    audit.record_request(request, "sync.run", plugin_id or "all plugins")
    if tasks.request_manual_sync(actor_name(request.user), plugin_id):
        notice = worker.queued_message("Sync")
    else:
        notice = "A sync asked for by hand is already queued or running; this request joins it."
    if request.htmx:
        return sync_page_state(request, notice, asked=True)
    messages.info(request, notice)
    return redirect("sync")


def sync_page_state(request, notice: str = "", *, asked: bool = False):
    return render(request, "sync/sync.html#state", sync_state_context(notice, asked=asked))


@require_POST
@role_required(OPERATOR)
def reset_failures(request: AuthenticatedHttpRequest, plugin_id: str):
    sync.reset_failures(plugin_id)
    audit.record_request(request, "sync.reset_failures", plugin_id)
    return sync_page_state(request) if request.htmx else redirect("sync")


def backups_context(notice: str = "", *, asked: bool = False) -> dict:
    """``asked``: as for sync_state_context."""
    runs = list(BackupRun.objects.all()[:10])
    running = any(run.running_now for run in runs[:2])
    queued = tasks.manual_pending(tasks.MANUAL_BACKUP, in_hand_seconds=None if asked else 0)
    return {
        "backups": Backup.objects.all()[:200],
        "runs": runs,
        "notice": notice,
        "backup_busy": "Backing up…" if running else "Backup queued…" if queued else "",
    }


@require_GET
def backups_page(request: AuthenticatedHttpRequest):
    return render_page(request, "sync/backups.html", backups_context(), fragment="state")


@require_POST
@role_required(OPERATOR)
def start_backup(request: AuthenticatedHttpRequest):
    audit.record_request(request, "backup.create", "all databases")
    if tasks.request_manual_backup():
        notice = worker.queued_message("Backup of every database") + " Its progress shows below."
    else:
        notice = "A backup asked for by hand is already queued or running; this request joins it."
    if request.htmx:
        return render(request, "sync/backups.html#state", backups_context(notice, asked=True))
    messages.info(request, notice)
    return redirect("backups")


@require_POST
@role_required(ADMIN)
@without_statement_time_limit
def restore(request: AuthenticatedHttpRequest, backup_id: int):
    backup = get_object_or_404(Backup, pk=backup_id)
    if request.POST.get("confirm", "").strip() != backup.database:
        messages.error(
            request, f"Type {backup.database} to confirm the restore of backup {backup.pk}; nothing was restored."
        )
        return redirect("backups")
    try:
        alias, aside = restore_backup(str(backup.pk))
    except BackupError as error:
        messages.error(request, f"Nothing was restored: {error}")
        return redirect("backups")
    audit.record_request(request, "backup.restore", alias, backup=backup.pk, kept_aside=str(aside))
    messages.success(
        request, f"Restored {alias} from backup {backup.pk}; the previous file is kept aside in the data folder."
    )
    return redirect("backups")


@require_GET
def trades(request: AuthenticatedHttpRequest):
    results, chosen, problems = trade_search.search(request.GET)
    if request.GET.get("format") == "csv":
        rows = results.values_list(*CSV_COLUMNS).iterator(chunk_size=EXPORT_BLOCK_ROWS)
        return csv_download(request, "zepix-trades.csv", CSV_COLUMNS, rows)
    page = trade_search.page_of(results, chosen["sort"], request.GET)
    chains = trade_search.chains_of(page.trades)
    for trade in page.trades:
        trade.chain_id = chains.get((trade.plugin_id, trade.trade_id))
    query = request.GET.copy()
    for paging in ("page", "after", "before", "sort"):
        query.pop(paging, None)
    filters = query.urlencode()
    return render(
        request,
        "sync/trades.html",
        {
            "page": page,
            "chosen": chosen,
            "problems": problems,
            "plugin_ids": plugins.plugin_ids(),
            "filters": filters,
            "query": f"{filters}&sort={chosen['sort']}" if filters else f"sort={chosen['sort']}",
            "sorts": trade_search.SORTS,
            "headers": trade_search.column_headers(chosen["sort"]),
            "sort_label": trade_search.SORTS[chosen["sort"]].label,
            "totals": trade_search.totals(chosen),
        },
    )


# What the central copy holds of each trade, less the sync's own change number.
CSV_COLUMNS = ["plugin_id", *(column for column in sync.COPIED_COLUMNS if column != "change_seq")]


@api_endpoint
@require_http_methods(["GET", "POST"])
def api_sync_batches(request: AuthenticatedHttpRequest, plugin_id: str):
    """A bot host's shipping (sync_app.shipping): GET what the central holds of the plugin, POST
    the next batch. Only a plugin-host token written for this plugin may call it."""
    host, every_seconds = _shipping_host(request, plugin_id)
    if request.method == "GET":
        return JsonResponse(shipping.acknowledged(plugin_id))
    batch = shipping.decode(request.body, request.headers.get("Content-Encoding", ""))
    try:
        marks = shipping.apply_batch(plugin_id, batch, host=host, every_seconds=every_seconds)
    except shipping.NeedsRestart as refusal:
        return JsonResponse({"error": str(refusal), "restart": True, **shipping.acknowledged(plugin_id)}, status=409)
    except shipping.OtherMarks as refusal:
        return JsonResponse({"error": str(refusal), **shipping.acknowledged(plugin_id)}, status=409)
    except sqlite3.DatabaseError as refusal:  # the schema's CHECKs and triggers refused a row
        return JsonResponse({"error": f"The batch was refused, nothing applied: {refusal}"}, status=400)
    rows = sum(len(table["rows"]) for table in batch["tables"].values())
    if rows:  # an empty batch is the host saying it is alive, every interval: not a change
        audit.record(host, "api", "sync.batch", plugin_id, rows=rows, marks=marks)
    return JsonResponse({"marks": marks})


api_sync_batches.required_role = PLUGIN_HOST  # checked by may_ship above


@api_endpoint
@require_POST
@without_statement_time_limit
def api_sync_snapshot(request: AuthenticatedHttpRequest, plugin_id: str):
    """A bot host's whole file, when the central holds nothing of it (sync_app.shipping); read
    from the request as it is decompressed, never whole in memory."""
    host, every_seconds = _shipping_host(request, plugin_id)
    if request.headers.get("Content-Encoding", "") != "zstd":
        raise Invalid("A snapshot is sent zstd-compressed (Content-Encoding: zstd).")
    try:
        if int(request.META.get("CONTENT_LENGTH") or 0) > settings.MAX_SNAPSHOT_BYTES:  # left unread (asgi)
            raise shipping.SnapshotRefused(f"it is over {settings.MAX_SNAPSHOT_BYTES >> 20} MB (ZEPIX_MAX_SNAPSHOT_MB)")
        held = shipping.apply_snapshot(plugin_id, request, host=host, every_seconds=every_seconds)
    except shipping.SnapshotRefused as refusal:
        return JsonResponse({"error": str(refusal), **shipping.acknowledged(plugin_id)}, status=409)
    audit.record(host, "api", "sync.snapshot", plugin_id, rows=held["rows"], marks=held["marks"])
    return JsonResponse(held)


api_sync_snapshot.required_role = PLUGIN_HOST  # checked by may_ship above


def snapshot_body_limit(user, plugin_id: str) -> int | None:
    """A snapshot may be as large as the largest file the central takes whole, from its plugin's
    host only: any other request's body is cut at DATA_UPLOAD_MAX_MEMORY_SIZE before it is
    stored (zepix_admin.asgi)."""
    return settings.MAX_SNAPSHOT_BYTES if may_ship(user, plugin_id) else None


api_sync_snapshot.body_limit = snapshot_body_limit


def _shipping_host(request, plugin_id: str) -> tuple[str, float | None]:
    """The shipping host's name (its token's) and how often it ships, when it says so; 403
    unless its token is a plugin-host token made for this plugin."""
    if not may_ship(request.user, plugin_id):
        raise PermissionDenied(f"Only a plugin-host token made for {plugin_id} may ship its changes.")
    every = request.headers.get("X-Ship-Every", "")
    every_seconds = float(every) if every.replace(".", "", 1).isdigit() and 0 < float(every) < 86400 else None
    return request.user.api_token.name, every_seconds


@require_GET
def chain_in_admin(request: AuthenticatedHttpRequest, plugin_id: str, chain_id: str):
    """Redirect to a profit chain (with its levels) in its own plugin's admin."""
    plugins.check_declared(plugin_id)
    if not models_for(plugin_id)["ProfitChain"].objects.filter(chain_id=chain_id).exists():
        raise Http404(f"{plugin_id} has no chain {chain_id}.")
    return redirect(reverse(f"admin:{registry.alias_for(plugin_id)}_profitchain_change", args=[chain_id]))


@require_GET
def trade_in_admin(request: AuthenticatedHttpRequest, plugin_id: str, ticket: int):
    """Redirect to the trade's record in its own plugin's admin."""
    plugins.check_declared(plugin_id)
    trade = models_for(plugin_id)["Trade"].objects.filter(mt5_ticket=ticket).values_list("pk", flat=True).first()
    if trade is None:
        raise Http404(f"{plugin_id} has no trade {ticket}.")
    return redirect(reverse(f"admin:{registry.alias_for(plugin_id)}_trade_change", args=[trade]))
