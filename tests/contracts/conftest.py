"""The generated documents, built once: building four apps is the slow part."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tools import contracts


@pytest.fixture(scope="package")
def generated() -> dict[Path, Any]:
    """Every document `make contracts` writes, by its path under the repository root."""
    return contracts.expected_files()
