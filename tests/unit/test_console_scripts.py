"""Every command people run has a name (pyproject's [project.scripts]) and answers --help."""

from __future__ import annotations

import importlib
import tomllib

import pytest

from shared.settings import REPOSITORY_ROOT

SCRIPTS = tomllib.loads((REPOSITORY_ROOT / "pyproject.toml").read_text("utf-8"))["project"][
    "scripts"
]


def test_the_commands_people_run_have_names() -> None:
    assert {
        "sqjz-run",
        "sqjz-token",
        "sqjz-migrate",
        "sqjz-contracts",
        "sqjz-dlq-replay",
        "sqjz-reseal",
        "sqjz-witness",
        "sqjz-verify",
    } <= SCRIPTS.keys()


@pytest.mark.parametrize(("name", "target"), sorted(SCRIPTS.items()))
def test_each_command_answers_help_under_its_own_name(
    name: str, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    module, function = target.split(":")
    main = getattr(importlib.import_module(module), function)
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    assert exit.value.code == 0
    usage = capsys.readouterr().out
    assert usage.startswith(f"usage: {name}"), usage[:200]
