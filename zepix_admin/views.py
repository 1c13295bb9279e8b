import sys

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.paginator import Paginator
from django.http import HttpResponse, HttpResponseServerError, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template import loader
from django.views.decorators.http import require_GET, require_POST
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from zepix_admin import trends
from zepix_admin.core import alerts, audit
from zepix_admin.core.access import OPERATOR, VIEWER, actor_name, has_role, role_required
from zepix_admin.core.databases import outage
from zepix_admin.core.errors import Invalid, error_response
from zepix_admin.core.http import AuthenticatedHttpRequest, render_page
from zepix_admin.core.models import Alert, AuditEntry
from zepix_admin.health import collect, failing_components
from zepix_admin.metrics import ConsoleCollector
from zepix_admin.overview import overview as overview_data


@require_GET
def overview(request: AuthenticatedHttpRequest):
    return render_page(request, "overview.html", overview_data(), fragment="cards")


@login_not_required
@require_GET
def healthz(request):
    """200 or 503 for load balancers and monitors; anonymous callers get the status and the names
    of what is failing, a logged-in user or a token the whole report (paths, sizes, ages)."""
    report = collect()
    status = 200 if report["status"] == "ok" else 503
    if not request.user.is_authenticated:
        return JsonResponse({"status": report["status"], "failing": failing_components(report)}, status=status)
    return JsonResponse(report, status=status)


@require_GET
def alert_list(request: AuthenticatedHttpRequest):
    if request.htmx and request.GET.get("fragment") == "badge":  # the navigation's live badge
        return render(request, "partials/alert_badge.html")
    return render(
        request,
        "alerts.html",
        {
            "open": alerts.open_alerts(),
            "snoozed": alerts.snoozed_alerts(),
            "snooze_choices": list(alerts.SNOOZE_CHOICES),
            "acknowledged": Alert.objects.filter(acknowledged_at__isnull=False)[:50],
        },
    )


@require_POST
@role_required(OPERATOR)
def snooze_alert(request: AuthenticatedHttpRequest, alert_id: int):
    alert = get_object_or_404(Alert, pk=alert_id)
    hours = alerts.SNOOZE_CHOICES.get(request.POST.get("for", ""))
    if hours is None:
        raise Invalid(f"Snooze for one of {', '.join(alerts.SNOOZE_CHOICES)}.")
    alerts.snooze(alert, hours)
    audit.record_request(request, "alert.snooze", f"{alert.source}/{alert.subject}", alert=alert.pk, hours=hours)
    return redirect("alerts")


@require_POST
@role_required(OPERATOR)
def acknowledge_alert(request: AuthenticatedHttpRequest, alert_id: int):
    alert = get_object_or_404(Alert, pk=alert_id)
    alerts.acknowledge(alert, actor_name(request.user))
    audit.record_request(request, "alert.acknowledge", f"{alert.source}/{alert.subject}", alert=alert.pk)
    return redirect("alerts")


@login_not_required
@require_GET
def metrics(request):
    """Prometheus' text format, for a token (a viewer's or more) or an allowed address only."""
    allowed = request.META.get("REMOTE_ADDR") in settings.METRICS_ALLOWED_ADDRESSES
    if not allowed and not has_role(request.user, VIEWER):
        response = HttpResponse("Metrics need a viewer's token (Authorization: Bearer) or an allowed address.\n")
        response.status_code = 403 if request.user.is_authenticated else 401
        response["Content-Type"] = "text/plain"
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ConsoleCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


@require_GET
def charts_page(request: AuthenticatedHttpRequest):
    chosen = request.GET.get("range", trends.DEFAULT_RANGE)
    return render(
        request, "charts.html", {"charts": trends.charts(chosen), "ranges": list(trends.RANGES), "chosen": chosen}
    )


@require_GET
def audit_log(request: AuthenticatedHttpRequest):
    entries = AuditEntry.objects.all()
    action = request.GET.get("action", "").strip()
    actor = request.GET.get("actor", "").strip()
    if action:
        entries = entries.filter(action__startswith=action)
    if actor:
        entries = entries.filter(actor=actor)
    page = Paginator(entries, 50).get_page(request.GET.get("page"))
    return render(request, "audit.html", {"page": page, "action": action, "actor": actor})


# Error pages in the app's own shell, in production and debug alike; JSON under /api/.


def bad_request(request, exception=None):
    return error_response(
        request, 400, "Bad request", str(exception) if exception else "The request could not be understood."
    )


def permission_denied(request, exception=None):
    reason = str(exception) if exception and str(exception) else "Your role does not allow this."
    return error_response(request, 403, "Not allowed", f"{reason} Nothing was changed.")


def page_not_found(request, exception=None):
    return error_response(request, 404, "Not found", "There is nothing at this address.")


def server_error(request):
    """Rendered without the database (it may be what failed): no navigation, no context processors.
    An outage (the central PostgreSQL database down or restarting, a full disk) is a 503 that says so."""
    away = outage(sys.exception())
    if away is not None:
        message = f"{away.what}. What you sent was not saved: send it again {away.again}. {away.recovers}"
        if request.path.startswith("/api/"):
            return JsonResponse({"error": message}, status=503)
        return HttpResponse(
            loader.get_template("503.html").render({"title": away.title, "message": message}), status=503
        )
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "Server error; it was logged."}, status=500)
    return HttpResponseServerError(loader.get_template("500.html").render())
