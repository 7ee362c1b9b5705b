"""docker-compose.yaml, its image and .env.example, checked without a Docker engine (none runs here).

Debian's docker-compose 1.29 resolves and validates the file without an engine (``config``), and is
installed when missing. The rest reads the file as written, the configuration compose resolves from
it, the Dockerfile, and the code and Airflow that the containers run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from include.config import load_settings
from tests.support.debian import installed_command
from tests.support.paths import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
DOCKERFILE = REPO_ROOT / "Dockerfile"

AIRFLOW_COMMANDS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
AIRFLOW_SERVICES = (*AIRFLOW_COMMANDS, "airflow-init")
# What issue 21 names: PostgreSQL and Redis, Airflow's components and its init job, the lake's S3
# server and the one-shot service that makes its bucket, the dashboard, and the sandbox.
NAMED_SERVICES = {"postgres", "redis", *AIRFLOW_SERVICES, "s3", "lake-init", "dashboard", "sandbox"}
ONE_SHOTS = {"airflow-init", "lake-init"}
CODE_FOLDERS = ("include", "dags", "plugins", "dashboard")
# The variables a container reads although no code of this repo names them, and what reads them.
READ_BY_OTHERS = {
    "AWS_ACCESS_KEY_ID": "boto3 and the AWS CLI",
    "AWS_SECRET_ACCESS_KEY": "boto3 and the AWS CLI",
    "AWS_DEFAULT_REGION": "boto3 and the AWS CLI",
    "AWS_ENDPOINT_URL": "boto3 and the AWS CLI",
    "POSTGRES_USER": "the postgres image's entrypoint",
    "POSTGRES_PASSWORD": "the postgres image's entrypoint",
    "POSTGRES_DB": "the postgres image's entrypoint",
    "DUMB_INIT_SETSID": "dumb-init, the Airflow image's first process",
    "SNOWFLAKE_CONNECTIONS": "snowflake-connector-python: the default connection of st.connection('snowflake')",
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|KEY|CONN")
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}; $${...} is a literal.
INTERPOLATION = re.compile(r"(?<!\$)\$\{(?P<name>\w+)(?:(?P<operator>:?[-?])(?P<argument>[^}]*))?\}")


def env_file_values(path: Path) -> dict[str, str]:
    """NAME=VALUE lines of an env file, the surrounding single quotes of a value taken off."""
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip().removeprefix("'").removesuffix("'")
    return values


def filled_settings() -> dict[str, str]:
    """.env.example with every secret it leaves empty made up, as a user fills it in."""
    return {name: value or f"made-up-{name.lower()}" for name, value in env_file_values(ENV_EXAMPLE).items()}


def write_env(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{name}='{value}'\n" for name, value in values.items()))
    return path


def compose_config(docker_compose: str, env_file: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` of the repo's file with ``env_file``: nothing of this shell's environment."""
    return subprocess.run(
        [docker_compose, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", *flags],
        env={"PATH": os.environ["PATH"], "HOME": str(env_file.parent)},
        cwd=env_file.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="session")
def docker_compose() -> str:
    """Debian's docker-compose (1.29), installed when missing: it validates without a Docker engine."""
    try:
        return installed_command("docker-compose", "docker-compose")
    except RuntimeError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="module")
