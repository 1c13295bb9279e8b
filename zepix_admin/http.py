from django.contrib.auth.models import User
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class AuthenticatedHttpRequest(HttpRequest):
    """What a request carries once LoginRequiredMiddleware has let it through."""

    user: User
    htmx: HtmxDetails
