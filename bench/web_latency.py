#!/usr/bin/env python
"""Web latency benchmark: the dashboard page and the project-list API under concurrent load.

What it does, per database (SQLite and/or PostgreSQL):

1. makes a private world: a temporary DATA_DIR (SQLite file, collected static files), a
   dedicated PostgreSQL database (``hartonomous_bench``, dropped afterwards) and a private
   ``redis-server`` on a free port (cache, throttling and channel layer, as ``make run``);
2. ``manage.py migrate`` and ``collectstatic`` (DEBUG=0 serves the manifest storage);
3. seeds one organisation with ``--projects`` projects (through ``projects.actions``),
   one member per client (each with a session and an API token), two side organisations
   (the header's organisation switcher) and 60 jobs, then counts the SQL queries of each
   benchmarked request in-process (``CaptureQueriesContext``);
4. starts the real server the way ``scripts/run.sh`` does
   (``python -m uvicorn --host 127.0.0.1 --port PORT --lifespan off
   --http hartonomous_web.http_protocol:HttpProtocol hartonomous_web.asgi:application``)
   but with production settings (DEBUG=0, SECRET_KEY, SECURE_SSL_REDIRECT=0, ALLOWED_HOSTS),
   then the alternatives asked for with ``--servers`` (``uvicorn --workers N``; one or N
   daphne processes sharing the port with ``SO_REUSEPORT``, the server used before);
5. drives it with ``--clients`` closed-loop clients (threads, one keep-alive
   ``http.client`` connection each, no think time): a warm-up, then ``--requests``
   timed requests per endpoint; every response must be 200 with the expected content.
   CPU use during each timed run is read from /proc (server, load generator, database,
   Redis, everything else, VM steal), because the load generator shares the machine.

    GET /o/<org>/                      session cookie (a different member per client)
    GET /api/v1/orgs/<org>/projects/   Authorization: Bearer <token> (ditto)

JSON on stdout; one file per database in bench/results/ (web_latency_<db>.json).
Progress goes to stderr. Stdlib only (plus the project's own venv for the server).

    .venv/bin/python bench/web_latency.py [--db sqlite|postgres|both] [--requests 2000]
        [--clients 20] [--projects 1000] [--servers uvicorn:1[,daphne:1,uvicorn:2]]
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]
import _machine  # noqa: E402
from _processes import free_port, http_ok, start_redis, stop, wait_for  # noqa: E402

from hartonomous_web.server_command import uvicorn_command  # noqa: E402

RESULTS = ROOT / "bench" / "results"
ORG_SLUG = "bench"
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DB = "hartonomous_bench"
GOAL_P99_MS = 150.0
#: A timed run during which other processes used more than this many cores is marked disturbed.
DISTURBED_CORES = 0.25


def log(*parts) -> None:
    print("[bench]", *parts, file=sys.stderr, flush=True)


# --- Helpers that run inside Django (subprocess: `web_latency.py _seed ...`) -------------------


def _seed(projects: int, clients: int) -> dict:
    import django

    django.setup()
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.db import transaction
    from django.utils import timezone

    from projects import actions
    from projects.models import Job, JobStatus, Membership, Project, Role

    User = get_user_model()
    started = time.perf_counter()
    with transaction.atomic():
        # No password: create_user() sets an unusable one (no PBKDF2 cost); people log in
        # through sessions created below, exactly what the login view would store.
        users = [User.objects.create_user(f"bench-user-{i:02d}", email=f"u{i}@bench.invalid") for i in range(clients)]
        owner = users[0]
        org = actions.do_create_organization(owner, "Bench Organisation", ORG_SLUG)
        side = [actions.do_create_organization(owner, f"Side Organisation {i}", f"bench-side-{i}") for i in range(2)]
        for user in users[1:]:
            Membership.objects.create(organization=org, user=user, role=Role.MEMBER)
            for other in side:
                Membership.objects.create(organization=other, user=user, role=Role.VIEWER)
        made = [
            actions.do_create_project(
                org,
                owner,
                f"Project {i:04d}",
                description=f"Benchmark project number {i}: a teacher model, its datasets and students. " * 2,
            )
            for i in range(projects)
        ]
        statuses = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED, JobStatus.RUNNING]
        now = timezone.now()
        for i in range(60):
            status = statuses[i % len(statuses)]
            Job.objects.create(
                organization=org,
                project=made[i % len(made)] if made else None,
                kind="projects.recount_stats",
                status=status,
                progress=0.5 if status == JobStatus.RUNNING else (1.0 if status == JobStatus.SUCCEEDED else 0.0),
                message="Counting" if status == JobStatus.RUNNING else "",
                created_by=owner,
                started_at=now if status != JobStatus.QUEUED else None,
                # Heartbeat in the future: the reaper (which still runs its query once a second
                # per process) must not turn these into failures half-way through a run.
                heartbeat_at=now + datetime.timedelta(days=1) if status == JobStatus.RUNNING else None,
                finished_at=now if status in Job.FINISHED else None,
            )
        tokens = [actions.do_create_token(org, user, "bench")[1] for user in users]
    engine = import_module(settings.SESSION_ENGINE)
    sessions = []
    for user in users:
        store = engine.SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        sessions.append(store.session_key)
    return {
        "org": org.slug,
        "usernames": [u.username for u in users],
        "sessions": sessions,
        "tokens": tokens,
        "session_cookie": settings.SESSION_COOKIE_NAME,
        "projects": Project.objects.for_org(org).count(),
        "jobs": Job.objects.for_org(org).count(),
        "members": Membership.objects.for_org(org).count(),
        "seconds": round(time.perf_counter() - started, 2),
        "django_settings": {
            "DATABASE_ENGINE": settings.DATABASES["default"]["ENGINE"],
            "CONN_MAX_AGE": settings.DATABASES["default"]["CONN_MAX_AGE"],
            "DATABASE_OPTIONS": settings.DATABASES["default"].get("OPTIONS", {}),
            "SESSION_ENGINE": settings.SESSION_ENGINE,
            "CACHE_BACKEND": settings.CACHES["default"]["BACKEND"],
            "MIDDLEWARE": settings.MIDDLEWARE,
            "STATICFILES_STORAGE": settings.STORAGES["staticfiles"]["BACKEND"],
            "API_THROTTLE_RATES": settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "API_PAGE_SIZE": settings.REST_FRAMEWORK["PAGE_SIZE"],
            "WEB_THREADS": settings.WEB_THREADS,
        },
    }


def _queries(seed: dict) -> dict:
    """SQL queries (and in-process time) of each benchmarked request, through the test client."""
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from projects import background

    out = {}
    for name, path, cookie, header in (
        ("dashboard", f"/o/{seed['org']}/", seed["sessions"][1], None),
        ("projects_api", f"/api/v1/orgs/{seed['org']}/projects/", None, seed["tokens"][1]),
    ):
        client = Client(HTTP_HOST="127.0.0.1")
        if cookie:
            client.cookies[seed["session_cookie"]] = cookie
        headers = {"Authorization": f"Bearer {header}"} if header else {}
        runs = []
        for label in ("first", "steady"):
            if label == "first":
                background._last_reap = 0.0  # the once-a-second stale-job reaper runs on this one
            with CaptureQueriesContext(connection) as ctx:
                response = client.get(path, headers=headers)
            assert response.status_code == 200, (name, response.status_code)
            runs.append(
                {"request": label, "count": len(ctx.captured_queries), "sql": [q["sql"] for q in ctx.captured_queries]}
            )
        n = 50
        t0 = time.perf_counter()
        for _ in range(n):
            client.get(path, headers=headers)
        out[name] = {
            "queries_first_request": runs[0]["count"],
            "queries_steady": runs[1]["count"],
            "sql_first_request": runs[0]["sql"],
            "in_process_ms_mean": round((time.perf_counter() - t0) / n * 1000, 2),
            "response_bytes": len(response.content),
        }
    return out


# --- Processes: Redis, PostgreSQL database, the web server ----------------------------------


def pg_admin(sql: str, fetch: bool = False):
    import psycopg  # in the project's venv

    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=10) as conn:
        cur = conn.execute(sql)
        return cur.fetchone()[0] if fetch else None


def manage(env: dict, *args: str, capture: bool = False) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, text=True, capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout if capture else ""


def django_helper(env: dict, command: str, payload: dict) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, command, json.dumps(payload)], cwd=ROOT, env=env, text=True, capture_output=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


class Server:
    """``procs`` processes of ``kind`` (daphne or uvicorn) serving one port.

    uvicorn:1 is exactly the command of scripts/run.sh and docker/Dockerfile; uvicorn:N
    (N > 1) is ``uvicorn --workers N`` (one socket shared by the workers). daphne:N starts
    N daphne processes (the server before uvicorn), each on its own listening socket bound
    to the same port with SO_REUSEPORT (the kernel spreads new connections over them by a
    hash of the address pair).
    """

    def __init__(self, env: dict, kind: str, procs: int, logdir: Path):
        self.env, self.kind, self.procs, self.logdir = env, kind, procs, logdir
        self.port = free_port()
        self.processes: list[subprocess.Popen] = []

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.procs}"

    @property
    def is_default(self) -> bool:
        return self.kind == "uvicorn" and self.procs == 1

    @property
    def label(self) -> str:
        if self.is_default:
            return "default: 1 uvicorn process (the command of scripts/run.sh and docker/Dockerfile)"
        if self.kind == "daphne":
            return f"alternative: {self.procs} daphne process(es) on one port (SO_REUSEPORT; the server before uvicorn)"
        return f"alternative: uvicorn --workers {self.procs}"

    def command(self, display: bool = False) -> list[str]:
        python = "python" if display else sys.executable
        if self.kind == "daphne":
            bind = (
                ["-b", "127.0.0.1", "-p", "PORT" if display else str(self.port)] if self.procs == 1 else ["--fd", "FD"]
            )
            return [python, "-m", "daphne", *bind, "hartonomous_web.asgi:application"]
        workers = [] if self.procs == 1 else ["--workers", str(self.procs)]
        return uvicorn_command(python, "127.0.0.1", "PORT" if display else self.port, *workers)

    def version(self) -> str | None:
        code = "import sys, importlib.metadata as m; print(m.version(sys.argv[1]))"
        result = subprocess.run([sys.executable, "-c", code, self.kind], capture_output=True, text=True)
        return result.stdout.strip() or None

    def start(self) -> None:
        if self.kind == "daphne" and self.procs > 1:
            for i in range(self.procs):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind(("127.0.0.1", self.port))
                sock.listen(1024)
                sock.setblocking(False)
                try:
                    cmd = self.command()
                    cmd[cmd.index("FD")] = str(sock.fileno())
                    self._spawn(cmd, i, pass_fds=(sock.fileno(),))
                finally:
                    sock.close()  # a copy left open here would get connections nobody accepts
        else:
            self._spawn(self.command(), 0)
        wait_for(self.healthy, f"{self.name} on port {self.port}", 90)

    def _spawn(self, cmd: list[str], index: int, pass_fds=()) -> None:
        out = open(self.logdir / f"{self.kind}-{self.procs}-{index}.log", "ab")
        self.processes.append(
            subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=pass_fds,
                start_new_session=True,
            )
        )
        out.close()

    def healthy(self) -> bool:
        for proc in self.processes:
            if proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {proc.returncode}; see the logs in {self.logdir}")
        return http_ok(self.port)

    def pids(self) -> list[int]:
        return [pid for proc in self.processes for pid in proc_tree(proc.pid)]

    def connections_per_process(self) -> list[int]:
        """Established client connections held by each server process that holds any (Linux)."""
        inodes = set()
        try:
            for table in ("/proc/net/tcp", "/proc/net/tcp6"):
                with open(table) as handle:
                    for line in list(handle)[1:]:
                        fields = line.split()
                        if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == self.port:
                            inodes.add(fields[9])
            counts = []
            for pid in self.pids():
                fd_dir = f"/proc/{pid}/fd"
                links = {os.readlink(f"{fd_dir}/{fd}") for fd in os.listdir(fd_dir)}
                counts.append(sum(f"socket:[{inode}]" in links for inode in inodes))
            return sorted((c for c in counts if c), reverse=True)
        except OSError:
            return []

    def stop(self) -> None:
        for proc in self.processes:
            stop(proc)
        self.processes = []


# --- CPU accounting (Linux /proc): who used the two cores during a timed run ----------------------


def proc_tree(pid: int) -> list[int]:
    pids, i = [pid], 0
    while i < len(pids):
        try:
            for task in os.listdir(f"/proc/{pids[i]}/task"):
                with open(f"/proc/{pids[i]}/task/{task}/children") as handle:
                    pids += [int(x) for x in handle.read().split()]
        except OSError:
            pass
        i += 1
    return pids


def cpu_seconds(pids, children: bool = False) -> float:
    """utime + stime of these processes; with ``children``, plus that of their reaped children."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                rest = handle.read().rsplit(")", 1)[1].split()
            total += int(rest[11]) + int(rest[12])  # utime, stime
            if children:
                total += int(rest[13]) + int(rest[14])  # cutime, cstime
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot."""
    try:
        with open("/proc/stat") as handle:
            values = [int(x) for x in handle.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


class Meter:
    """CPU used during a timed run, in cores (CPU seconds per wall second)."""

    def __init__(self, server: Server, redis_pid: int | None, db_pids=lambda: []):
        self.server, self.redis_pid, self.db_pids = server, redis_pid, db_pids

    def _sample(self) -> dict:
        busy, steal = machine_cpu()
        own = os.times()
        return {
            "t": time.perf_counter(),
            "server": cpu_seconds(self.server.pids()),
            "loadgen": own.user + own.system,
            "redis": cpu_seconds([self.redis_pid]) if self.redis_pid else 0.0,
            "db": sum(cpu_seconds(proc_tree(pid), children=True) for pid in self.pids_db),
            "busy": busy,
            "steal": steal,
        }

    def begin(self) -> None:
        self.pids_db = self.db_pids()
        self.first = self._sample()

    def end(self) -> dict:
        last = self._sample()
        wall = last["t"] - self.first["t"]
        used = {k: (last[k] - self.first[k]) / wall for k in ("server", "loadgen", "redis", "db", "busy", "steal")}
        ours = used["server"] + used["loadgen"] + used["redis"] + used["db"]
        return {
            "server_cores": round(used["server"], 2),
            "load_generator_cores": round(used["loadgen"], 2),
            "redis_cores": round(used["redis"], 2),
            "database_server_cores": round(used["db"], 2),
            "machine_busy_cores": round(used["busy"], 2),
            "other_processes_cores": round(max(0.0, used["busy"] - ours), 2),
            "steal_cores": round(used["steal"], 2),
            "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        }


# --- Load generator ---------------------------------------------------------------------------


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * pct // 100))
    return sorted_values[int(rank) - 1]


def summarise(latencies: list[float], seconds: float, errors: int, sample_errors: list[str]) -> dict:
    ms = sorted(x * 1000 for x in latencies)
    return {
        "requests": len(ms),
        "errors": errors,
        "error_samples": sample_errors[:5],
        "p50_ms": round(percentile(ms, 50), 2),
        "p90_ms": round(percentile(ms, 90), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(ms[-1], 2) if ms else None,
        "mean_ms": round(sum(ms) / len(ms), 2) if ms else None,
        "throughput_rps": round(len(ms) / seconds, 1) if seconds else None,
        "wall_s": round(seconds, 2),
    }


def load(
    port: int,
    path: str,
    client_headers: list[dict],
    requests: int,
    warmup: int,
    check,
    on_warm=None,
    meter: Meter | None = None,
) -> dict:
    """Closed loop: len(client_headers) threads, each with its own keep-alive connection.

    Every thread first sends its share of ``warmup`` requests (not timed), all meet at a
    barrier, then they take request numbers from a shared counter until ``requests`` have
    been sent; each request is timed from just before sending to the last body byte.
    """
    clients = len(client_headers)
    lock = threading.Lock()
    state = {"next": 0, "errors": 0, "samples": [], "end": 0.0, "start": 0.0, "spread": None}

    def before_timed() -> None:  # runs once, when every client is warm, before any timed request
        state["spread"] = on_warm() if on_warm else None
        if meter:
            meter.begin()
        state["start"] = time.perf_counter()

    barrier = threading.Barrier(clients + 1, action=before_timed)
    per_thread: list[list[float]] = [[] for _ in range(clients)]

    def one(conn_box: list, client: dict) -> tuple[float, str | None]:
        t0 = time.perf_counter()
        try:
            conn = conn_box[0]
            conn.request("GET", path, headers=client["headers"])
            resp = conn.getresponse()
            body = resp.read()
            elapsed = time.perf_counter() - t0
            problem = None if resp.status == 200 else f"HTTP {resp.status}"
            if problem is None:
                problem = check(body, client["user"])
            if resp.will_close:
                conn.close()
                conn_box[0] = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            return elapsed, problem
        except (OSError, http.client.HTTPException) as exc:
            conn_box[0].close()
            conn_box[0] = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            return time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"

    def worker(index: int) -> None:
        client = client_headers[index]
        box = [http.client.HTTPConnection("127.0.0.1", port, timeout=60)]
        share = warmup // clients + (1 if index < warmup % clients else 0)
        warm_problems = [p for _, p in (one(box, client) for _ in range(share)) if p]
        if warm_problems:
            with lock:
                state["samples"].append("warm-up: " + warm_problems[0])
        barrier.wait()
        mine = per_thread[index]
        while True:
            with lock:
                if state["next"] >= requests:
                    break
                state["next"] += 1
            elapsed, problem = one(box, client)
            mine.append(elapsed)
            if problem:
                with lock:
                    state["errors"] += 1
                    state["samples"].append(problem)
        with lock:
            state["end"] = max(state["end"], time.perf_counter())
        box[0].close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()  # everyone is warm and connected
    for thread in threads:
        thread.join()
    cpu = meter.end() if meter else None
    spread = state["spread"]
    result = summarise(
        [x for xs in per_thread for x in xs], state["end"] - state["start"], state["errors"], state["samples"]
    )
    if cpu:
        result["cpu"] = cpu
    result["warmup_problems"] = [s for s in state["samples"] if s.startswith("warm-up")]
    if spread is not None:
        result["connections_per_process"] = spread
    return result


# --- One database ----------------------------------------------------------------------------


def bench_database(db: str, args, workdir: Path, redis_url: str, redis_pid: int) -> dict:
    data_dir = workdir / db
    data_dir.mkdir()
    if db == "sqlite":
        database_url = f"sqlite:///{data_dir / 'hartonomous.sqlite3'}"
        server_version = None
    else:
        pg_admin(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)')
        pg_admin(f'CREATE DATABASE "{PG_BENCH_DB}"')
        database_url = f"postgres://postgres@127.0.0.1:5432/{PG_BENCH_DB}"
        server_version = pg_admin("SHOW server_version", fetch=True)

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "DEBUG", "STATIC_ROOT", "MEDIA_ROOT"}
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "hartonomous_web.settings",
            "DEBUG": "0",
            "SECRET_KEY": "bench-" + secrets.token_urlsafe(48),
            "SECURE_SSL_REDIRECT": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATA_DIR": str(data_dir),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    settings_used = {k: env[k] for k in ("DEBUG", "SECURE_SSL_REDIRECT", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL")}
    settings_used["SECRET_KEY"] = "(random, 50+ characters)"
    settings_used["DATA_DIR"] = "(temporary directory)"

    log(f"{db}: migrate + collectstatic")
    t0 = time.perf_counter()
    manage(env, "migrate", "--noinput")
    manage(env, "collectstatic", "--noinput")
    log(f"{db}: migrated and collected in {time.perf_counter() - t0:.1f} s; seeding {args.projects} projects")
    seed = django_helper(env, "_seed", {"projects": args.projects, "clients": args.clients})
    log(
        f"{db}: seeded in {seed['seconds']} s ({seed['projects']} projects, {seed['members']} members, {seed['jobs']} "
        "jobs)"
    )
    queries = django_helper(env, "_queries", seed)
    for name, q in queries.items():
        log(
            f"{db}: {name}: {q['queries_first_request']} queries (first), {q['queries_steady']} steady, "
            f"{q['in_process_ms_mean']} ms in-process"
        )

    org = seed["org"]
    expected_projects = f"<strong>{seed['projects']}</strong> project".encode()
    api_prefix = f'{{"count":{seed["projects"]},'.encode()
    page_size = min(50, seed["projects"])

    def check_dashboard(body: bytes, user: str) -> str | None:
        if expected_projects not in body:
            return "dashboard without the project count (not logged in?)"
        if user.encode() not in body:
            return "dashboard for the wrong user"
        return None

    def check_api(body: bytes, user: str) -> str | None:
        if not body.startswith(api_prefix):
            return f"unexpected API body: {body[:80]!r}"
        if body.count(b'"slug":') != page_size:
            return "API page with the wrong number of projects"
        return None

    endpoints = {
        "dashboard": (
            f"/o/{org}/",
            [
                {"headers": {"Cookie": f"{seed['session_cookie']}={s}"}, "user": u}
                for s, u in zip(seed["sessions"], seed["usernames"], strict=True)
            ],
            check_dashboard,
        ),
        "projects_api": (
            f"/api/v1/orgs/{org}/projects/",
            [
                {"headers": {"Authorization": f"Bearer {t}", "Accept": "application/json"}, "user": u}
                for t, u in zip(seed["tokens"], seed["usernames"], strict=True)
            ],
            check_api,
        ),
    }

    def db_pids() -> list[int]:
        """PostgreSQL's postmaster: its CPU plus its reaped children's covers every backend."""
        if db != "postgres":
            return []  # SQLite runs inside the server processes
        data_dir = pg_admin("SHOW data_directory", fetch=True)
        try:
            with open(Path(data_dir) / "postmaster.pid") as handle:
                return [int(handle.readline())]
        except (OSError, ValueError):
            return []  # a server elsewhere: its CPU is not seen here

    configs = []
    for kind, procs in args.servers:
        server = Server(env, kind, procs, workdir)
        log(f"{db}: starting {server.name} ({server.label})")
        server.start()
        try:
            config = {
                "server": server.name,
                "label": server.label,
                "processes_serving": procs,
                "version": server.version(),
                "command": " ".join(server.command(display=True)),
                "endpoints": {},
            }
            for name, (path, clients, check) in endpoints.items():
                entry = {"path": path}
                if server.is_default and args.baseline_requests:
                    one = load(
                        server.port,
                        path,
                        clients[:1],
                        args.baseline_requests,
                        min(args.warmup, 20),
                        check,
                        meter=Meter(server, redis_pid, db_pids),
                    )
                    entry["one_client"] = one
                    log(
                        f"{db} {server.name} {name} 1 client: p50 {one['p50_ms']} ms, p99 {one['p99_ms']} ms, "
                        f"{one['throughput_rps']} req/s, errors {one['errors']}"
                    )
                run = load(
                    server.port,
                    path,
                    clients,
                    args.requests,
                    args.warmup,
                    check,
                    on_warm=server.connections_per_process,
                    meter=Meter(server, redis_pid, db_pids),
                )
                run["clients"] = len(clients)
                run["meets_goal"] = run["errors"] == 0 and run["p99_ms"] <= GOAL_P99_MS
                run["disturbed"] = run.get("cpu", {}).get("other_processes_cores", 0) > DISTURBED_CORES
                entry["concurrent"] = run
                config["endpoints"][name] = entry
                cpu = run.get("cpu", {})
                log(
                    f"{db} {server.name} {name} {len(clients)} clients: p50 {run['p50_ms']} ms, p99 {run['p99_ms']} "
                    "ms, "
                    f"{run['throughput_rps']} req/s, errors {run['errors']}, connections/process "
                    f"{run.get('connections_per_process')}, cores: server {cpu.get('server_cores')} "
                    f"loadgen {cpu.get('load_generator_cores')} db {cpu.get('database_server_cores')} "
                    f"other {cpu.get('other_processes_cores')} steal {cpu.get('steal_cores')}"
                )
            configs.append(config)
        finally:
            server.stop()

    return {
        "database": db,
        "database_server": f"PostgreSQL {server_version}"
        if server_version
        else f"SQLite {_machine.sqlite3.sqlite_version} (file, WAL)",
        "settings": settings_used | {"django": seed["django_settings"]},
        "seed": {k: seed[k] for k in ("org", "projects", "members", "jobs")} | {"side_organisations": 2},
        "queries_per_request": queries,
        "servers": configs,
    }


def summary_rows(results: list[dict]) -> list[dict]:
    rows = []
    for result in results:
        for config in result["servers"]:
            for endpoint, entry in config["endpoints"].items():
                run = entry["concurrent"]
                cpu = run.get("cpu", {})
                rows.append(
                    {
                        "db": result["database"],
                        "server": config["server"],
                        "endpoint": endpoint,
                        "clients": run["clients"],
                        "p50_ms": run["p50_ms"],
                        "p99_ms": run["p99_ms"],
                        "rps": run["throughput_rps"],
                        "errors": run["errors"],
                        "meets_goal": run["meets_goal"],
                        "one_client_p50_ms": entry.get("one_client", {}).get("p50_ms"),
                        "connections_per_process": run.get("connections_per_process"),
                        "server_cores": cpu.get("server_cores"),
                        "db_cores": cpu.get("database_server_cores"),
                        "other_cores": cpu.get("other_processes_cores"),
                        "disturbed": run.get("disturbed"),
                    }
                )
    return rows


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] in ("_seed", "_queries"):
        payload = json.loads(sys.argv[2])
        sys.path.insert(0, str(ROOT))
        os.chdir(ROOT)
        result = _seed(**payload) if sys.argv[1] == "_seed" else _queries(payload)
        print(json.dumps(result))
        return 0

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per endpoint (default 2000)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    parser.add_argument("--projects", type=int, default=1000, help="projects in the organisation (default 1000)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests per endpoint first (default 200)")
    parser.add_argument(
        "--servers",
        default="uvicorn:1,daphne:1",
        help="server configurations KIND:PROCESSES, comma separated; KIND uvicorn or daphne "
        "(default uvicorn:1,daphne:1; uvicorn:1 is scripts/run.sh)",
    )
    parser.add_argument(
        "--baseline-requests",
        type=int,
        default=200,
        help="single-client requests per endpoint on the default server (0 = skip)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results/")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (server logs) and the database"
    )
    args = parser.parse_args()
    try:
        args.servers = [
            (k.strip(), int(n)) for k, n in (spec.split(":") for spec in args.servers.split(",") if spec.strip())
        ]
    except ValueError:
        parser.error("--servers: use KIND:PROCESSES, e.g. uvicorn:1,daphne:1,uvicorn:2")
    if any(kind not in ("daphne", "uvicorn") or n < 1 for kind, n in args.servers):
        parser.error("--servers: KIND is daphne or uvicorn, PROCESSES >= 1")
    if args.clients < 2 or args.projects < 1 or args.requests < 1:
        parser.error("need --clients >= 2, --projects >= 1, --requests >= 1")

    databases = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    machine = _machine.describe()
    workdir = Path(tempfile.mkdtemp(prefix="hartonomous-bench-"))
    redis_proc = None
    results = []
    try:
        redis_proc, redis_url = start_redis(workdir)
        for db in databases:
            started, load_at_start, calibration = time.perf_counter(), os.getloadavg()[0], _machine.calibrate()
            result = bench_database(db, args, workdir, redis_url, redis_proc.pid)
            result["machine"] = machine | {"database_server": result["database_server"]}
            result["run"] = {
                "clients": args.clients,
                "requests_per_endpoint": args.requests,
                "warmup_per_endpoint": args.warmup,
                "single_client_requests": args.baseline_requests,
                "projects": args.projects,
                "servers": [f"{k}:{n}" for k, n in args.servers],
                "load_generator": "closed loop, no think time: one thread + one keep-alive http.client "
                "connection per client, in the same machine as the server",
                "load_average_1min_at_start": round(load_at_start, 2),
                "cpu_calibration_ms": {
                    "start": calibration,
                    "end": _machine.calibrate(),
                    "what": "bench/_machine.py calibrate(): a fixed pure-Python loop, best of 5; "
                    "compare runs only when close",
                },
                "latency": "time.perf_counter from sending the request to the last body byte",
                "percentiles": "nearest rank",
                "goal_p99_ms": GOAL_P99_MS,
                "disturbed_when_other_processes_cores_above": DISTURBED_CORES,
                "server_logging": "server defaults (access log on, to a file), LOG_LEVEL=INFO",
                "throttling": "REST_FRAMEWORK defaults (user 3000/minute, cache in the private Redis); "
                "each client is a different member, so no client is throttled",
                "seconds": round(time.perf_counter() - started, 1),
            }
            results.append(result)
            if not args.no_write:
                RESULTS.mkdir(parents=True, exist_ok=True)
                target = RESULTS / f"web_latency_{db}.json"
                target.write_text(json.dumps(result, indent=2) + "\n")
                log(f"wrote {target.relative_to(ROOT)}")
    finally:
        stop(redis_proc)
        if args.keep:
            log(f"kept {workdir} (server logs, SQLite file) and the {PG_BENCH_DB} database")
        elif "postgres" in databases:
            try:
                pg_admin(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)')
            except Exception as exc:  # noqa: BLE001
                log(f"could not drop {PG_BENCH_DB}: {exc}")
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    rows = summary_rows(results)
    for row in rows:
        log(
            f"{row['db']:8} {row['server']:10} {row['endpoint']:12} p50 {row['p50_ms']:8.1f} ms  p99 "
            f"{row['p99_ms']:8.1f} ms"
            f"  {row['rps']:6.1f} req/s  errors {row['errors']}  goal {'met' if row['meets_goal'] else 'MISSED'}"
            + (f"  (disturbed: other processes used {row['other_cores']:.2f} cores)" if row["disturbed"] else "")
        )
    print(json.dumps({"summary": rows, "results": results}, indent=2))
    failed = any(row["errors"] for row in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
