from django.contrib.auth.decorators import login_not_required
from django.core.paginator import Paginator
from django.http import HttpResponseServerError, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template import loader
from django.views.decorators.http import require_GET, require_POST

from zepix_admin import alerts, audit
from zepix_admin.access import OPERATOR, actor_name, require_role
from zepix_admin.health import collect, failing_components
from zepix_admin.http import AuthenticatedHttpRequest
from zepix_admin.models import Alert, AuditEntry
from zepix_admin.overview import overview as overview_data


@require_GET
def overview(request: AuthenticatedHttpRequest):
    context = overview_data()
    if request.htmx and request.GET.get("fragment") == "cards":
        return render(request, "overview.html#cards", context)
    return render(request, "overview.html", context)


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
    return render(request, "alerts.html", {
        "open": alerts.open_alerts(),
        "acknowledged": Alert.objects.filter(acknowledged_at__isnull=False)[:50],
    })  # fmt: skip


@require_POST
def acknowledge_alert(request: AuthenticatedHttpRequest, alert_id: int):
    require_role(request, OPERATOR)
    alert = get_object_or_404(Alert, pk=alert_id)
    alerts.acknowledge(alert, actor_name(request.user))
    audit.record(actor_name(request.user), "web", "alert.acknowledge", f"{alert.source}/{alert.subject}", alert=alert.pk)
    return redirect("alerts")


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


def _error(request, status: int, title: str, message: str):
    if request.path.startswith("/api/"):
        return JsonResponse({"error": message}, status=status)
    return render(request, "error.html", {"title": title, "message": message}, status=status)


def bad_request(request, exception=None):
    return _error(request, 400, "Bad request", str(exception) if exception else "The request could not be understood.")


def permission_denied(request, exception=None):
    reason = str(exception) if exception and str(exception) else "Your role does not allow this."
    return _error(request, 403, "Not allowed", f"{reason} Nothing was changed.")


def page_not_found(request, exception=None):
    return _error(request, 404, "Not found", "There is nothing at this address.")


def server_error(request):
    """Rendered without the database (it may be what failed): no navigation, no context processors."""
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "Server error; it was logged."}, status=500)
    return HttpResponseServerError(loader.get_template("500.html").render())
