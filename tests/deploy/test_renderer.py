"""deploy/k8s/render.py: kustomize's output for the subset the manifests use."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.support import VARIANTS, renderer

KUBECTL = shutil.which("kubectl")


def kubectl_kustomize(folder: Path) -> list[dict] | None:
    """What kubectl renders, or None where kubectl is not installed."""
    if KUBECTL is None:
        return None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
@pytest.mark.parametrize("variant", VARIANTS)
def test_renders_what_kubectl_kustomize_renders(variant: str) -> None:
    assert renderer.render(VARIANTS[variant]) == kubectl_kustomize(VARIANTS[variant])


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: example/web:1.0
          env:
            - {name: A, value: "1"}
          envFrom:
            - configMapRef: {name: settings}
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
      volumes:
        - name: tmp
          emptyDir: {}
        - name: files
          projected:
            sources:
              - configMap: {name: settings}
"""


def test_generated_config_maps_get_kustomizes_hash_and_references_follow(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "deployment.yaml": DEPLOYMENT,
            "kustomization.yaml": """
resources: [deployment.yaml]
configMapGenerator:
  - name: settings
    literals: [a=b]
""",
        },
    )
    rendered = renderer.render(tmp_path)
    assert kubectl_kustomize(tmp_path) in (None, rendered)
    config_map, deployment = rendered
    # The name kubectl kustomize (kustomize 5) gives this ConfigMap.
    assert config_map["metadata"]["name"] == "settings-4h2mbtbbt6"
    spec = deployment["spec"]["template"]["spec"]
    assert spec["containers"][0]["envFrom"][0]["configMapRef"]["name"] == "settings-4h2mbtbbt6"
    assert spec["volumes"][1]["projected"]["sources"][0]["configMap"]["name"] == (
        "settings-4h2mbtbbt6"
    )


def test_overlay_merges_into_a_base_generator_and_patches_by_target(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "base/deployment.yaml": DEPLOYMENT,
            "base/kustomization.yaml": """
resources: [deployment.yaml]
configMapGenerator:
  - name: settings
    literals: [a=b, c=d]
labels:
  - pairs: {team: platform}
    includeTemplates: true
""",
            "overlay/kustomization.yaml": """
namespace: staging
resources: [../base]
configMapGenerator:
  - name: settings
    behavior: merge
    literals: [c=e]
patches:
  - target: {kind: Deployment, labelSelector: app=web}
    patch: |-
      - {op: test, path: /spec/template/spec/containers/0/name, value: web}
      - {op: add, path: /spec/replicas, value: 3}
  - patch: |-
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: web}
      spec:
        template:
          spec:
            containers:
              - name: web
                env:
                  - {name: B, value: "2"}
                volumeMounts:
                  - {name: tmp, mountPath: /tmp, readOnly: true}
images:
  - {name: example/web, newName: registry.example/web, newTag: "2.0"}
""",
        },
    )
    rendered = renderer.render(tmp_path / "overlay")
    assert kubectl_kustomize(tmp_path / "overlay") in (None, rendered)
    config_map, deployment = rendered
    assert config_map["data"] == {"a": "b", "c": "e"}
    assert config_map["metadata"]["namespace"] == deployment["metadata"]["namespace"] == "staging"
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["metadata"]["labels"] == {
        "app": "web",
        "team": "platform",
    }
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/web:2.0"
    # kustomize puts the patch's items first.
    assert container["env"] == [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp", "readOnly": True}]
    assert container["envFrom"][0]["configMapRef"]["name"] == config_map["metadata"]["name"]


def test_failed_json_patch_test_stops_the_render(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "deployment.yaml": DEPLOYMENT,
            "kustomization.yaml": """
resources: [deployment.yaml]
patches:
  - target: {kind: Deployment}
    patch: |-
      - {op: test, path: /spec/template/spec/containers/0/name, value: other}
""",
        },
    )
    with pytest.raises(renderer.KustomizeError, match="test of"):
        renderer.render(tmp_path)


@pytest.mark.parametrize(
    "kustomization",
    [
        "resources: [deployment.yaml]\nsecretGenerator: [{name: s, literals: [a=b]}]\n",
        "resources: [deployment.yaml]\ncommonLabels: {a: b}\n",
        "resources: [deployment.yaml]\nconfigMapGenerator: [{name: c, files: [../outside]}]\n",
        "resources: [missing.yaml]\n",
    ],
)
def test_refuses_what_it_does_not_implement_or_kustomize_would_refuse(
    tmp_path: Path, kustomization: str
) -> None:
    (tmp_path / "outside").write_text("x")
    write(tmp_path / "tree", {"deployment.yaml": DEPLOYMENT, "kustomization.yaml": kustomization})
    with pytest.raises(renderer.KustomizeError):
        renderer.render(tmp_path / "tree")


def test_splits_image_references() -> None:
    assert renderer.split_image("registry:5000/a/b:1.2@sha256:ab") == (
        "registry:5000/a/b",
        "1.2",
        "sha256:ab",
    )
    assert renderer.split_image("registry:5000/a/b") == ("registry:5000/a/b", None, None)


def test_command_line_prints_the_objects(capsys: pytest.CaptureFixture[str]) -> None:
    assert renderer.main([str(VARIANTS["dev"])]) == 0
    printed = list(yaml.safe_load_all(capsys.readouterr().out))
    assert printed == renderer.render(VARIANTS["dev"])
