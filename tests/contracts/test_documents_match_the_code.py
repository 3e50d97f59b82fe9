"""The committed OpenAPI, AsyncAPI and event schema documents are what the code generates."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from shared.settings import REPOSITORY_ROOT, SERVICE_NAMES
from tools import contracts

DOCUMENTS = contracts.document_paths()


def drift_message(path: Path, committed: Any, generated: Any) -> str:
    return (
        f"{path} differs from the code at {contracts.first_difference(committed, generated)}: "
        f"{contracts.REGENERATE}."
    )


@pytest.mark.parametrize("path", DOCUMENTS, ids=str)
def test_committed_document_matches_the_code(generated: dict[Path, Any], path: Path) -> None:
    committed_file = REPOSITORY_ROOT / path
    assert committed_file.exists(), f"{path} is missing: {contracts.REGENERATE}."
    committed = contracts.load_document(committed_file)
    assert committed == generated[path], drift_message(path, committed, generated[path])


def test_no_document_is_left_over_from_removed_code(generated: dict[Path, Any]) -> None:
    stale = [
        path
        for folder in (contracts.API_DIR, contracts.SCHEMAS_DIR)
        for path in sorted((REPOSITORY_ROOT / folder).glob("*.json"))
        if path.relative_to(REPOSITORY_ROOT) not in generated
    ]
    assert not stale, f"nothing generates {[str(p) for p in stale]}: {contracts.REGENERATE}."


def test_every_document_has_its_place(generated: dict[Path, Any]) -> None:
    assert list(generated) == contracts.document_paths()


def test_every_service_has_an_openapi_3_1_document(generated: dict[Path, Any]) -> None:
    for service in SERVICE_NAMES:
        document = generated[contracts.API_DIR / f"{service}.json"]
        assert document["openapi"].startswith("3.1.")
        assert document["info"]["title"].lower() == service
        assert "/healthz" in document["paths"]
        assert any(path.startswith("/v1/") for path in document["paths"])


def test_building_the_apps_reaches_no_database_or_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`make contracts` runs anywhere: no server is needed until an app's lifespan starts."""

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("building an app opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for service in SERVICE_NAMES:
        app, _ = contracts.build_service(service, contracts.document_settings())
        assert app.openapi()["paths"]


def test_drift_names_the_changed_document_and_how_to_fix_it(
    generated: dict[Path, Any], tmp_path: Path
) -> None:
    for path, document in generated.items():
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        render = contracts.render_yaml if path.suffix == ".yaml" else contracts.render_json
        target.write_text(render(document), encoding="utf-8")
    assert contracts.drift(tmp_path, generated) == []

    intake = tmp_path / contracts.API_DIR / "intake.json"
    changed = contracts.load_document(intake)
    changed["paths"]["/v1/incidents"]["post"]["summary"] = "something else"
    intake.write_text(contracts.render_json(changed), encoding="utf-8")
    (tmp_path / contracts.SCHEMAS_DIR / "incident.retracted.json").write_text("{}\n")
    assert contracts.drift(tmp_path, generated) == [
        "docs/api/intake.json: differs at /paths/~1v1~1incidents/post/summary",
        "docs/events/schemas/incident.retracted.json: nothing generates it any more",
    ]
