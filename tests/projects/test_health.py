"""The health endpoints (projects/views/health.py): liveness, and readiness of the database, Redis and workers."""

from __future__ import annotations

import time


def test_healthz(client, db):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_needs_a_worker(transactional_db, client, start_worker):
    body = client.get("/readyz").json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]
    assert not body["checks"]["workers"]["ok"] and "rqworker" in body["checks"]["workers"]["error"]
    start_worker()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = client.get("/readyz")
        if response.status_code == 200:
            break
        time.sleep(0.3)
    assert response.status_code == 200, response.content
    assert response.json()["checks"]["workers"]["seen"][0]["queues"] == ["default", "cpu", "gpu"]


def test_readyz_reports_unreachable_redis(client, db, monkeypatch):
    import django_rq
    import redis

    monkeypatch.setattr(
        django_rq, "get_connection", lambda *a, **k: redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    )
    response = client.get("/readyz")
    assert response.status_code == 503
    assert not response.json()["checks"]["redis"]["ok"]
