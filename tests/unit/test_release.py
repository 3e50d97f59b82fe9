"""One release, named the same everywhere: the package, its API documents, the images and the
changelog."""

from __future__ import annotations

import json
import re
import tomllib

import yaml

from shared.runtime import RELEASE
from shared.settings import REPOSITORY_ROOT
from tools.contracts import API_DIR, ASYNCAPI_FILE

DECLARED = tomllib.loads((REPOSITORY_ROOT / "pyproject.toml").read_text("utf-8"))["project"][
    "version"
]


def test_the_installed_package_is_the_declared_release() -> None:
    assert RELEASE == DECLARED, "pyproject.toml changed since the install: make install"


def test_the_development_tools_are_of_the_release_and_need_exactly_it() -> None:
    tools = tomllib.loads((REPOSITORY_ROOT / "tools" / "pyproject.toml").read_text("utf-8"))
    assert tools["project"]["version"] == DECLARED
    assert tools["project"]["dependencies"] == [f"correction-emergency[local]=={DECLARED}"]


def test_every_api_document_names_the_release() -> None:
    documents = sorted(API_DIR.glob("*.json"))
    assert documents
    for document in documents:
        assert json.loads(document.read_text("utf-8"))["info"]["version"] == DECLARED, document
    asyncapi = yaml.safe_load(ASYNCAPI_FILE.read_text("utf-8"))
    assert asyncapi["info"]["version"] == DECLARED


def test_the_changelog_leads_with_the_release() -> None:
    changelog = (REPOSITORY_ROOT / "CHANGELOG.md").read_text("utf-8")
    first = re.search(r"^## (\S+)", changelog, re.MULTILINE)
    assert first is not None and first.group(1) == DECLARED


def test_every_image_the_base_and_production_run_is_of_the_release() -> None:
    """The dev overlay runs the rolling `dev` build; everything else names the release."""
    k8s = REPOSITORY_ROOT / "deploy" / "k8s"
    tags = set()
    for manifest in [*(k8s / "base").rglob("*.yaml"), *(k8s / "overlays" / "prod").rglob("*.yaml")]:
        text = manifest.read_text("utf-8")
        tags |= set(re.findall(r"image: correction-emergency/[a-z]+:([^\s}]+)", text))
        tags |= set(re.findall(r"newTag: ([^\s}]+)", text))
    assert tags == {DECLARED}
