"""The policy file (`POLICY_FILE`) with a deployment's overrides (`POLICY_OVERRIDES_FILE`)
merged in: escalation reads all of it, intake the part on matching reports (R20)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Overrides replace values key by key; nested mappings merge, lists replace."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def policy_data(path: Path, overrides: Path | None = None) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    if overrides is not None:
        data = merge(data, yaml.safe_load(overrides.read_text(encoding="utf-8")) or {})
    return data
