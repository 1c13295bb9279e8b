"""The plugins as requests meet them: those declared or archived while the process runs join or
leave it (PluginsJoinMiddleware), and one broken plugin database never makes a page answer 500:
the page says which plugin is broken, why, and what to do, with status 503 (the plugin's
database, not the request, failed)."""

import time

from django.db import DatabaseError
from django.http import JsonResponse
from django.shortcuts import render
from django.utils.deprecation import MiddlewareMixin

from plugins_app import plugins
from zepix_admin.core.limits import timed_out


class PluginsJoinMiddleware(MiddlewareMixin):
    """Plugins declared or archived while this process runs join or leave it before a request
    is routed (their admin pages included): one look at the config folder a second at most."""

    LOOK_EVERY_SECONDS = 1.0
    _last_look = 0.0

    def process_request(self, request):
        now = time.monotonic()
        if now - PluginsJoinMiddleware._last_look >= self.LOOK_EVERY_SECONDS:
            PluginsJoinMiddleware._last_look = now
            plugins.plugin_ids()


class PluginDatabaseErrorMiddleware(MiddlewareMixin):
    def process_exception(self, request, exception):
        plugin_id = getattr(exception, "plugin_id", None) if isinstance(exception, DatabaseError) else None
        if plugin_id is None or timed_out(exception):
            return None  # a query stopped for taking too long is the request's fault, not the plugin's
        problem = plugins.database_problem(plugin_id) or f"its database failed: {exception}"
        context = {"plugin_id": plugin_id, "problem": str(problem), "repair": plugins.repair_hint(plugin_id, problem)}
        if request.path.startswith("/api/"):
            return JsonResponse({"error": f"Plugin {plugin_id}: {problem}", **context}, status=503)
        return render(request, "plugin_unavailable.html", context, status=503)
