"""The one command that serves the platform, shared by everything that starts the web server.

``scripts/run.sh`` and ``docker/Dockerfile`` spell it out in shell (a test checks they match
:data:`UVICORN_OPTIONS` and :data:`APP`); the test server (tests/support/live_server.py) and the
benchmarks build it with :func:`uvicorn_command`. This module imports nothing, so scripts can use
it before Django or uvicorn is loaded.
"""

from __future__ import annotations

#: The ASGI application: HTTP and websockets (hartonomous_web/asgi.py).
APP = "hartonomous_web.asgi:application"
#: uvicorn's HTTP protocol with raw request bodies (upload chunks) handed over in large pieces
#: (hartonomous_web/http_protocol.py).
HTTP_PROTOCOL = "hartonomous_web.http_protocol:HttpProtocol"
#: Options every start of the server passes (besides where it listens).
UVICORN_OPTIONS = ["--lifespan", "off", "--http", HTTP_PROTOCOL]


def uvicorn_command(python: str, host: str, port: int | str, *extra: str, app: str = APP) -> list[str]:
    """``python -m uvicorn`` serving ``app`` on ``host:port``, as scripts/run.sh starts it (``extra``: more options)."""
    return [python, "-m", "uvicorn", "--host", host, "--port", str(port), *UVICORN_OPTIONS, *extra, app]
