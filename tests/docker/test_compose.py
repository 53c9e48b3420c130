"""The production Docker stack (docker/compose.yaml), checked without a Docker engine.

`docker-compose config` (Compose v1, Debian's `docker-compose` package) parses the file,
validates it against the Compose schema and interpolates the variables, all offline. The
tests read its resolved output, so they see what `docker compose up` would see.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "docker"
COMPOSE_FILE = DOCKER_DIR / "compose.yaml"
ENV_EXAMPLE = DOCKER_DIR / ".env.example"

SERVICES = {"web", "worker", "gpu-worker", "redis", "sqlserver", "neo4j"}
#: The Django services and the program each one must end up running.
APP_PROGRAMS = {"web": "uvicorn", "worker": "rqworker", "gpu-worker": "rqworker"}


# --- helpers ------------------------------------------------------------------------------


def required_variables() -> list[str]:
    """Variables compose.yaml marks as required with ``${NAME:?message}``."""
    return sorted(set(re.findall(r"(?<!\$)\$\{(\w+):\?", COMPOSE_FILE.read_text())))


def run_compose_config(tmp_dir: Path, variables: dict[str, str]) -> subprocess.CompletedProcess:
    """``docker-compose config`` with exactly ``variables`` set, and the gpu profile on.

    The environment is built from scratch and the env file is an empty one, so neither the
    caller's shell nor a developer's docker/.env can supply (or hide) a variable.
    """
    executable = shutil.which("docker-compose")
    if executable is None:
        pytest.fail(
            "docker-compose (Compose v1, Debian package `docker-compose`) is not on PATH. "
            "Run `make test`, which installs the packages in scripts/apt-test-packages.txt, "
            "or `apt-get install docker-compose`."
        )
    empty_env_file = tmp_dir / "empty.env"
    empty_env_file.write_text("")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_dir), **variables}
    return subprocess.run(
        [executable, "--env-file", str(empty_env_file), "-f", str(COMPOSE_FILE), "--profile", "gpu", "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def dummy_secrets() -> dict[str, str]:
    return {name: f"dummy-{name.lower().replace('_', '-')}-1A" for name in required_variables()}


def command_text(command: str | list[str] | None) -> str:
    if command is None:
        return ""
    return command if isinstance(command, str) else " ".join(command)


def final_stage_command(dockerfile: Path) -> str:
    """CMD and ENTRYPOINT of the Dockerfile's last stage (the image that runs), as text."""
    # Docker drops comment lines before joining continued lines; do the same.
    lines = [line for line in dockerfile.read_text().splitlines() if not line.lstrip().startswith("#")]
    instructions = [i.strip() for i in re.sub(r"\\\n", " ", "\n".join(lines)).splitlines() if i.strip()]
    last_from = max(n for n, i in enumerate(instructions) if i.upper().startswith("FROM "))
    parts = []
    for instruction in instructions[last_from:]:
        keyword, _, arguments = instruction.partition(" ")
        if keyword.upper() in {"CMD", "ENTRYPOINT"}:
            try:
                parts.append(" ".join(json.loads(arguments)))  # exec form
            except json.JSONDecodeError:
                parts.append(arguments)  # shell form
    return " ".join(parts)


def mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """Container path -> (source, read_only) for a service's volumes, short or long syntax."""
    result = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            result[volume["target"]] = (volume.get("source", ""), bool(volume.get("read_only")))
        else:
            source, target, *mode = volume.split(":")
            result[target] = (source, "ro" in mode)
    return result


