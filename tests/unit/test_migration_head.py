"""The revision a service expects its schema at, read from its migration files without Alembic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from shared.db import alembic_config, head_revision, migration_head
from shared.settings import REPOSITORY_ROOT, Settings

SERVICES_WITH_SCHEMAS = sorted(
    path.parent.parent.name for path in (REPOSITORY_ROOT / "services").glob("*/migrations/versions")
)


def write_migration(folder: Path, name: str, revision: str, down_revision: object) -> None:
    (folder / f"{name}.py").write_text(
        f'"""{name}"""\n\nfrom alembic import op\n\n'
        f"revision: str = {revision!r}\n"
        f"down_revision: str | None = {down_revision!r}\n"
        "branch_labels = None\n\n\ndef upgrade() -> None:\n    op.execute('SELECT 1')\n",
        encoding="utf-8",
    )


def test_every_service_has_migrations() -> None:
    assert set(SERVICES_WITH_SCHEMAS) >= {"intake", "escalation", "notification", "audit"}


@pytest.mark.parametrize("service", SERVICES_WITH_SCHEMAS)
def test_the_head_is_alembics_own(service: str) -> None:
    settings = Settings(database_url="postgresql://nobody@localhost/none")
    expected = ScriptDirectory.from_config(alembic_config(settings, service)).get_current_head()
    assert expected is not None
    assert migration_head(service) == expected


def test_a_chain_ends_at_its_last_revision(tmp_path: Path) -> None:
    write_migration(tmp_path, "0002_second", "b2", "a1")
    write_migration(tmp_path, "0001_first", "a1", None)
    write_migration(tmp_path, "0003_third", "c3", "b2")
    (tmp_path / "__init__.py").write_text("", encoding="utf-8")
    assert head_revision(tmp_path) == "c3"


def test_a_merge_follows_both_branches(tmp_path: Path) -> None:
    write_migration(tmp_path, "0001", "a1", None)
    write_migration(tmp_path, "0002a", "b2", "a1")
    write_migration(tmp_path, "0002b", "b3", "a1")
    write_migration(tmp_path, "0003", "m4", ("b2", "b3"))
    assert head_revision(tmp_path) == "m4"


def test_several_heads_are_an_error(tmp_path: Path) -> None:
    write_migration(tmp_path, "0001", "a1", None)
    write_migration(tmp_path, "0002a", "b2", "a1")
    write_migration(tmp_path, "0002b", "b3", "a1")
    with pytest.raises(RuntimeError, match="several heads: b2, b3"):
        head_revision(tmp_path)


def test_no_migrations_no_head(tmp_path: Path) -> None:
    assert head_revision(tmp_path) is None


def test_a_service_that_does_not_migrate_never_loads_alembic() -> None:
    """Alembic and its templates are loaded to change a schema, not to check one."""
    probe = (
        "import sys\n"
        "import services.escalation.app\n"
        "from shared.db import migration_head\n"
        "assert migration_head('escalation')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPOSITORY_ROOT, capture_output=True, text=True
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"
