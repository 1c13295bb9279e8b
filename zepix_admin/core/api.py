"""JSON endpoints for machine clients (Bearer tokens) and browsers (session + CSRF)."""

from functools import wraps

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from zepix_admin.core.access import SAFE_METHODS
from zepix_admin.core.errors import ZepixError

# Django's CSRF check, run by hand: only for session (cookie) callers, never for bearer tokens.
CSRF_CHECK = CsrfViewMiddleware(lambda request: HttpResponse())


def api_endpoint(view):
    """401 (not a login redirect) for anonymous callers, CSRF for cookie sessions only,
    every refusal (403, 404, ZepixError) as JSON."""

    @csrf_exempt
    @login_not_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            response = JsonResponse({"error": "Authentication required: log in or send a Bearer token."}, status=401)
            response["WWW-Authenticate"] = 'Bearer realm="zepix"'
            return response
        needs_csrf = request.method not in SAFE_METHODS and not getattr(request, "_dont_enforce_csrf_checks", False)
        if needs_csrf and CSRF_CHECK.process_view(request, view, (), {}) is not None:
            return JsonResponse({"error": "CSRF check failed."}, status=403)
        try:
            return view(request, *args, **kwargs)
        except PermissionDenied as error:
            return JsonResponse({"error": str(error) or "Forbidden."}, status=403)
        except Http404 as error:
            return JsonResponse({"error": str(error) or "Not found."}, status=404)
        except ZepixError as error:
            return JsonResponse({"error": str(error)}, status=error.status)

    return wrapper
