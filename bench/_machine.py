"""Describe the machine a benchmark ran on (stdlib only; Linux first, degrades elsewhere).

``describe()`` returns a JSON-ready dict: CPU model and cores, RAM, OS, Python, the
versions of the packages that matter for the web stack, and the date. Database and
Redis server versions are added by the caller, which knows how to reach them.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import sqlite3
import subprocess
from importlib import metadata

PACKAGES = (
    "Django",
    "uvicorn",
    "uvloop",
    "httptools",
    "websockets",
    "daphne",
    "Twisted",
    "channels",
    "channels-redis",
    "djangorestframework",
    "asgiref",
    "psycopg",
    "psycopg-pool",
    "whitenoise",
    "redis",
)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def cpu() -> dict:
    info = _read("/proc/cpuinfo")
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    physical = {(p, c) for p, c in re.findall(r"^physical id\s*:\s*(\d+)\n(?:.*\n)*?core id\s*:\s*(\d+)", info, re.M)}
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "model": model.group(1).strip() if model else platform.processor() or platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": len(physical) or None,
        "usable_cores": usable,
        "virtualised": " hypervisor" in info,
        "machine": platform.machine(),
    }


def memory_gib() -> float | None:
    match = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    return round(int(match.group(1)) / 1024 / 1024, 1) if match else None


def os_name() -> str:
    pretty = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', _read("/etc/os-release"), re.M)
    return f"{pretty.group(1) if pretty else platform.system()} (kernel {platform.release()})"


def versions() -> dict:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def redis_server_version(binary: str = "redis-server") -> str | None:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"v=(\S+)", out)
    return match.group(1) if match else out.strip() or None


def calibrate(rounds: int = 5) -> float:
    """Milliseconds for a fixed pure-Python workload (best of ``rounds``).

    On a shared or virtual machine the speed of a core changes from hour to hour; compare
    runs only when this figure is close.
    """
    import time

    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        total = 0
        table = {}
        for i in range(200_000):
            total += i * i % 7
            table[i & 1023] = str(i)
        best = min(best, time.perf_counter() - start)
    return round(best * 1000, 2)


def describe() -> dict:
    return {
        "date_utc": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
        "cpu": cpu(),
        "ram_gib": memory_gib(),
        "os": os_name(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": versions(),
        "sqlite": sqlite3.sqlite_version,
        "redis_server": redis_server_version(),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(describe(), indent=2))
