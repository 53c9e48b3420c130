"""Settings for Hartonomous, configured from the environment (12-factor).

Every deployment difference is an environment variable; nothing here branches on
hostnames. See README ("Configuration") for the list.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value in (None, "") else value


def env_bool(name: str, default: bool) -> bool:
    value = env(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in (env(name, default) or "").split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)

#: Where the platform keeps its files when nothing else is configured:
#: the SQLite database, uploaded blobs, generated artifacts.
DATA_DIR = Path(env("DATA_DIR", str(BASE_DIR / "var"))).resolve()

SECRET_KEY = env("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment (at least 50 random characters), "
            "or set DEBUG=1 for local development."
        )
    SECRET_KEY = "insecure-development-key-only-used-when-DEBUG-is-on-" + "x" * 20

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_rq",
    "channels",
    "projects",
    "analysis",
    "distillation",
    "runtime",
]

# WhiteNoise is last, not second as its docs suggest: it is the only sync-only middleware, and
# under ASGI Django switches between the event loop and a thread around every sync-only
# middleware placed below async ones. Last, the whole chain runs synchronously on the
# request's thread in one hop (~1 ms less CPU per request, bench/README.md). Static files then
# pass through the middleware above it, which do nothing costly for them (sessions and users
# are loaded lazily, only when read).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
]

ROOT_URLCONF = "hartonomous_web.urls"
ASGI_APPLICATION = "hartonomous_web.asgi.application"
#: HTTP requests that run Django code at once in the one server process, each on its own
#: long-lived thread (hartonomous_web/request_threads.py); more wait their turn.
WEB_THREADS = int(env("WEB_THREADS", "4"))
#: Requests start one at a time; a request that has run this long lets the next one start
#: beside it on another thread (request_threads.py: quick requests never share the GIL, slow
#: ones hold the others up for no longer than this).
WEB_THREAD_HANDOFF_MS = float(env("WEB_THREAD_HANDOFF_MS", "50"))

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "projects.context_processors.tenancy",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------
# DATABASE_URL: sqlite:///path, postgres://user@host/db, or
# mssql://user:pass@host:1433/db?driver=ODBC+Driver+18+for+SQL+Server (see sql/README.md).
DATABASE_URL = env("DATABASE_URL", f"sqlite:///{DATA_DIR / 'hartonomous.sqlite3'}")
# CONN_MAX_AGE is 0 except in the web server's request threads (below): Django's own ASGI
# handler runs every request in a new thread, where a persistent connection is never reused,
# only left open until garbage collection (20 concurrent clients once exhausted PostgreSQL's
# 100 connections in bench/web_latency.py).
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    Path(_db["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # Web, worker and tests share one file: wait for locks instead of failing, and let
    # readers run beside the writer (WAL).
    # The web server (DATABASE_POOL, set by asgi.py) runs requests on a few long-lived threads
    # (request_threads.py): each keeps its connection instead of opening the file, mapping the
    # WAL index and running the PRAGMAs again on every request. Other processes (workers,
    # commands, tests) open and close one per unit of work as before.
    _db["CONN_MAX_AGE"] = 600 if env_bool("DATABASE_POOL", False) else 0
    _db["CONN_HEALTH_CHECKS"] = True
    _db["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    _db["TEST"] = {"NAME": str(DATA_DIR / "test-hartonomous.sqlite3")}
else:
    from projects.sqlserver import is_mssql_url, mssql_options_from_url

    if is_mssql_url(DATABASE_URL):
        # dj-database-url maps mssql:// to an obsolete engine name; mssql-django is "mssql".
        _db["ENGINE"] = "mssql"
        _db["OPTIONS"] = mssql_options_from_url(DATABASE_URL)
    elif _db["ENGINE"] == "django.db.backends.postgresql" and env_bool("DATABASE_POOL", False):
        # CONN_MAX_AGE is 0, so without a pool every request starts a PostgreSQL backend
        # (~8–11 ms of PostgreSQL CPU per request in bench/web_latency.py). Django's pool
        # (psycopg_pool) hands connections back instead of closing them; at most
        # DATABASE_POOL_MAX_SIZE per process. The ASGI server turns it on (asgi.py); RQ
        # workers do not, because a work horse is a fork and must not share the pool's sockets.
        _db["OPTIONS"] = {
            **_db.get("OPTIONS", {}),
            "pool": {"min_size": 2, "max_size": int(env("DATABASE_POOL_MAX_SIZE", "10")), "timeout": 30},
        }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, queues, realtime ------------------------------------------------------------
REDIS_URL = env("REDIS_URL")

RQ_QUEUES = {
    name: {"URL": REDIS_URL or "redis://127.0.0.1:6379/0", "DEFAULT_TIMEOUT": timeout}
    for name, timeout in (("default", 600), ("cpu", 6 * 3600), ("gpu", 24 * 3600))
}

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 reads with a 5 s socket timeout by default, the same as the layer's
            # blocking BZPOPMIN: an idle consumer then crashes every few seconds
            # (django/channels_redis#422). Reads may wait longer than the pop.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}], "prefix": "hartonomous:channels"},
        }
    }
    # Sessions are read from Redis, written through to the database (which keeps them if
    # Redis loses them): one database query less on every page.
    SESSION_ENGINE = "hartonomous_web.redis_cache"  # Django's cached_db, safe without Redis
    CACHES = {
        "default": {
            "BACKEND": "hartonomous_web.redis_cache.SharedRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "hartonomous",
        }
    }
else:
    # One process (tests, `manage.py runserver`): everything in memory.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

#: A running job writes a heartbeat this often (seconds) ...
JOB_HEARTBEAT_INTERVAL = float(env("JOB_HEARTBEAT_INTERVAL", "5"))
#: ... and is declared dead (failed) when none arrived for this long.
JOB_HEARTBEAT_TIMEOUT = float(env("JOB_HEARTBEAT_TIMEOUT", "60"))
#: Extra modules defining job kinds (comma separated), imported at start-up.
JOB_EXTRA_MODULES = env_list("JOB_EXTRA_MODULES")
#: A worker counts as alive for /readyz when it reported within this many seconds.
WORKER_SEEN_WINDOW = float(env("WORKER_SEEN_WINDOW", "600"))

# --- Graph store (used by analysis; read here so every deployment configures it once) ---
NEO4J_URI = env("NEO4J_URI")
NEO4J_USER = env("NEO4J_USER", "neo4j")
NEO4J_PASSWORD = env("NEO4J_PASSWORD")

# --- Files ---------------------------------------------------------------------------
MEDIA_ROOT = Path(env("MEDIA_ROOT", str(DATA_DIR / "media")))
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("STATIC_ROOT", str(DATA_DIR / "staticfiles")))
STORAGES = {
    # Blobs go through Django's storage API; set STORAGE_BACKEND to e.g.
    # "storages.backends.s3.S3Storage" (django-storages) for S3-compatible stores.
    "default": {"BACKEND": env("STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage")},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG
#: Largest file one upload may carry (bytes); bigger files are imported on the server.
UPLOAD_MAX_BYTES = int(env("UPLOAD_MAX_BYTES", str(200 * 1024**3)))
#: Chunk size the browser uploader uses, and the largest chunk the server accepts. Each chunk is a
#: request (authentication, queries, a pipeline that fills and drains), so larger chunks cost less
#: per byte (bench/upload.py: 256 MiB ~1.4x the speed of 64 MiB). The size costs the server no
#: memory (bodies are streamed, hartonomous_web/streamed_body.py) and no resume granularity (a
#: dropped chunk keeps what arrived). The browser reads each chunk into memory to send its SHA-256
#: (X-Chunk-SHA256), hence 64 MiB there; API clients may send up to UPLOAD_MAX_CHUNK_BYTES.
UPLOAD_CHUNK_BYTES = int(env("UPLOAD_CHUNK_BYTES", str(64 * 1024**2)))
UPLOAD_MAX_CHUNK_BYTES = 256 * 1024**2
#: Write upload chunks with O_DIRECT (straight to the disk, not through the page cache) where the
#: file system allows it; file systems that refuse it (tmpfs) are written through the page cache.
UPLOAD_DIRECT_IO = env_bool("UPLOAD_DIRECT_IO", True)

# --- Auth ----------------------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
#: How long an invitation link stays valid.
INVITATION_TTL_DAYS = int(env("INVITATION_TTL_DAYS", "7"))

# --- REST API ------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "projects.api.auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "projects.api.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "projects.api.throttling.WindowAnonRateThrottle",
        "projects.api.throttling.WindowUserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env("API_THROTTLE_ANON", "60/minute"),
        "user": env("API_THROTTLE_USER", "3000/minute"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Hartonomous API",
    "DESCRIPTION": "Organisations, projects, members, tokens and jobs. "
    "Authenticate with `Authorization: Bearer <token>` (a personal token of one organisation).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Several models have a field called "role"; name each choice set after its meaning.
    "ENUM_NAME_OVERRIDES": {
        "MemberRoleEnum": "projects.models.Role",
        "ModelRoleEnum": "projects.models.ModelRole",
        "ModelFormatEnum": "projects.models.ModelFormat",
        "DatasetRoleEnum": "projects.models.datasets.DatasetRole",
        "DatasetFormatEnum": "projects.models.datasets.DatasetFormat",
        "CoderKindEnum": "analysis.models.CoderKind",
        "CoderOptimizerEnum": "analysis.models.CoderOptimizer",
        "CoderSourceEnum": "analysis.models.CoderSource",
        "InferenceSourceEnum": "runtime.models.Source",
        "CoderExportFormatEnum": "analysis.models.ExportFormat",
        "CoderExportStatusEnum": "analysis.models.ExportStatus",
    },
    # Serve Swagger UI from the installed sidecar package, not from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Security (production: DEBUG=0) ----------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the cookie-less meta tag; keep default
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(env("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Datasets (projects.engine.datasets.DatasetLimits) -----------------------------------
#: Most bytes of text one dataset may hold: a zip's inflated size, a plain file's size.
DATASET_MAX_UNCOMPRESSED_BYTES = int(env("DATASET_MAX_UNCOMPRESSED_BYTES", str(20 * 1024**3)))
#: Most entries (files and folders) a zip may have.
DATASET_MAX_FILES = int(env("DATASET_MAX_FILES", "100000"))
#: Longest document in characters; a longer line (paragraph, file) is refused with its line number.
DATASET_MAX_DOCUMENT_CHARS = int(env("DATASET_MAX_DOCUMENT_CHARS", "1000000"))

# --- Models (projects.engine.archives.ArchiveLimits for zipped model folders) -------------
#: Most bytes a zipped model folder may inflate to (declared, and actually inflated).
MODEL_ARCHIVE_MAX_UNCOMPRESSED_BYTES = int(env("MODEL_ARCHIVE_MAX_UNCOMPRESSED_BYTES", str(200 * 1024**3)))
#: Most entries (files and folders) a zipped model folder may have.
MODEL_ARCHIVE_MAX_FILES = int(env("MODEL_ARCHIVE_MAX_FILES", "10000"))

# --- Runtime: agents and chat -------------------------------------------------------
#: Memory the in-process llama.cpp model cache may fill before it evicts idle models (MiB);
#: default: half of this machine's memory.
AGENT_MEMORY_BUDGET_MB = int(
    env(
        "AGENT_MEMORY_BUDGET_MB",
        str(
            (os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) // 2**20 // 2 if hasattr(os, "sysconf") else 4096
        ),
    )
)
#: Saved llama.cpp conversation states (KV cache), so resuming a long conversation skips re-reading it.
AGENT_STATE_DIR = Path(env("AGENT_STATE_DIR", str(DATA_DIR / "kv-states")))
#: The longest user message accepted, in characters.
CHAT_MAX_MESSAGE_CHARS = int(env("CHAT_MAX_MESSAGE_CHARS", "32000"))
#: An answer still "streaming" with no progress saved for this long was cut off by a restart.
CHAT_STALE_STREAM_SECONDS = float(env("CHAT_STALE_STREAM_SECONDS", "30"))
#: Timeout for remote OpenAI-compatible backends (seconds).
REMOTE_BACKEND_TIMEOUT = float(env("REMOTE_BACKEND_TIMEOUT", "120"))
