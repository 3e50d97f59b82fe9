"""Render a kustomize tree without the kustomize binary.

    python deploy/k8s/render.py deploy/k8s/overlays/prod > prod.yaml

It implements the part of kustomize these manifests use, with kustomize's results:

- `resources`: files (one or more YAML documents) and folders holding a kustomization;
- `configMapGenerator` with `files`, `literals`, `behavior` (create, merge, replace), `options`
  and `generatorOptions` (labels, annotations, `disableNameSuffixHash`); generated ConfigMaps get
  kustomize's content-hash suffix and every reference to them in pod specs is renamed to match;
- `patches` from `path` or inline `patch`, with or without `target` (group, version, kind, name,
  namespace, labelSelector, annotationSelector): JSON 6902 patches (add, remove, replace, test,
  move, copy) on any kind; strategic merge patches on Deployments, Jobs, HorizontalPodAutoscalers
  and PodDisruptionBudgets, JSON merge patches on custom resources;
- `namespace`, `labels` (`pairs`, `includeTemplates`; not `includeSelectors`) and `images`.

Anything else in a kustomization is an error rather than silently ignored. The deploy tests
compare its output with `kubectl kustomize` wherever kubectl is installed.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "configMapGenerator",
    "generatorOptions",
    "patches",
    "namespace",
    "labels",
    "images",
}
# Built-in kinds that live outside namespaces; everything else (custom resources too) gets one.
CLUSTER_SCOPED_KINDS = {
    "APIService",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "IngressClass",
    "MutatingWebhookConfiguration",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PriorityClass",
    "RuntimeClass",
    "StorageClass",
    "ValidatingWebhookConfiguration",
}
# Kinds whose pod template lies at spec.template.
TEMPLATE_KINDS = {"Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "Job"}
# Merge keys of the lists a strategic merge patch of these kinds may touch.
STRATEGIC_MERGE_KINDS = {"Deployment", "Job", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "topologySpreadConstraints": "topologyKey",
}
# kustomize's legacy output order: these kinds first, in this order, and the last ones last.
ORDER_FIRST = [
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
]
ORDER_LAST = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]
NEEDS_HASH = "render.internal/needs-hash"


class KustomizeError(Exception):
    """The tree uses something this renderer does not implement, or is wrong."""


def render(folder: Path | str) -> list[Resource]:
    """Every object of the kustomization in `folder`, as `kubectl kustomize` would print it."""
    resources = _build(Path(folder).resolve())
    _add_hash_suffixes(resources)
    return sorted(resources, key=_order)


def dump(resources: list[Resource]) -> str:
    return yaml.dump_all(
        resources, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1_000_000
    )


# --- building one kustomization -------------------------------------------------------------


def _build(folder: Path) -> list[Resource]:
    kustomization = _load_kustomization(folder)
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        path = folder / entry
        if path.is_dir():
            resources.extend(_build(path.resolve()))
        elif path.is_file():
            resources.extend(_load_documents(path))
        else:
            raise KustomizeError(f"{folder}: resource {entry!r} does not exist")
    options = kustomization.get("generatorOptions", {})
    for generator in kustomization.get("configMapGenerator", []):
        _generate_config_map(folder, generator, options, resources)
    for patch in kustomization.get("patches", []):
        _apply_patch(folder, patch, resources)
    if "namespace" in kustomization:
        _set_namespace(resources, kustomization["namespace"])
    for labels in kustomization.get("labels", []):
        _add_labels(resources, labels)
    for image in kustomization.get("images", []):
        _set_image(resources, image)
    return resources


def _load_kustomization(folder: Path) -> dict[str, Any]:
    for name in KUSTOMIZATION_FILES:
        path = folder / name
        if path.is_file():
            kustomization = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            unknown = set(kustomization) - SUPPORTED_FIELDS
            if unknown:
                raise KustomizeError(f"{path}: fields this renderer does not implement: {unknown}")
            return kustomization
    raise KustomizeError(f"{folder}: no kustomization file")


def _load_documents(path: Path) -> list[Resource]:
    documents = yaml.safe_load_all(path.read_text(encoding="utf-8"))
    return [document for document in documents if document is not None]


# --- generators -----------------------------------------------------------------------------


def _generate_config_map(
    folder: Path, generator: dict[str, Any], options: dict[str, Any], resources: list[Resource]
) -> None:
    unknown = set(generator) - {"name", "namespace", "behavior", "files", "literals", "options"}
    if unknown:
        raise KustomizeError(f"{folder}: configMapGenerator fields not implemented: {unknown}")
    data: dict[str, str] = {}
    for entry in generator.get("files", []):
        key, _, file_name = entry.rpartition("=")
        path = folder / file_name
        if not path.resolve().is_relative_to(folder):
            raise KustomizeError(f"{folder}: {file_name} lies outside the kustomization")
        data[key or path.name] = path.read_text(encoding="utf-8")
    for entry in generator.get("literals", []):
        key, separator, value = entry.partition("=")
        if not separator:
            raise KustomizeError(f"{folder}: literal {entry!r} has no '='")
        data[key] = value
    merged = {**options, **generator.get("options", {})}
    name = generator["name"]
    behavior = generator.get("behavior", "create")
    existing = [r for r in resources if r["kind"] == "ConfigMap" and _name(r) == name]
    if behavior == "create":
        if existing:
            raise KustomizeError(f"{folder}: ConfigMap {name} already exists; merge or replace it")
        config_map: Resource = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name},
            "data": data,
        }
        if "namespace" in generator:
            config_map["metadata"]["namespace"] = generator["namespace"]
        resources.append(config_map)
    elif behavior in ("merge", "replace"):
        if len(existing) != 1:
            raise KustomizeError(f"{folder}: no single ConfigMap {name} to {behavior}")
        config_map = existing[0]
        config_map["data"] = {**config_map.get("data", {}), **data} if behavior == "merge" else data
    else:
        raise KustomizeError(f"{folder}: unknown behavior {behavior!r}")
    metadata = config_map["metadata"]
    for field in ("labels", "annotations"):
        if merged.get(field):
            metadata[field] = {**metadata.get(field, {}), **merged[field]}
    if not merged.get("disableNameSuffixHash"):
        metadata.setdefault("annotations", {})[NEEDS_HASH] = "true"


def _add_hash_suffixes(resources: list[Resource]) -> None:
    renamed: dict[tuple[str | None, str], str] = {}
    for resource in resources:
        annotations = resource["metadata"].get("annotations", {})
        if annotations.pop(NEEDS_HASH, None) is None:
            continue
        if not annotations:
            del resource["metadata"]["annotations"]
        old = _name(resource)
        resource["metadata"]["name"] = f"{old}-{config_map_hash(resource)}"
        renamed[(_namespace(resource), old)] = _name(resource)
    for resource in resources:
        for pod_spec in _pod_specs(resource):
            for reference in _config_map_references(pod_spec):
                new = renamed.get((_namespace(resource), reference["name"]))
                if new:
                    reference["name"] = new


def config_map_hash(config_map: Resource) -> str:
    """kustomize's name suffix: ten characters of a SHA-256 of Go's JSON of kind and data.

    kustomize 5 hashes the object with an empty name (its hasher reads the name from a field it
    has not set yet), so two generators with equal data get equal suffixes.
    """
    encoded: dict[str, Any] = {"kind": "ConfigMap", "name": "", "data": config_map.get("data", {})}
    if config_map.get("binaryData"):
        encoded["binaryData"] = config_map["binaryData"]
    text = json.dumps(encoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # Go's encoding/json escapes these for HTML; kustomize hashes that form.
    for character in "<>&\u2028\u2029":
        text = text.replace(character, f"\\u{ord(character):04x}")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _config_map_references(pod_spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for volume in pod_spec.get("volumes", []):
        if "configMap" in volume:
            yield volume["configMap"]
        for source in volume.get("projected", {}).get("sources", []):
            if "configMap" in source:
                yield source["configMap"]
    for container in pod_spec.get("containers", []) + pod_spec.get("initContainers", []):
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                yield source["configMapRef"]
        for variable in container.get("env", []):
            reference = variable.get("valueFrom", {}).get("configMapKeyRef")
            if reference:
                yield reference


# --- patches --------------------------------------------------------------------------------


def _apply_patch(folder: Path, spec: dict[str, Any], resources: list[Resource]) -> None:
    unknown = set(spec) - {"path", "patch", "target"}
    if unknown:
        raise KustomizeError(f"{folder}: patch fields not implemented: {unknown}")
    text = (folder / spec["path"]).read_text(encoding="utf-8") if "path" in spec else spec["patch"]
    documents = [document for document in yaml.safe_load_all(text) if document is not None]
    target = spec.get("target")
    if len(documents) == 1 and isinstance(documents[0], list):
        if target is None:
            raise KustomizeError(f"{folder}: a JSON 6902 patch needs a target")
        for resource in _select(resources, target, folder):
            _json_patch(resource, documents[0])
        return
    for document in documents:
        if target is not None:
            document = copy.deepcopy(document)
            document.get("metadata", {}).pop("name", None)
            document.get("metadata", {}).pop("namespace", None)
            matched = _select(resources, target, folder)
        else:
            matched = [r for r in resources if _same_object(r, document)]
            if not matched:
                raise KustomizeError(f"{folder}: patch matches nothing: {_describe(document)}")
        for resource in matched:
            if resource["kind"] in STRATEGIC_MERGE_KINDS:
                patched = _strategic_merge(resource, document)
            elif "." in _group(resource) and not _group(resource).endswith(".k8s.io"):
                patched = _merge_patch(resource, document)
            else:
                kind = resource["kind"]
                raise KustomizeError(f"{folder}: strategic merge of a {kind} not implemented")
            resource.clear()
            resource.update(patched)


def _select(resources: list[Resource], target: dict[str, Any], folder: Path) -> list[Resource]:
    unknown = set(target) - {
        "group",
        "version",
        "kind",
        "name",
        "namespace",
        "labelSelector",
        "annotationSelector",
    }
    if unknown:
        raise KustomizeError(f"{folder}: target fields not implemented: {unknown}")
    matched = []
    for resource in resources:
        group, _, version = resource["apiVersion"].rpartition("/")
        fields = {
            "group": group,
            "version": version,
            "kind": resource["kind"],
            "name": _name(resource),
            "namespace": _namespace(resource) or "",
        }
        if all(
            re.fullmatch(str(target[key]), value) for key, value in fields.items() if key in target
        ) and all(
            _matches_selector(resource["metadata"].get(field, {}), target[selector])
            for selector, field in (
                ("labelSelector", "labels"),
                ("annotationSelector", "annotations"),
            )
            if selector in target
        ):
            matched.append(resource)
    if not matched:
        raise KustomizeError(f"{folder}: patch target matches nothing: {target}")
    return matched


def _matches_selector(values: dict[str, str], selector: str) -> bool:
    for term in (term.strip() for term in selector.split(",") if term.strip()):
        if "!=" in term:
            key, value = (part.strip() for part in term.split("!=", 1))
            if values.get(key) == value:
                return False
        elif "=" in term:
            key, value = (part.strip() for part in term.split("=", 1))
            if values.get(key) != value.lstrip("="):
                return False
        elif term.startswith("!"):
            if term[1:] in values:
                return False
        elif term not in values:
            return False
    return True


def _same_object(resource: Resource, patch: Resource) -> bool:
    return (
        resource["kind"] == patch.get("kind")
        and _group(resource) == _group(patch)
        and _name(resource) == patch.get("metadata", {}).get("name")
        and patch.get("metadata", {}).get("namespace") in (None, _namespace(resource))
    )


def _json_patch(resource: Resource, operations: list[dict[str, Any]]) -> None:
    for operation in operations:
        op, path = operation["op"], operation["path"]
        if op == "add":
            _pointer_add(resource, path, copy.deepcopy(operation["value"]))
        elif op == "remove":
            _pointer_remove(resource, path)
        elif op == "replace":
            _pointer_remove(resource, path)
            _pointer_add(resource, path, copy.deepcopy(operation["value"]))
        elif op == "test":
            if _pointer_get(resource, path) != operation["value"]:
                raise KustomizeError(f"{_describe(resource)}: test of {path} failed")
        elif op in ("move", "copy"):
            value = copy.deepcopy(_pointer_get(resource, operation["from"]))
            if op == "move":
                _pointer_remove(resource, operation["from"])
            _pointer_add(resource, path, value)
        else:
            raise KustomizeError(f"unknown JSON patch operation {op!r}")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise KustomizeError(f"not a JSON pointer: {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _pointer_parent(document: Any, path: str) -> tuple[Any, str]:
    parts = _pointer(path)
    if not parts:
        raise KustomizeError("a patch cannot replace the whole object")
    parent = document
    for part in parts[:-1]:
        parent = _child(parent, part, path)
    return parent, parts[-1]


def _child(parent: Any, part: str, path: str) -> Any:
    try:
        return parent[int(part)] if isinstance(parent, list) else parent[part]
    except (KeyError, IndexError, ValueError, TypeError) as error:
        raise KustomizeError(f"path {path} does not exist") from error


def _pointer_get(document: Any, path: str) -> Any:
    value = document
    for part in _pointer(path):
        value = _child(value, part, path)
    return value


def _pointer_add(document: Any, path: str, value: Any) -> None:
    parent, last = _pointer_parent(document, path)
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            parent.insert(int(last), value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise KustomizeError(f"path {path} does not exist")


def _pointer_remove(document: Any, path: str) -> None:
    parent, last = _pointer_parent(document, path)
    _child(parent, last, path)
    if isinstance(parent, list):
        del parent[int(last)]
    else:
        del parent[last]


def _strategic_merge(base: Any, patch: Any) -> Any:
    if not (isinstance(base, dict) and isinstance(patch, dict)):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = copy.deepcopy(base)
    for key, value in patch.items():
        if key.startswith("$"):
            raise KustomizeError(f"strategic merge directive {key} not implemented")
        if value is None:
            result.pop(key, None)
        elif key in MERGE_KEYS and isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(result[key], value, MERGE_KEYS[key])
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _strategic_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_list(base: list[Any], patch: list[Any], key: str) -> list[Any]:
    """kustomize's order: the patch's items first (merged into their match), then the rest."""
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise KustomizeError(f"list item without its merge key {key}: {item!r}")
    patched = {item[key] for item in patch}
    result = []
    for item in patch:
        if item.get("$patch") == "delete":
            continue
        match = next((old for old in base if old.get(key) == item[key]), None)
        result.append(copy.deepcopy(item) if match is None else _strategic_merge(match, item))
    return result + [copy.deepcopy(old) for old in base if old.get(key) not in patched]


def _merge_patch(base: Any, patch: Any) -> Any:
    """RFC 7386, as kustomize applies a patch to a kind it has no schema of."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(base) if isinstance(base, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


