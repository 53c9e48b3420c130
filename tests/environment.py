"""Test environment, loaded by pytest before Django reads its settings (`-p tests.environment`).

Settings come from environment variables, so the test defaults are set here. When no
REDIS_URL is given (`make test` gives one), a private redis-server is started for the run.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("SECRET_KEY", "test-secret-key-" + "t" * 40)
# Each pytest process gets its own data directory (database, media), so that runs side
# by side (two shells, CI beside a developer) never share a test database.
_TEST_ROOT = ROOT / "var" / "test"
os.environ.setdefault("DATA_DIR", str(_TEST_ROOT / f"run-{os.getpid()}"))
os.environ.setdefault("JOB_HEARTBEAT_INTERVAL", "0.5")
os.environ.setdefault("JOB_HEARTBEAT_TIMEOUT", "4")
os.environ.setdefault("JOB_EXTRA_MODULES", "tests.jobkinds")
os.environ.setdefault("WORKER_SEEN_WINDOW", "60")


def _remove_dead_runs() -> None:
    """Delete the data directories of earlier runs whose process is gone."""
    for run_dir in _TEST_ROOT.glob("run-*"):
        pid = run_dir.name.removeprefix("run-")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(run_dir, ignore_errors=True)


_remove_dead_runs()
Path(os.environ["DATA_DIR"], "staticfiles").mkdir(parents=True, exist_ok=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_private_redis() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("Tests need Redis: set REDIS_URL or install redis-server (make test does both).")
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="hartonomous-redis-")
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    atexit.register(proc.terminate)
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("The private redis-server for the tests did not start.")


if not os.environ.get("REDIS_URL"):
    os.environ["REDIS_URL"] = _start_private_redis()
