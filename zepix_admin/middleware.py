"""One broken plugin database never makes a page answer 500: the page says which plugin is
broken, why, and what to do, with status 503 (the plugin's database, not the request, failed)."""

from django.db import DatabaseError
from django.http import JsonResponse
from django.shortcuts import render

from plugins_app import plugins


class PluginDatabaseErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        plugin_id = getattr(exception, "plugin_id", None) if isinstance(exception, DatabaseError) else None
        if plugin_id is None:
            return None
        problem = plugins.database_problem(plugin_id) or f"its database failed: {exception}"
        context = {"plugin_id": plugin_id, "problem": str(problem), "repair": plugins.repair_hint(plugin_id)}
        if request.path.startswith("/api/"):
            return JsonResponse({"error": f"Plugin {plugin_id}: {problem}", **context}, status=503)
        return render(request, "plugin_unavailable.html", context, status=503)
