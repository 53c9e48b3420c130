"""Liveness and readiness endpoints for load balancers and orchestrators."""

from __future__ import annotations

import time

from django.conf import settings
from django.db import connection
from django.http import JsonResponse


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    """Database, Redis and at least one worker seen recently; 503 with the failing part otherwise."""
    checks = readiness()
    ok = all(check["ok"] for check in checks.values())
    return JsonResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)


def readiness() -> dict[str, dict]:
    checks: dict[str, dict] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = {"ok": True, "vendor": connection.vendor}
    except Exception as exc:  # noqa: BLE001
        checks["database"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    try:
        import django_rq
        from rq import Worker

        redis = django_rq.get_connection("default")
        redis.ping()
        checks["redis"] = {"ok": True}
        now = time.time()
        seen = []
        for worker in Worker.all(connection=redis):
            beat = worker.last_heartbeat
            if beat is not None and now - beat.timestamp() <= settings.WORKER_SEEN_WINDOW:
                seen.append({"name": worker.name, "queues": worker.queue_names()})
        checks["workers"] = {"ok": bool(seen), "seen": seen}
        if not seen:
            checks["workers"]["error"] = (
                "No RQ worker reported recently: start one with `python manage.py rqworker default cpu gpu`."
            )
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        checks["workers"] = {"ok": False, "error": "Unknown: Redis is unreachable."}
    if checks["database"]["ok"]:
        from projects.background import reap_stale_jobs

        reap_stale_jobs()
    return checks
