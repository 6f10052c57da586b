"""Views: one limited by the middleware only, two with their own tighter limit."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from rust_py_rate_limit.django import ratelimit


def index(request: HttpRequest) -> JsonResponse:
    """Counted by the middleware's 100 requests a minute."""
    return JsonResponse({"hello": "world"})


def health(request: HttpRequest) -> JsonResponse:
    """Exempt (``EXEMPT: ["/health"]``): never counted, never refused."""
    return JsonResponse({"status": "up"})


@ratelimit("5/minute")
def login(request: HttpRequest) -> JsonResponse:
    """At most 5 requests a minute per client address, on top of the middleware."""
    return JsonResponse({"logged_in": True})


@ratelimit(limit=3, window_seconds=60)
async def search(request: HttpRequest) -> JsonResponse:
    """An async view: 3 requests a minute per client address."""
    return JsonResponse({"results": [], "q": request.GET.get("q", "")})
