import json

from django.contrib import messages
from django.core.handlers.asgi import ASGIRequest
from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from config_app import documents, rollout, service, stream
from config_app.diff import set_path
from config_app.models import ConfigVersion
from config_app.rows import parse_input, rows_for
from zepix_admin.core.access import OPERATOR, VIEWER, actor_name, role_required
from zepix_admin.core.api import api_endpoint
from zepix_admin.core.errors import Invalid
from zepix_admin.core.http import AuthenticatedHttpRequest, EventStreamResponse, render_page


def _scope_context(scope: str, **extra) -> dict:
    version = service.current(scope)
    return {
        "scope": scope,
        "version": version,
        "rows": rows_for(documents.schema_for(scope), service.document_of(version)),
        "subscribers": rollout.rollout(scope, version.version if version else 0),
        **extra,
    }


@require_GET
def config_index(request: AuthenticatedHttpRequest):
    scopes = [{"scope": scope, "version": service.current(scope)} for scope in documents.scopes()]
    return render(request, "config/index.html", {"scopes": scopes})


@require_GET
def scope_page(request: AuthenticatedHttpRequest, scope: str):
    return render_page(request, "config/scope.html", _scope_context(documents.check_scope(scope)), fragment="settings")


@require_POST
@role_required(OPERATOR)
def save_row(request: AuthenticatedHttpRequest, scope: str):
    """Save one setting (HTMX). Answers the row again: saved, or with the error inline."""
    scope = documents.check_scope(scope)
    path = request.POST.get("path", "")
    try:
        base_version = int(request.POST.get("base_version", ""))
    except ValueError:
        return HttpResponse("A base version is required.", status=400)
    base = ConfigVersion.objects.filter(scope=scope, version=base_version).first()
    known = {row.path: row for row in rows_for(documents.schema_for(scope), service.document_of(base))}
    if path not in known:
        return HttpResponse(f"Unknown setting {path!r}.", status=400)
    row = known[path]
    raw = (request.POST.getlist("value") or [""])[-1]
    context = {"scope": scope, "row": row}
    try:
        value = parse_input(row.kind, raw, row.item_kind)
        if _needs_confirmation(scope, row, value, base, request):
            # A high-risk change (the schemas mark them), valid and based on the newest version,
            # is shown old and new and saved only once the operator confirms it.
            context["confirm"] = {"old": json.dumps(row.value), "new": json.dumps(value), "raw": raw}
            context["base_version"] = base_version
            return render(request, "config/scope.html#row", context)
        saved = service.set_value(
            scope, path, value, base_version=base_version, author=actor_name(request.user), via="web"
        )
    except (ValueError, service.ConfigBusy) as error:  # parse errors, InvalidDocument, a change not finished
        problems = getattr(error, "problems", None)
        context["error"] = "; ".join(p.message for p in problems) if problems else str(error)
        context["attempted"] = raw
        return render(request, "config/scope.html#row", context)
    except service.ConfigConflict as conflict:
        # The operator's value stays in the field; the current one is shown, with a way to
        # apply theirs on top of it.
        current = next(
            (r for r in rows_for(documents.schema_for(scope), service.document_of(conflict.current)) if r.path == path),
            None,
        )
        context.update(conflict=conflict, attempted=raw, current_value=json.dumps(current.value if current else None))
        return render(request, "config/scope.html#row", context)
    context.update(
        row=next(r for r in rows_for(documents.schema_for(scope), service.document_of(saved)) if r.path == path),
        saved=saved,
        version=saved,
        oob=True,
    )
    return render(request, "config/scope.html#row", context)


def _needs_confirmation(scope: str, row, value, base, request) -> bool:
    if not row.is_risky(value) or value == row.value or request.POST.get("confirmed") == "yes":
        return False
    latest = service.current(scope)
    if base is None or latest is None or base.version != latest.version:
        return False  # the save answers the conflict
    documents.check_document(scope, set_path(service.document_of(base), row.path, value))  # refused first
    return True


UNDO_SECONDS = 300


@require_POST
@role_required(OPERATOR)
def undo(request: AuthenticatedHttpRequest, scope: str, version: int):
    """Undo a save just made: the version before it becomes the newest again, as long as nobody
    has saved since and within UNDO_SECONDS (later, History offers every rollback)."""
    scope = documents.check_scope(scope)
    current = service.require_current(scope)
    if current.version != version:
        raise service.ConfigConflict(scope, version, current, [])
    if (timezone.now() - current.created_at).total_seconds() > UNDO_SECONDS:
        raise Invalid(
            f"Version {version} was saved more than {UNDO_SECONDS // 60} minutes ago: roll back from History."
        )
    service.rollback(scope, version - 1, author=actor_name(request.user), via="web")
    messages.info(request, f"Version {version} undone: {scope} is back to the content of version {version - 1}.")
    return HttpResponseClientRedirect(f"/config/{scope}/") if request.htmx else redirect("config-scope", scope)


HISTORY_PAGE_SIZE = 50


