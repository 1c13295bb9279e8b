from django.contrib.auth.models import User
from django.http import HttpRequest
from django.shortcuts import render
from django.urls import path
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


def either_slash(route: str, view, name: str) -> list:
    """A URL answered with and without its trailing slash: a POST cannot be redirected to the
    other form (APPEND_SLASH would lose its body), so both are the view. The name reverses to
    the form given."""
    other = route[:-1] if route.endswith("/") else route + "/"
    return [path(route, view, name=name), path(other, view)]
