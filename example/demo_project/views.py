"""The demo page (plain HTML + JavaScript that uses the GraphQL API) and run_demo.py's readiness URL."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
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
            # Staff charge customers from the page (createStripeCharge takes the user's primary key).
            "customers": (
                get_user_model().objects.filter(is_staff=False).order_by("username")
                if request.user.is_staff
                else []
            ),
        },
    )


@never_cache
def ready(request: HttpRequest) -> HttpResponse:
    """The token run_demo.py started this server with: it says "Demo ready" only once this very
    process answers, never when another one on the same port does. Touches no database."""
    if not settings.DEMO_READY_TOKEN:
        raise Http404("Not started by run_demo.py.")
    return HttpResponse(settings.DEMO_READY_TOKEN, content_type="text/plain")