def resolved(docker_compose: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The configuration compose resolves with .env.example filled in (every profile's services)."""
    env_file = write_env(tmp_path_factory.mktemp("compose") / ".env", filled_settings())
    result = compose_config(docker_compose, env_file)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def written() -> dict[str, Any]:
    """The file as written, its YAML anchors merged (PyYAML resolves ``<<``), nothing interpolated."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return config["services"]


# Compose accepts the file -----------------------------------------------------------------------


def test_compose_accepts_the_file_with_env_example_filled_in(docker_compose, tmp_path):
    result = compose_config(docker_compose, write_env(tmp_path / ".env", filled_settings()), "-q")
    assert result.returncode == 0, result.stderr
    assert "variable is not set" not in result.stderr  # a ${VAR} that .env.example does not give


def test_a_missing_secret_stops_compose_with_a_line_naming_it(docker_compose, tmp_path):
    without_jwt = {name: value for name, value in filled_settings().items() if name != "AIRFLOW_JWT_SECRET"}
    result = compose_config(docker_compose, write_env(tmp_path / ".env", without_jwt), "-q")
    assert result.returncode != 0
    assert "set AIRFLOW_JWT_SECRET in .env" in result.stderr
    unfilled = tmp_path / "unfilled" / ".env"  # `cp .env.example .env`, and no more
    unfilled.parent.mkdir()
    unfilled.write_text(ENV_EXAMPLE.read_text())
    copied_unfilled = compose_config(docker_compose, unfilled, "-q")
    assert copied_unfilled.returncode != 0
    assert re.search(r"set \w*(PASSWORD|SECRET|KEY)\w* in \.env", copied_unfilled.stderr), copied_unfilled.stderr


# Secrets and settings ----------------------------------------------------------------------------


def interpolations() -> list[re.Match[str]]:
    return list(INTERPOLATION.finditer(COMPOSE_FILE.read_text()))


def environments(config: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """(where, environment) of every service and every extension block of the file as written."""
    blocks = [(name, block) for name, block in config.items() if name.startswith("x-") and isinstance(block, dict)]
    found = [(name, block.get("environment", block)) for name, block in blocks]
    found += [(name, service.get("environment", {})) for name, service in services(config).items()]
    return [(where, environment) for where, environment in found if isinstance(environment, dict)]


def test_no_secret_has_a_default_in_the_file_nor_a_value_in_env_example(written):
    for match in interpolations():
        if SECRET_NAME.search(match["name"]):
            assert match["operator"] in ("?", ":?"), f"{match[0]} gives a secret a default"
            assert f"set {match['name']} in .env" in match["argument"], match[0]
    for where, environment in environments(written):
        for name, value in environment.items():
            if SECRET_NAME.search(name):  # its value comes from .env, whatever surrounds it
                assert re.search(r"(?<!\$)\$\{\w+:?\?", str(value)), f"{where}: {name} is not taken from .env"
    assert {
        name: value for name, value in env_file_values(ENV_EXAMPLE).items() if SECRET_NAME.search(name) and value
    } == {}


def test_env_example_documents_every_variable_the_file_uses_and_no_other():
    used = {match["name"] for match in interpolations()}
    documented = set(env_file_values(ENV_EXAMPLE)) - {"COMPOSE_PROFILES"}  # compose's own: which profiles run
    assert documented == used


def code_text() -> str:
    return "\n".join(path.read_text() for folder in CODE_FOLDERS for path in (REPO_ROOT / folder).rglob("*.py"))


@pytest.fixture(scope="module")
def airflow_options() -> dict[str, set[str]]:
    """Every option of this Airflow and its installed providers, section by section, from Airflow's
    own description of its configuration (its config templates and the providers')."""
    import tests.support.airflow_env  # noqa: F401  (an Airflow home of the tests' own, before Airflow loads)

    # isort: split
    from airflow.configuration import conf

    options = {section: set(entry.get("options", {})) for section, entry in conf.configuration_description.items()}
    # Cosmos reads its own section from Airflow's configuration, outside Airflow's description of it.
    import cosmos.settings

    cosmos_source = Path(cosmos.settings.__file__).read_text()
    options["cosmos"] = set(re.findall(r"conf\.get\w*\(\s*\"cosmos\",\s*\"(\w+)\"", cosmos_source))
    return options


def unread_variables(service: dict[str, Any], options: dict[str, set[str]], code: str) -> list[str]:
    """The variables ``service`` sets that nothing it runs reads."""
    runs = json.dumps([service.get(key) for key in ("command", "entrypoint", "healthcheck")])
    unread = []
    for name in service.get("environment", {}):
        section, _, option = name.removeprefix("AIRFLOW__").partition("__")
        if name.startswith("AIRFLOW__"):
            known = option.lower() in options.get(section.lower(), set())
        else:
            known = (
                name.startswith("AIRFLOW_CONN_")  # an Airflow connection
                or bool(re.search(rf"[\"']{name}[\"']", code))  # this repo's code names it in a string
                or name in READ_BY_OTHERS
                or bool(re.search(rf"\$\$?\{{{name}\}}|\$\${name}\b", runs))  # the service's own command
            )
        if not known:
            unread.append(name)
    return unread


def test_every_variable_the_file_sets_is_one_the_code_airflow_or_a_known_program_reads(resolved, airflow_options):
    code = code_text()
    unread = {name: unread_variables(service, airflow_options, code) for name, service in services(resolved).items()}
    assert {name: variables for name, variables in unread.items() if variables} == {}


def test_the_settings_every_container_gets_pass_include_config(resolved):
    """include/config.py's own checks, on each container's environment: the sandbox is reached at the
    sandbox service's name and port, and the sandbox listens there on every address of its container."""
    sandbox = services(resolved)["sandbox"]
    flags = dict(argument.removeprefix("--").split("=", 1) for argument in sandbox["command"] if "=" in argument)
    assert flags["host"] == "0.0.0.0"
    with_settings = {
        name: service for name, service in services(resolved).items() if "EXCHANGE" in service.get("environment", {})
    }
    assert set(with_settings) == {*AIRFLOW_SERVICES, "dashboard"}
    for service in with_settings.values():
        settings = load_settings(service["environment"])  # a bad value raises ConfigError naming it
        assert settings.exchange == "sandbox"  # .env.example's choice, with COMPOSE_PROFILES=sandbox
        assert urlparse(settings.rest_url).netloc == f"sandbox:{flags['port']}"
        assert urlparse(settings.ws_url).netloc == f"sandbox:{flags['port']}"
        assert ",".join(settings.symbols) == flags["symbols"]
    live = load_settings({**services(resolved)["airflow-worker"]["environment"], "EXCHANGE": "binance"})
    assert "sandbox" not in live.rest_url + live.ws_url


# Services --------------------------------------------------------------------------------------


def test_every_service_the_issue_names_is_there(resolved):
    found = services(resolved)
    assert set(found) >= NAMED_SERVICES
    assert {name: found[name]["command"] for name in AIRFLOW_COMMANDS} == AIRFLOW_COMMANDS
    assert found["airflow-scheduler"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert {name: service.get("profiles") for name, service in found.items() if service.get("profiles")} == {
        "sandbox": ["sandbox"]
    }


def test_every_long_running_service_has_a_healthcheck_and_the_one_shots_run_first(resolved):
    found = services(resolved)
    waited_for = {
        dependency: condition["condition"]
        for service in found.values()
        for dependency, condition in service.get("depends_on", {}).items()
    }
    one_shots = {name for name, condition in waited_for.items() if condition == "service_completed_successfully"}
    assert one_shots == ONE_SHOTS
    for name, service in found.items():
        if name in ONE_SHOTS:
            assert service.get("restart", "no") == "no", name
        else:
            test = service.get("healthcheck", {}).get("test") or ["NONE"]
            assert test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
    for name in AIRFLOW_COMMANDS:  # no component starts before the migrations, the pools and the admin
        assert found[name]["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}
    init = "\n".join(found["airflow-init"]["command"])
    for step in ("set -euo pipefail", "airflow db migrate", "python -m include.pools", "airflow users create"):
        assert step in init


def test_the_workers_scale(resolved):
    worker = services(resolved)["airflow-worker"]
    assert "container_name" not in worker  # `--scale airflow-worker=3` names each replica itself
    assert "ports" not in worker  # a fixed host port could be published by one replica only


def test_one_jwt_secret_and_one_execution_api_url_serve_every_airflow_service(written, resolved):
    text = COMPOSE_FILE.read_text()
    common = written["x-airflow-common"]["environment"]
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL"):
        assert len(re.findall(rf"\b{key}\b", text)) == 1, f"{key} is set more than once"
        assert key in common
    for name in AIRFLOW_SERVICES:  # each takes the common block whole and overrides none of it
        environment = services(written)[name]["environment"]
        assert {key: environment.get(key) for key in common} == common, name
    values = {
        (
            service["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"],
            service["environment"]["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"],
        )
        for name, service in services(resolved).items()
        if name in AIRFLOW_SERVICES
    }
    assert values == {(filled_settings()["AIRFLOW_JWT_SECRET"], "http://airflow-apiserver:8080/execution/")}


def test_published_ports_listen_on_127_0_0_1_only(resolved):
    published = [port for service in services(resolved).values() for port in service.get("ports", [])]
    assert published
    assert [port for port in published if not str(port).startswith("127.0.0.1:")] == []


# The image ---------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments left out."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_the_image_extends_the_official_one_of_this_airflow_and_python():
    airflow = re.search(r"^apache-airflow==(\S+)$", (REPO_ROOT / "requirements.txt").read_text(), re.M)
    python = re.fullmatch(
        r">=(3\.\d+),<3\.\d+", tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    )
    assert airflow
    assert python
    instructions = dockerfile_instructions()
    assert [arguments for name, arguments in instructions if name == "FROM"] == [
        f"apache/airflow:{airflow[1]}-python{python[1]}"
    ]


def test_the_image_installs_requirements_txt_unchanged_and_never_moves_airflow():
    instructions = dockerfile_instructions()
    copies = [
        arguments.split() for name, arguments in instructions if name == "COPY" and "requirements.txt" in arguments
    ]
    assert len(copies) == 1
    assert copies[0][0] == "requirements.txt"
    copied = copies[0][-1]
    runs = [arguments for name, arguments in instructions if name == "RUN"]
    assert [run for run in runs if copied in run] == [
        f'pip install --no-cache-dir "apache-airflow==${{AIRFLOW_VERSION}}" -r {copied}'
    ]


def test_the_image_builds_the_dbt_manifest_as_make_manifest_does(resolved):
    make_manifest = re.search(
        r"^\$\(MANIFEST\):.*\n\t\$\(BIN\)/(python -m \S+)$", (REPO_ROOT / "Makefile").read_text(), re.M
    )
    assert make_manifest
    instructions = dockerfile_instructions()
    include_copied = next(
        i for i, (name, arguments) in enumerate(instructions) if name == "COPY" and arguments.split()[-2] == "include/"
    )
    built = [i for i, (name, arguments) in enumerate(instructions) if name == "RUN" and make_manifest[1] in arguments]
    assert built
    assert built[0] > include_copied
    for name in (*AIRFLOW_SERVICES, "dashboard", "sandbox"):  # every container runs this image
        assert Path(services(resolved)[name]["build"]["context"]) == REPO_ROOT, name


def test_the_build_context_leaves_out_local_state_and_secrets():
    ignored = {line.strip().rstrip("/") for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()}
    assert ignored >= {".env", ".venv", "data", "logs", "airflow_home", "include/dbt/target", "include/dbt/logs"}
