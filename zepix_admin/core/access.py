"""Who may do what. Three roles, as Django groups made by ``setup``:

- viewer: sees everything, changes nothing;
- operator: also edits config, triggers sync and backups, acknowledges alerts;
- admin: also restores backups, manages users and tokens (superusers are admins).

Every page needs login (Django's LoginRequiredMiddleware); views that change something are
declared ``@role_required(OPERATOR)`` (or ADMIN), which answers 403 before the view runs and
so changes nothing (tests/test_guard_rails.py fails when a view that takes a POST has none).
Machine clients send ``Authorization: Bearer <token>``; each token acts as its own user.
"""

import logging
import secrets
from datetime import timedelta
from functools import cache, wraps
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.exceptions import SessionInterrupted
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, connections, transaction
from django.http import HttpResponse
from django.shortcuts import resolve_url
from django.utils import timezone

from zepix_admin.core.databases import outage
from zepix_admin.core.errors import Invalid

logger = logging.getLogger("zepix.access")

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
# A bot host's token: it may ship the changes of the plugins written on it, and nothing else
# (no page, no API): outside the three roles' ladder.
PLUGIN_HOST = "plugin-host"
TOKEN_USER_PREFIX = "token:"
ROLES = (VIEWER, OPERATOR, ADMIN)
TOKEN_ROLES = (VIEWER, OPERATOR, PLUGIN_HOST)


def role_of(user) -> str | None:
    """The user's role; a token's user is at most an operator, whatever groups it was given."""
    if not user or not user.is_authenticated:
        return None
    if not hasattr(user, "_zepix_role"):
        names = set() if user.is_superuser else set(user.groups.values_list("name", flat=True))
        user._zepix_role = role_from(user, names)
    return user._zepix_role


def role_from(user, group_names: set[str]) -> str | None:
    role: str | None
    if user.is_superuser:
        role = ADMIN
    else:
        role = next((role for role in reversed(ROLES) if role in group_names), None)
        if role is None and PLUGIN_HOST in group_names:
            role = PLUGIN_HOST
    if role == ADMIN and user.get_username().startswith(TOKEN_USER_PREFIX):
        role = OPERATOR
    return role


def has_role(user, role: str) -> bool:
    current = role_of(user)
    return current in ROLES and ROLES.index(current) >= ROLES.index(role)


