"""12-factor settings (hartonomous_web/settings.py) and the production checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DEBUG", "SECRET_KEY", "REDIS_URL")}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120
    )


SHOW_SETTINGS = (
    "import django, json, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'hartonomous_web.settings'); "
    "django.setup();"
    "from django.conf import settings as s;"
    "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'], 'name': str(s.DATABASES['default']['NAME']),"
    " 'options': s.DATABASES['default'].get('OPTIONS', {}), 'layer': s.CHANNEL_LAYERS['default']['BACKEND'],"
    " 'cache': s.CACHES['default']['BACKEND'], 'neo4j': s.NEO4J_URI, 'media': str(s.MEDIA_ROOT)}))"
)


def test_production_settings_pass_check_deploy(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "DEBUG": "0",
            "SECRET_KEY": "k" * 20 + "Zq9-x!e@r#t$y%u^i&o*p(a)s_d+f=g" + "h" * 20,
            "ALLOWED_HOSTS": "hartonomous.example.org",
            "DATA_DIR": str(tmp_path),
        },
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_missing_secret_key_in_production_is_a_clear_error(tmp_path):
    result = run_python(SHOW_SETTINGS, DEBUG="0", DATA_DIR=str(tmp_path))
    assert result.returncode != 0 and "SECRET_KEY is not set" in result.stderr


@pytest.mark.parametrize(
    ("url", "engine"),
    [
        (None, "django.db.backends.sqlite3"),
        ("postgres://u:p@db.example.org:5432/hart", "django.db.backends.postgresql"),
        (
            "mssql://sa:pw@sql.example.org:1433/hart?driver=ODBC+Driver+18+for+SQL+Server&TrustServerCertificate=yes",
            "mssql",
        ),
    ],
)
def test_database_url_selects_the_backend(tmp_path, url, engine):
    env = {
        "DEBUG": "1",
        "DATA_DIR": str(tmp_path),
        "REDIS_URL": "redis://cache.example.org:6379/1",
        "NEO4J_URI": "bolt://graph:7687",
        "MEDIA_ROOT": str(tmp_path / "blobs"),
    }
    if url:
        env["DATABASE_URL"] = url
    result = run_python(SHOW_SETTINGS, **env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout.strip().splitlines()[-1])
    assert shown["engine"] == engine
    assert shown["layer"] == "channels_redis.core.RedisChannelLayer" and shown["cache"].endswith("RedisCache")
    assert shown["neo4j"] == "bolt://graph:7687" and shown["media"] == str(tmp_path / "blobs")
    if url is None:
        assert shown["name"] == str(tmp_path / "hartonomous.sqlite3")
    if engine == "mssql":
        assert shown["options"]["driver"] == "ODBC Driver 18 for SQL Server"
        assert "TrustServerCertificate=yes" in shown["options"]["extra_params"]


def test_without_redis_url_everything_is_in_memory(tmp_path):
    result = run_python(SHOW_SETTINGS, DEBUG="1", DATA_DIR=str(tmp_path))
    shown = json.loads(result.stdout.strip().splitlines()[-1])
    assert shown["layer"] == "channels.layers.InMemoryChannelLayer" and shown["cache"].endswith("LocMemCache")
