"""Fixtures of the unit tests: the real policy and directory files, each read once."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.escalation.rules import Policy
from shared.domain.directory import Directory

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
POLICY_FILE = REPOSITORY_ROOT / "services" / "escalation" / "policy.yaml"
DIRECTORY_FILE = REPOSITORY_ROOT / "config" / "directory.yaml"


@pytest.fixture(scope="session")
def policy() -> Policy:
    return Policy.load(POLICY_FILE)


@pytest.fixture(scope="session")
def directory() -> Directory:
    return Directory.load(DIRECTORY_FILE)


@pytest.fixture(scope="session")
def party_names(directory: Directory) -> dict[str, str]:
    return {party.code: party.name for party in directory.parties}