def require_role(request, role: str) -> None:
    if not has_role(request.user, role):
        raise PermissionDenied(f"This needs the {role} role.")


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def role_required(role: str, *, to_change: str | None = None):
    """The role a view needs; with ``to_change``, the role its unsafe methods (PUT, POST...) need."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            needed = role if to_change is None or request.method in SAFE_METHODS else to_change
            require_role(request, needed)
            return view(request, *args, **kwargs)

        wrapper.required_role = to_change or role  # type: ignore[attr-defined]
        return wrapper

    return decorator


def actor_name(user) -> str:
    return user.get_username() if user and user.is_authenticated else "anonymous"


def ensure_groups() -> list[str]:
    """The three roles; the admin role may manage users, groups and tokens in the Django admin."""
    from django.contrib.auth.models import Group, Permission

    created = []
    for role in ROLES:
        group, was_created = Group.objects.get_or_create(name=role)
        if was_created:
            created.append(role)
        if role == ADMIN:
            group.permissions.add(
                *Permission.objects.filter(
                    content_type__app_label__in=["auth", "zepix_admin"],
                    content_type__model__in=["user", "group", "apitoken"],
                )
            )
    return created


def set_role(user, role: str) -> None:
    from django.contrib.auth.models import Group

    if role not in (*ROLES, PLUGIN_HOST):
        raise Invalid(f"Unknown role {role!r}; choose one of {', '.join(ROLES)}.")
    user.groups.set([Group.objects.get_or_create(name=role)[0]])
    user.__dict__.pop("_zepix_role", None)


@transaction.atomic
def create_token(name: str, role: str, plugin_ids: list[str] | tuple[str, ...] = ()) -> str:
    """Make a token for a machine client; return the raw token (only its hash is kept). A
    plugin-host token names the plugins whose changes it may ship (checked by the caller)."""
    from zepix_admin.core.models import ApiToken

    if role not in TOKEN_ROLES:
        raise Invalid(f"A token's role is one of {', '.join(TOKEN_ROLES)}, not {role!r}.")
    if (role == PLUGIN_HOST) != bool(plugin_ids):
        raise Invalid("A plugin-host token names its plugins (--plugin ID, once or more); no other token does.")
    if not name or len(name) > 60:
        raise Invalid("A token needs a name of 1 to 60 characters.")
    if ApiToken.objects.filter(name=name).exists():
        raise Invalid(f"A token named {name!r} already exists.")
    username = f"{TOKEN_USER_PREFIX}{name}"
    User = get_user_model()
    if User.objects.filter(username=username).exists():
        raise Invalid(f"A user named {username!r} already exists.")
    user = User(username=username, is_active=True)
    user.set_unusable_password()
    user.save()
    set_role(user, role)
    raw = "zpx_" + secrets.token_urlsafe(32)
    ApiToken.objects.create(name=name, user=user, token_hash=ApiToken.hash(raw), plugin_ids=sorted(set(plugin_ids)))
    return raw


def may_ship(user, plugin_id: str) -> bool:
    """Whether this user (a plugin-host token's) may ship the changes of this plugin."""
    if role_of(user) != PLUGIN_HOST:
        return False
    token = getattr(user, "api_token", None)
    return token is not None and plugin_id in token.plugin_ids


# A session's last activity and a token's last use are written at most this often: a write on
# every request is a commit on the central database (on SQLite, one writer at a time: a bot's
# read waited behind a sync's write transaction for its token's time of use).
ACTIVITY_WRITTEN_EVERY_SECONDS = 60


@cache
def _token_sql() -> str:
    """The token, its user, whether its last use is to be written, and the user's groups (one row
    per group)."""
    from django.contrib.auth.models import Group, User  # the project's users (no AUTH_USER_MODEL)

    from zepix_admin.core.models import ApiToken

    return (
        "SELECT t.id, u.id, u.username, u.is_active, u.is_superuser,"
        " (t.last_used_at IS NULL OR t.last_used_at < %s), g.name"
        f" FROM {ApiToken._meta.db_table} t JOIN {User._meta.db_table} u ON u.id = t.user_id"
        f" LEFT JOIN {User.groups.through._meta.db_table} m ON m.user_id = u.id"
        f" LEFT JOIN {Group._meta.db_table} g ON g.id = m.group_id"
        " WHERE t.token_hash = %s"
    )


def user_for_token(raw_token: str):
    """The token's user (with its role), or None. Every API call and every bot's stream starts
    here: one statement, where the ORM's two (the token with its user, then the user's groups)
    took 1.9 ms of each call, mostly making their SQL again; this one 0.15 ms. The user's other
    fields are loaded if something reads them."""
    from zepix_admin.core.models import ApiToken

    now = timezone.now()
    connection = connections["default"]
    written_before = connection.ops.adapt_datetimefield_value(now - timedelta(seconds=ACTIVITY_WRITTEN_EVERY_SECONDS))
    with connection.cursor() as cursor:
        cursor.execute(_token_sql(), [written_before, ApiToken.hash(raw_token)])
        rows = cursor.fetchall()
    if not rows:
        return None
    token_pk, user_pk, username, is_active, is_superuser, last_use_to_write, _ = rows[0]
    if not is_active:
        return None
    if last_use_to_write:
        try:
            ApiToken.objects.filter(pk=token_pk).update(last_used_at=now)
        except DatabaseError as error:  # a full disk: the request is not refused for the token's bookkeeping
            logger.warning("The last use of token %s could not be written: %s", token_pk, error)
    loaded = {"id": user_pk, "username": username, "is_active": True, "is_superuser": bool(is_superuser)}
    User = get_user_model()
    fields = [field.attname for field in User._meta.concrete_fields if field.attname in loaded]  # the model's order
    user = User.from_db("default", fields, [loaded[name] for name in fields])
    user._zepix_role = role_from(user, {name for *_, name in rows if name})  # type: ignore[attr-defined]  # role_of's
    return user


def bearer_token(authorization: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header ('' for any other)."""
    scheme, _, raw_token = authorization.partition(" ")
    return raw_token.strip() if scheme.lower() == "bearer" else ""  # the scheme is case-insensitive (RFC 9110)


class BearerTokenMiddleware:
    """Authenticates ``Authorization: Bearer`` requests as the token's user.

    Such requests carry no cookies, so CSRF (which protects cookie sessions) does not apply.
    A bearer header with an unknown token leaves the request anonymous: the view answers 401.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        raw_token = bearer_token(request.headers.get("Authorization", ""))
        if raw_token:
            user = user_for_token(raw_token)
            if user is not None:
                request.user = user
                request.authenticated_by_token = True
                request._dont_enforce_csrf_checks = True
        return self.get_response(request)


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's, except that a page read (GET, HEAD) is not refused because its session could
    not be saved for an outage (a full disk): the note of the operator's last activity (once a
    minute, see IdleSessionMiddleware) failed their next page with a 400 "the session was
    deleted", and they could not look at the console to see why. What changes a session for
    good (signing in or out) is a POST, and fails as it should."""

    def process_response(self, request, response):
        try:
            return super().process_response(request, response)
        except (DatabaseError, SessionInterrupted) as error:
            # Django says any failed update of a session as SessionInterrupted (a 400: "deleted
            # before the request completed"): the database's own error is in its context.
            failure: BaseException | None = error
            while failure is not None and not isinstance(failure, DatabaseError):
                failure = failure.__context__
            if request.method not in ("GET", "HEAD") or outage(failure) is None:
                raise
            logger.warning("The session could not be saved (%s); %s is answered all the same", failure, request.path)
            return response


class IdleSessionMiddleware:
    """Ends a browser session after SESSION_IDLE_SECONDS without a request from its operator.
    The pages' own polling (HTMX requests for a fragment) keeps nothing alive. The time of the
    last activity is written at most once a minute: a session write on every page cost the
    overview 23 ms at 5 x 1,000,000 trades (a write, then a WAL checkpoint, on the central
    database)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from django.contrib.auth import logout

        if request.user.is_authenticated and not getattr(request, "authenticated_by_token", False):
            now = int(timezone.now().timestamp())
            last = request.session.get("zepix_last_activity")
            if last is not None and now - last > settings.SESSION_IDLE_SECONDS:
                logout(request)
                request.session["zepix_idle_logout"] = True
            elif not request.GET.get("fragment") and (last is None or now - last >= ACTIVITY_WRITTEN_EVERY_SECONDS):
                request.session["zepix_last_activity"] = now
        return self.get_response(request)


class RoleRequiredMiddleware:
    """A logged-in user without a role (a new account no admin has given one, a plugin-host
    token) sees no page: 403 saying so. Views open to anyone (login, /healthz) and the API
    endpoints, which check roles themselves, are left to themselves; logging out stays possible."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        user = request.user
        if not user.is_authenticated or has_role(user, VIEWER) or not getattr(view_func, "login_required", True):
            return None
        if request.resolver_match and request.resolver_match.url_name == "logout":
            return None
        if request.path.startswith(settings.STATIC_URL) or request.path.startswith("/admin/"):
            return None  # the admin site asks for a role itself (ZepixAdminSite.has_permission)
        raise PermissionDenied("Your account has no role yet: an admin gives it one (viewer, operator or admin).")


class HtmxLoginRedirectMiddleware:
    """An HTMX request whose session has ended (logged out in another tab, expired) would get the
    login page swapped into a fragment of the page: it gets ``HX-Redirect`` to the login page
    instead, with ``next`` the page it came from (its path only: never another host)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.headers.get("HX-Request") != "true" or response.status_code != 302:
            return response
        login = resolve_url(settings.LOGIN_URL)
        if not response["Location"].startswith(login):
            return response
        came_from = urlsplit(request.headers.get("HX-Current-URL", ""))
        page = came_from.path + (f"?{came_from.query}" if came_from.query else "") if came_from.path else "/"
        redirect = HttpResponse(status=200)
        redirect["HX-Redirect"] = f"{login}?{urlencode({'next': page})}"
        return redirect
