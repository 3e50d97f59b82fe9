"""What a kubelet gives a container of the rendered manifests: its variables and mounted files.

The prod parity test runs the services with exactly this configuration; only what lies outside
the cluster is pointed at local stand-ins (`Outside`): the database and broker addresses, the
collector, the alert gateway. Secrets are what the operators create (docs/operations.md); a
reference the kubelet could not resolve fails here as the pod would fail to start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.deploy.support import (
    DOCKERFILE,
    Resource,
    config_map_data,
    exec_form,
    named,
    parse_dockerfile,
    pod_spec,
)

# Secret name -> key -> value: what the operators put in the namespace.
Secrets = Mapping[str, Mapping[str, str]]


class PodWouldNotStart(RuntimeError):
    """The kubelet would refuse the container: a Secret or key it needs is not there."""


@dataclass
class Container:
    """One container's configuration on this machine: variables and files under `root`."""

    name: str
    command: list[str]
    args: list[str]
    environment: dict[str, str]
    root: Path
    mounts: dict[str, Path] = field(default_factory=dict)

    def local_path(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")


def materialise(
    resources: list[Resource], workload: Resource, secrets: Secrets, root: Path
) -> Container:
    """The first container of `workload`, its volumes written under `root`, its variables
    resolved; a variable naming a mounted path is given the path on this machine."""
    spec = pod_spec(workload)
    container = spec["containers"][0]
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    materialised = Container(
        workload["metadata"]["name"],
        list(container.get("command", [])),
        list(container.get("args", [])),
        {},
        root,
    )
    for mount in container.get("volumeMounts", []):
        target = materialised.local_path(mount["mountPath"])
        target.mkdir(parents=True, exist_ok=True)
        for file_name, content in _volume_files(resources, volumes[mount["name"]], secrets):
            (target / file_name).write_text(content, encoding="utf-8")
        materialised.mounts[mount["mountPath"]] = target
    variables: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            variables.update(config_map_data(resources, source["configMapRef"]["name"]))
        elif "secretRef" in source:
            variables.update(_secret(secrets, source["secretRef"]))
    for variable in container.get("env", []):
        value = _variable(resources, variable, secrets)
        if value is not None:
            if "$(" in value:
                raise NotImplementedError(f"{variable['name']}: $(VAR) expansion")
            variables[variable["name"]] = value
    for name, value in variables.items():
        for mount_path, local in sorted(materialised.mounts.items(), key=lambda m: -len(m[0])):
            if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                variables[name] = str(local) + value[len(mount_path.rstrip("/")) :]
                break
    materialised.environment = variables
    return materialised


def _secret(secrets: Secrets, reference: Mapping[str, Any]) -> Mapping[str, str]:
    name = reference["name"]
    if name in secrets:
        return secrets[name]
    if reference.get("optional"):
        return {}
    raise PodWouldNotStart(f"Secret {name} does not exist")


def _variable(
    resources: list[Resource], variable: Mapping[str, Any], secrets: Secrets
) -> str | None:
    if "value" in variable:
        return str(variable["value"])
    source = variable["valueFrom"]
    if "secretKeyRef" in source:
        reference = source["secretKeyRef"]
        values = _secret(secrets, reference)
        if reference["key"] not in values:
            if reference.get("optional"):
                return None
            raise PodWouldNotStart(f"Secret {reference['name']} has no key {reference['key']}")
        return values[reference["key"]]
    if "configMapKeyRef" in source:
        reference = source["configMapKeyRef"]
        return config_map_data(resources, reference["name"])[reference["key"]]
    raise NotImplementedError(f"{variable['name']}: {sorted(source)}")


def _volume_files(
    resources: list[Resource], volume: Mapping[str, Any], secrets: Secrets
) -> list[tuple[str, str]]:
    if "emptyDir" in volume:
        return []
    if "secret" in volume:
        source = volume["secret"]
        data = _secret(secrets, {"name": source["secretName"], **source})
        return _items(data, source.get("items"))
    if "configMap" in volume:
        source = volume["configMap"]
        return _items(config_map_data(resources, source["name"]), source.get("items"))
    if "projected" in volume:
        files: list[tuple[str, str]] = []
        for source in volume["projected"]["sources"]:
            if "configMap" in source:
                data = named(resources, "ConfigMap", source["configMap"]["name"])["data"]
                files += _items(data, source["configMap"].get("items"))
            elif "secret" in source:
                files += _items(_secret(secrets, source["secret"]), source["secret"].get("items"))
        return files
    raise NotImplementedError(f"volume {volume['name']}: {sorted(volume)}")


def _items(data: Mapping[str, str], items: list[Mapping[str, str]] | None) -> list[tuple[str, str]]:
    if items is None:
        return list(data.items())
    return [(item["path"], data[item["key"]]) for item in items]


def container_command(container: Container) -> list[str]:
    """What the container runs: its command, or the image's ENTRYPOINT; then its args."""
    entrypoint = exec_form(parse_dockerfile(DOCKERFILE).final.last("ENTRYPOINT") or "[]")
    return [*(container.command or entrypoint), *container.args]
