from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.shortcuts import render


def overview(request):
    return render(request, "overview.html", {})


@login_not_required
def healthz(request):
    return JsonResponse({"status": "ok"})
