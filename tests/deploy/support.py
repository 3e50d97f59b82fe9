"""What the deploy tests read: the rendered kustomizations, the Dockerfile, the scripts."""

from __future__ import annotations

import functools
import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shared.settings import CONSOLE, SERVICE_NAMES, Settings

REPOSITORY = Path(__file__).resolve().parents[2]
K8S = REPOSITORY / "deploy" / "k8s"
VARIANTS = {
    "base": K8S / "base",
    "dev": K8S / "overlays" / "dev",
    "prod": K8S / "overlays" / "prod",
}
# What the manifests deploy: the four services and the duty console, each with its image,
# Deployment, Service, migration Job and logins.
DEPLOYED = (*SERVICE_NAMES, CONSOLE)
PORTS = {service: Settings().port_of(service) for service in DEPLOYED}
SERVER_LABELS = {"app.kubernetes.io/component": "server"}
PART_OF = {"app.kubernetes.io/part-of": "correction-emergency"}

Resource = dict[str, Any]


KUBECTL = shutil.which("kubectl")


def kustomize(folder: Path) -> list[Resource]:
    """What `kubectl kustomize` renders of a kustomization: the objects a cluster would get."""
    if KUBECTL is None:
        raise RuntimeError("kubectl (with kustomize) is needed to render deploy/k8s")
    output = subprocess.run(
        [KUBECTL, "kustomize", str(folder)], check=True, capture_output=True, text=True
    ).stdout
    return [document for document in yaml.safe_load_all(output) if document]


@functools.cache
def _rendered(variant: str) -> str:
    return json.dumps(kustomize(VARIANTS[variant]))


def rendered(variant: str) -> list[Resource]:
    """The objects of one kustomization; a fresh copy each call, so tests may change them."""
    return json.loads(_rendered(variant))


def of_kind(resources: list[Resource], kind: str) -> list[Resource]:
    return [resource for resource in resources if resource["kind"] == kind]


def named(resources: list[Resource], kind: str, name: str) -> Resource:
    matches = [r for r in of_kind(resources, kind) if r["metadata"]["name"] == name]
    assert len(matches) == 1, f"{len(matches)} {kind} named {name}"
    return matches[0]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def pod_spec(workload: Resource) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: Resource) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def config_map_data(resources: list[Resource], name: str) -> dict[str, str]:
    return named(resources, "ConfigMap", name)["data"]


def container_environment(resources: list[Resource], container: dict[str, Any]) -> dict[str, Any]:
    """The container's variables: ConfigMap values resolved, secret references kept as dicts."""
    environment: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            environment.update(config_map_data(resources, source["configMapRef"]["name"]))
    for variable in container.get("env", []):
        environment[variable["name"]] = variable.get("value", variable.get("valueFrom"))
    return environment


def ingress_backend(resources: list[Resource], path: str) -> str | None:
    """The service the Ingresses (of one host) forward `path` to, or None."""
    matches = {
        rule["backend"]["service"]["name"]
        for ingress in of_kind(resources, "Ingress")
        for host in ingress["spec"]["rules"]
        for rule in host["http"]["paths"]
        if re.fullmatch(rule["path"], path)
    }
    assert len(matches) <= 1, f"{path} matches {matches}"
    return matches.pop() if matches else None


def walk_strings(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string in a nested object, with where it stands."""
    if isinstance(value, dict):
        return [
            item for key, child in value.items() for item in walk_strings(child, f"{path}.{key}")
        ]
    if isinstance(value, list):
        return [
            item for i, child in enumerate(value) for item in walk_strings(child, f"{path}[{i}]")
        ]
    return [(path, value)] if isinstance(value, str) else []


# --- Dockerfiles ----------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arguments for word, arguments in self.instructions if word == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    arguments: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def base_image(self, stage: Stage) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: self.arguments.get(m.group(1), ""), stage.base)


# One image for every service (the command names the service).
DOCKERFILE = REPOSITORY / "Dockerfile"


def parse_dockerfile(path: Path) -> Dockerfile:
    """Instructions by stage; continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    arguments: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif keyword == "ARG" and not stages:
            key, _, default = rest.partition("=")
            arguments[key] = default
        else:
            assert stages, f"{path}: {keyword} before FROM"
            stages[-1].instructions.append((keyword, rest))
    return Dockerfile(arguments, stages)


def exec_form(arguments: str) -> list[str]:
    """A CMD/ENTRYPOINT/HEALTHCHECK CMD in JSON (exec) form; a shell form is a failure."""
    assert arguments.startswith("["), f"not in exec form: {arguments}"
    return json.loads(arguments)


def environment_of(stage: Stage) -> dict[str, str]:
    environment: dict[str, str] = {}
    for arguments in stage.all("ENV"):
        for word in shlex.split(arguments):
            key, _, value = word.partition("=")
            environment[key] = value
    return environment
