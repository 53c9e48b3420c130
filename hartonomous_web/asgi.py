"""ASGI entry point: HTTP through Django, websockets through Channels with session auth."""

import gc
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hartonomous_web.settings")
# The server process pools its database connections (settings.py: DATABASE_POOL); set
# DATABASE_POOL=0 to turn it off. Only this process: the variable is not left for the
# processes it starts (nor for a test run that imports this module) to inherit.
_pool_set_here = "DATABASE_POOL" not in os.environ
if _pool_set_here:
    os.environ["DATABASE_POOL"] = "1"
try:
    django.setup(set_prefix=False)  # what django.core.asgi.get_asgi_application() does
finally:
    if _pool_set_here:
        del os.environ["DATABASE_POOL"]

from django.conf import settings  # noqa: E402

from hartonomous_web.request_threads import RequestThreadHandler, RequestThreads  # noqa: E402

# Django's handler, with raw (application/octet-stream) bodies such as upload chunks streamed
# to the view as they arrive instead of spooled to a temporary file first (streamed_body.py),
# and each request on a request thread handled there in one call (request_threads.py).
django_asgi_app = RequestThreadHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from projects.routing import websocket_urlpatterns as project_ws  # noqa: E402
from runtime.routing import websocket_urlpatterns as runtime_ws  # noqa: E402

application = ProtocolTypeRouter(
    {
        # HTTP: Django on WEB_THREADS long-lived request threads (see request_threads.py); the
        # OpenAI-compatible API streams answers from async views and is not bounded by them.
        "http": RequestThreads(
            django_asgi_app,
            settings.WEB_THREADS,
            handoff=settings.WEB_THREAD_HANDOFF_MS / 1000,
            unbounded_prefixes=("/v1/",),
        ),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter([*project_ws, *runtime_ws]))),
    }
)

# Everything imported so far lives as long as the process: move it out of the garbage
# collector's sight, so a full collection walks only what requests made. Without this one
# took about 100 ms here (bench/web_latency.py), the slowest requests' whole latency.
gc.collect()
gc.freeze()
