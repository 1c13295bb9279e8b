from django.contrib.auth.models import User
from django.http import HttpRequest
from django.shortcuts import render
from django_htmx.middleware import HtmxDetails


class AuthenticatedHttpRequest(HttpRequest):
    """What a request carries once LoginRequiredMiddleware has let it through."""

    user: User
    htmx: HtmxDetails


def render_page(request, template: str, context: dict, fragment: str | None = None):
    """The whole page, or only its partial ``template#fragment`` when an HTMX poll asks for it
    with ``?fragment=<fragment>``."""
    if fragment and request.htmx and request.GET.get("fragment") == fragment:
        return render(request, f"{template}#{fragment}", context)
    return render(request, template, context)
