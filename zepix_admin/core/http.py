from django.contrib.auth.models import User
from django.http import HttpRequest, StreamingHttpResponse
from django.shortcuts import render
from django.urls import path
from django_htmx.middleware import HtmxDetails


class AuthenticatedHttpRequest(HttpRequest):
    """What a request carries once LoginRequiredMiddleware has let it through."""

    user: User
    htmx: HtmxDetails


class EventStreamResponse(StreamingHttpResponse):
    """Server-Sent Events. Async events (an async iterator of bytes, under ASGI) are written by
    zepix_admin.asgi.Handler straight to the server, one ASGI message each, without Django's
    streaming layers (see there); sync ones (WSGI: runserver, the browser tests' live server)
    stream as any streaming response does."""

    def __init__(self, events):
        super().__init__(events, content_type="text/event-stream")
        self.events = events
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"  # nginx: pass each event on as it comes


def render_page(request, template: str, context: dict, fragment: str | None = None):
    """The whole page, or only its partial ``template#fragment`` when an HTMX poll asks for it
    with ``?fragment=<fragment>``."""
    if fragment and request.htmx and request.GET.get("fragment") == fragment:
        return render(request, f"{template}#{fragment}", context)
    return render(request, template, context)


def either_slash(route: str, view, name: str) -> list:
    """A URL answered with and without its trailing slash: a POST cannot be redirected to the
    other form (APPEND_SLASH would lose its body), so both are the view. The name reverses to
    the form given."""
    other = route[:-1] if route.endswith("/") else route + "/"
    return [path(route, view, name=name), path(other, view)]