def depends_on(service: dict) -> dict[str, str]:
    """Dependency -> condition (the short list form means service_started)."""
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The resolved compose file, with every required variable set to a dummy value."""
    result = run_compose_config(tmp_path_factory.mktemp("compose"), dummy_secrets())
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def services(config: dict) -> dict[str, dict]:
    return config["services"]


# --- the file as a whole ------------------------------------------------------------------


def test_every_service_is_defined(services: dict[str, dict]) -> None:
    assert SERVICES <= services.keys(), f"missing: {sorted(SERVICES - services.keys())}"


@pytest.mark.parametrize("missing", required_variables())
def test_config_fails_without_a_required_secret(tmp_path: Path, missing: str) -> None:
    variables = dummy_secrets()
    del variables[missing]
    result = run_compose_config(tmp_path, variables)
    assert result.returncode != 0, f"config accepted the file without {missing}"
    assert missing in result.stderr


def test_secrets_are_required_variables() -> None:
    # The parametrised test above is only as good as this list.
    assert {"MSSQL_SA_PASSWORD", "SECRET_KEY", "NEO4J_PASSWORD"} <= set(required_variables())


def test_secrets_have_no_default_anywhere() -> None:
    # One `${MSSQL_SA_PASSWORD:-changeme}` would start SQL Server with a known password
    # while the other uses of the variable still look required.
    text = COMPOSE_FILE.read_text()
    for name in required_variables():
        uses = re.findall(r"(?<!\$)\$\{" + name + r"([^}]*)\}", text)
        assert all(use.startswith(":?") for use in uses), f"{name} used without :? in {uses}"


def test_secrets_come_from_the_environment(services: dict[str, dict]) -> None:
    secrets = dummy_secrets()
    sa_password = secrets["MSSQL_SA_PASSWORD"]
    assert services["sqlserver"]["environment"]["MSSQL_SA_PASSWORD"] == sa_password
    assert services["neo4j"]["environment"]["NEO4J_AUTH"] == f"neo4j/{secrets['NEO4J_PASSWORD']}"
    for name in APP_PROGRAMS:
        environment = services[name]["environment"]
        assert f":{sa_password}@sqlserver:1433/" in environment["DATABASE_URL"]
        assert environment["SECRET_KEY"] == secrets["SECRET_KEY"]
        assert environment["NEO4J_PASSWORD"] == secrets["NEO4J_PASSWORD"]


def test_env_example_documents_every_variable() -> None:
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", COMPOSE_FILE.read_text()))
    documented = set(re.findall(r"^(\w+)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE))
    assert used <= documented, f"not in docker/.env.example: {sorted(used - documented)}"


# --- health and start order ---------------------------------------------------------------


def test_long_running_services_have_healthchecks(services: dict[str, dict]) -> None:
    # A one-shot service is one that others wait on to finish; it needs no health check.
    one_shots = {
        dependency
        for service in services.values()
        for dependency, condition in depends_on(service).items()
        if condition == "service_completed_successfully"
    }
    assert {"migrate", "sqlserver-init"} <= one_shots
    for name, service in services.items():
        if name in one_shots:
            assert service.get("restart", "no") == "no", f"one-shot {name} would be restarted"
            continue
        healthcheck = service.get("healthcheck", {})
        test = healthcheck.get("test")
        assert test and test != ["NONE"] and not healthcheck.get("disable"), f"{name} has no healthcheck"


def test_web_healthcheck_calls_healthz(services: dict[str, dict]) -> None:
    assert "/healthz" in command_text(services["web"]["healthcheck"]["test"])


def test_app_services_wait_for_migrations_and_backends(services: dict[str, dict]) -> None:
    for name in APP_PROGRAMS:
        deps = depends_on(services[name])
        assert deps.get("migrate") == "service_completed_successfully", name
        assert deps.get("redis") == "service_healthy", name
    assert depends_on(services["migrate"]).get("sqlserver-init") == "service_completed_successfully"


def test_sqlserver_init_creates_the_database_before_migrate(services: dict[str, dict]) -> None:
    init = services["sqlserver-init"]
    assert depends_on(init).get("sqlserver") == "service_healthy"
    assert "CREATE DATABASE hartonomous" in command_text(init.get("command"))
    assert depends_on(services["migrate"]).get("sqlserver-init") == "service_completed_successfully"


# --- shared storage and the GPU ----------------------------------------------------------


def test_web_and_workers_share_the_data_volume(config: dict, services: dict[str, dict]) -> None:
    web = services["web"]
    data_dir = web["environment"]["DATA_DIR"]
    source, _ = mounts(web)[data_dir]
    assert source in config.get("volumes", {}), f"{data_dir} is not on a named volume"
    for name in APP_PROGRAMS:
        environment = services[name]["environment"]
        assert environment["DATA_DIR"] == data_dir, name
        assert environment["MEDIA_ROOT"].startswith(data_dir.rstrip("/") + "/"), name
        assert mounts(services[name]).get(data_dir, (None,))[0] == source, f"{name} lacks {source}"


def test_gpu_worker_requests_an_nvidia_gpu(services: dict[str, dict]) -> None:
    devices = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)


def test_stack_starts_without_the_gpu_profile(services: dict[str, dict]) -> None:
    assert services["gpu-worker"].get("profiles") == ["gpu"]
    for name, service in services.items():
        if not service.get("profiles"):
            assert "gpu-worker" not in depends_on(service), f"{name} needs the gpu profile"
            reservations = service.get("deploy", {}).get("resources", {}).get("reservations", {})
            assert not reservations.get("devices"), f"{name} reserves a device outside the gpu profile"


# --- images -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(APP_PROGRAMS))
def test_image_runs_the_expected_program(services: dict[str, dict], name: str) -> None:
    build = services[name]["build"]
    dockerfile = Path(build["context"]) / build.get("dockerfile", "Dockerfile")
    assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"

    image_command = final_stage_command(dockerfile)
    assert re.search(r"\b(uvicorn|rqworker)\b", image_command), f"{dockerfile}: CMD/ENTRYPOINT is {image_command!r}"

    # What the container runs: the service's command, or else the image's.
    effective = command_text(services[name].get("command")) or image_command
    assert APP_PROGRAMS[name] in effective, f"{name} runs {effective!r}"


def test_workers_listen_on_their_queues(services: dict[str, dict]) -> None:
    def queues(name: str) -> list[str]:
        build = services[name]["build"]
        command = command_text(services[name].get("command")) or final_stage_command(
            Path(build["context"]) / build["dockerfile"]
        )
        words = command.split()
        return [w for w in words[words.index("rqworker") + 1 :] if not w.startswith("-")]

    assert queues("worker") == ["default", "cpu"]
    assert queues("gpu-worker") == ["gpu"]