@require_GET
def history(request: AuthenticatedHttpRequest, scope: str):
    scope = documents.check_scope(scope)
    # Whole documents stay in the database: a page of history needs only the diffs.
    versions = ConfigVersion.objects.filter(scope=scope).order_by("-version").with_document_kept()
    page = Paginator(versions, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "config/history.html",
        {"scope": scope, "versions": page, "page": page, "current": service.current(scope)},
    )


@require_POST
@role_required(OPERATOR)
def rollback(request: AuthenticatedHttpRequest, scope: str, version: int):
    scope = documents.check_scope(scope)
    service.rollback(scope, version, author=actor_name(request.user), via="web")
    return HttpResponseClientRedirect(f"/config/{scope}/") if request.htmx else redirect("config-scope", scope)


@api_endpoint
@require_GET
@role_required(VIEWER)
def event_stream(request: AuthenticatedHttpRequest):
    """SSE: one event per version; ?scope=S narrows it; Last-Event-ID replays what was missed."""
    scope = request.GET.get("scope") or None
    if scope:
        documents.check_scope(scope)  # answered as JSON by api_endpoint
    raw_last = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")
    try:
        last_event_id = int(raw_last) if raw_last else None
    except ValueError:
        return JsonResponse({"error": "Last-Event-ID must be a number."}, status=400)
    subscriber = request.GET.get("subscriber", "")
    events = (stream.async_events if isinstance(request, ASGIRequest) else stream.sync_events)(
        scope, last_event_id, subscriber
    )
    return EventStreamResponse(events)


# JSON API ----------------------------------------------------------------------


def _version_response(version: ConfigVersion, status: int = 200) -> JsonResponse:
    answer = {"scope": version.scope, "version": version.version, "data": version.document}
    if version.file_not_written:  # saved and in use all the same
        answer["warning"] = version.file_not_written
    response = JsonResponse(answer, status=status)
    response["ETag"] = f'"{version.version}"'
    return response


@api_endpoint
@require_http_methods(["GET", "PUT"])
@role_required(VIEWER, to_change=OPERATOR)
def api_config(request: AuthenticatedHttpRequest, scope: str):
    documents.check_scope(scope)
    if request.method == "GET":
        return _version_response(service.require_current(scope))
    if int(request.META.get("CONTENT_LENGTH") or 0) > documents.MAX_DOCUMENT_BYTES:
        return JsonResponse({"error": "The document is larger than 1 MB."}, status=413)
    body = request.body
    if len(body) > documents.MAX_DOCUMENT_BYTES:
        return JsonResponse({"error": "The document is larger than 1 MB."}, status=413)
    if_match = request.headers.get("If-Match", "").strip().removeprefix("W/").strip('"')
    if not if_match.isdigit():
        return JsonResponse(
            {"error": "Send the version the document is based on in If-Match (the ETag of a GET)."}, status=400
        )
    try:
        document = documents.parse(body)
        saved = service.save(
            scope,
            document,
            base_version=int(if_match),
            author=actor_name(request.user),
            via="api",
            comment=request.headers.get("X-Comment", "")[:300],
        )
    except documents.InvalidDocument as error:
        return JsonResponse(
            {"error": "Invalid document.", "errors": [{"path": p.path, "message": p.message} for p in error.problems]},
            status=400,
        )
    except service.ConfigConflict as conflict:
        return JsonResponse(
            {
                "error": str(conflict),
                "current_version": conflict.current.version,
                "changed_by": conflict.current.author,
                "changes": conflict.changes,
            },
            status=409,
        )
    return _version_response(saved)


MAX_VERSION = 2**31 - 1


@api_endpoint
@require_POST
@role_required(VIEWER)
def api_ack(request: AuthenticatedHttpRequest, scope: str):
    """A subscriber reports that it applied a version (ok) or failed to (with the error). Viewers'
    tokens may: a plugin's read-only token is what reports what it applied."""
    documents.check_scope(scope)
    usage = 'Send {"subscriber": "name", "version": n (a version number), "ok": true or false, "error": "text"}.'
    try:
        payload = documents.parse(request.body)
    except documents.InvalidDocument as error:
        return JsonResponse({"error": f"{usage} Not JSON: {error.problems[0].message}."}, status=400)
    if not (
        isinstance(payload, dict)
        and isinstance(payload.get("subscriber"), str)
        and 0 < len(payload["subscriber"]) <= 100
        and type(payload.get("version")) is int
        and 1 <= payload["version"] <= MAX_VERSION
        and isinstance(payload.get("ok"), bool)
        and isinstance(payload.get("error", ""), str)
    ):
        return JsonResponse({"error": usage}, status=400)
    rollout.record_ack(scope, payload["subscriber"], payload["version"], payload["ok"], payload.get("error", "")[:2000])
    return JsonResponse({"recorded": True})


@api_endpoint
@require_GET
@role_required(VIEWER)
def api_subscribers(request: AuthenticatedHttpRequest, scope: str):
    documents.check_scope(scope)
    latest = service.require_current(scope)
    return JsonResponse(
        {"scope": scope, "version": latest.version, "subscribers": rollout.rollout(scope, latest.version)}
    )
