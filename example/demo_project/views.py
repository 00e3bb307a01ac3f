"""The demo page: a plain HTML + JavaScript front-end that uses the GraphQL API."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie


@ensure_csrf_cookie  # the page's fetch() calls send the cookie's value as X-CSRFToken
def index(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "demo/index.html",
        {
            "stripe_js_url": settings.STRIPE_JS_URL,
            "publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
            "offline": bool(settings.STRIPE_API_BASE),
        },
    )
