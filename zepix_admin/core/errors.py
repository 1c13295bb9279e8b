"""One hierarchy for what an operator is told when something cannot be done.

Code anywhere raises these with a message meant for the operator. ``ErrorMiddleware`` answers
them with the class's status (JSON under /api/, the error page elsewhere) and
``zepix_admin.core.commands.ZepixCommand`` ends a management command with the same message. Any other
exception is a bug: logged, and a 500.
"""

from django.http import JsonResponse
from django.shortcuts import render
from django.utils.deprecation import MiddlewareMixin


class ZepixError(Exception):
    status = 400
    title = "Refused"


class Invalid(ZepixError):
    status = 400
    title = "Bad request"


class NotFound(ZepixError):
    status = 404
    title = "Not found"


class Conflict(ZepixError):
    status = 409
    title = "Conflict"


class Unavailable(ZepixError):
    status = 503
    title = "Unavailable"


def error_response(request, status: int, title: str, message: str, **extra):
    """An error in the app's own shell, or as JSON under /api/ (what machine clients read)."""
    if request.path.startswith("/api/"):
        return JsonResponse({"error": message, **extra}, status=status)
    return render(request, "error.html", {"title": title, "message": message}, status=status)


class ErrorMiddleware(MiddlewareMixin):
    def process_exception(self, request, exception):
        if isinstance(exception, ZepixError):
            return error_response(request, exception.status, exception.title, str(exception))
        return None
