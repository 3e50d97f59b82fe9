"""Every command people run has a name ([project.scripts] of the project and of its development
tools) and answers --help."""

from __future__ import annotations

import importlib
import tomllib

import pytest

from shared.settings import REPOSITORY_ROOT


def scripts_of(pyproject: str) -> dict[str, str]:
    scripts: dict[str, str] = tomllib.loads((REPOSITORY_ROOT / pyproject).read_text("utf-8"))[
        "project"
    ]["scripts"]
    return scripts


RUNTIME_SCRIPTS = scripts_of("pyproject.toml")
TOOL_SCRIPTS = scripts_of("tools/pyproject.toml")
SCRIPTS = RUNTIME_SCRIPTS | TOOL_SCRIPTS


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


def test_the_images_commands_are_the_runtimes_and_the_tools_are_only_in_the_tools() -> None:
    """The image installs the project alone: every command it names runs there."""
    assert not RUNTIME_SCRIPTS.keys() & TOOL_SCRIPTS.keys()
    assert all(target.startswith(("shared.", "services.")) for target in RUNTIME_SCRIPTS.values())
    assert all(target.startswith("tools.") for target in TOOL_SCRIPTS.values())


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
