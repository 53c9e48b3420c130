"""A real ASGI server for tests: uvicorn serving ``hartonomous_web.asgi`` (HTTP and websockets), as
``scripts/run.sh`` starts it, in a process of its own against the test database.

What a test writes must be committed for the server to see it: tests that use a server take
``transactional_db``. Used by the browser tests (tests/e2e) and the OpenAI-compatible API tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from hartonomous_web.server_command import APP, uvicorn_command
from tests.conftest import ROOT, database_url_of_test_db

#: Django's escape hatch for ORM calls beside a running event loop (the browser tests set it for
#: themselves); it is never passed on to a server or worker process.
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != ASYNC_UNSAFE}
    env.update(extra)
    return env


def tail(path: Path, chars: int = 6000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as error:
        return f"(cannot read {path}: {error})"


class AsgiServer:
    """`python -m uvicorn` serving hartonomous_web.asgi on a free port, as scripts/run.sh.

    ``media_root`` defaults to the test's media directory (tests/conftest.py: isolated_media), as
    the worker gets it: blobs the server stores must be where the worker and the test look for them.
    ``env`` adds environment variables (settings) for the server process; ``app`` is the ASGI
    application to serve.
    """

    def __init__(
        self, *, media_root: str | Path | None = None, env: dict[str, str] | None = None, app: str = APP
    ) -> None:
        from django.conf import settings

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(os.environ["DATA_DIR"]) / f"uvicorn-{time.time_ns()}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.media_root = Path(media_root or settings.MEDIA_ROOT)
        process_env = child_env(
            DATABASE_URL=database_url_of_test_db(), PYTHONUNBUFFERED="1", MEDIA_ROOT=str(self.media_root), **(env or {})
        )
        self.proc = subprocess.Popen(
            uvicorn_command(sys.executable, "127.0.0.1", self.port, app=app),
            cwd=ROOT,
            env=process_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_until_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.proc.returncode}:\n{tail(self.log_path)}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError as error:
                last_error = error
            time.sleep(0.1)
        raise RuntimeError(
            f"uvicorn did not answer /healthz within {timeout:.0f} s ({last_error}):\n{tail(self.log_path)}"
        )

    def log(self) -> str:
        self._log.flush()
        return tail(self.log_path)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()