# --- transformers ---------------------------------------------------------------------------


def _set_namespace(resources: list[Resource], namespace: str) -> None:
    for resource in resources:
        if resource["kind"] not in CLUSTER_SCOPED_KINDS:
            resource["metadata"]["namespace"] = namespace


def _add_labels(resources: list[Resource], spec: dict[str, Any]) -> None:
    unknown = set(spec) - {"pairs", "includeTemplates", "includeSelectors"}
    if unknown or spec.get("includeSelectors"):
        raise KustomizeError(f"labels: only pairs and includeTemplates are implemented: {spec}")
    pairs = spec.get("pairs", {})
    for resource in resources:
        resource["metadata"].setdefault("labels", {}).update(pairs)
        if spec.get("includeTemplates"):
            for template in _pod_templates(resource):
                template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)


def _set_image(resources: list[Resource], spec: dict[str, Any]) -> None:
    for resource in resources:
        for pod_spec in _pod_specs(resource):
            for container in pod_spec.get("containers", []) + pod_spec.get("initContainers", []):
                name, tag, digest = split_image(container.get("image", ""))
                if name != spec["name"]:
                    continue
                name = spec.get("newName", name)
                if spec.get("digest"):
                    container["image"] = f"{name}@{spec['digest']}"
                elif spec.get("newTag"):
                    container["image"] = f"{name}:{spec['newTag']}"
                else:
                    suffix = f"@{digest}" if digest else f":{tag}" if tag else ""
                    container["image"] = name + suffix


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """`registry/name:tag@digest` as (name, tag, digest)."""
    image, _, digest = image.partition("@")
    name, tag = image, None
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        name, tag = image[:colon], image[colon + 1 :]
    return name, tag, digest or None


# --- helpers --------------------------------------------------------------------------------


def _pod_templates(resource: Resource) -> list[dict[str, Any]]:
    spec = resource.get("spec", {})
    if resource["kind"] in TEMPLATE_KINDS and "template" in spec:
        return [spec["template"]]
    if resource["kind"] == "CronJob":
        job = spec.get("jobTemplate", {})
        return [job, job.get("spec", {}).get("template", {})]
    return []


def _pod_specs(resource: Resource) -> list[dict[str, Any]]:
    if resource["kind"] == "Pod":
        return [resource.get("spec", {})]
    templates = _pod_templates(resource)
    return [template.get("spec", {}) for template in templates if "spec" in template][-1:]


def _name(resource: Resource) -> str:
    return resource["metadata"]["name"]


def _namespace(resource: Resource) -> str | None:
    return resource["metadata"].get("namespace")


def _group(resource: Resource) -> str:
    return resource.get("apiVersion", "").rpartition("/")[0]


def _describe(resource: Resource) -> str:
    return f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"


def _order(resource: Resource) -> tuple[int, str, str, str, str, str]:
    kind = resource["kind"]
    if kind in ORDER_FIRST:
        rank = ORDER_FIRST.index(kind)
    elif kind in ORDER_LAST:
        rank = len(ORDER_FIRST) + 1 + ORDER_LAST.index(kind)
    else:
        rank = len(ORDER_FIRST)
    group, _, version = resource["apiVersion"].rpartition("/")
    return rank, group, version, kind, _namespace(resource) or "", _name(resource)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the generated ConfigMaps' files) as literal blocks."""


def _represent_string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_string)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a folder holding a kustomization.yaml")
    arguments = parser.parse_args(argv)
    try:
        sys.stdout.write(dump(render(arguments.folder)))
    except KustomizeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
