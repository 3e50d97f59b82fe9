"""The lock files under requirements/: what `make install` and the image install, pinned and
hashed. A requirement added to pyproject.toml without `make lock` fails here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.deploy.support import REPOSITORY

RUNTIME_LOCK = REPOSITORY / "requirements" / "runtime.txt"
DEV_LOCK = REPOSITORY / "requirements" / "dev.txt"
PROJECT = tomllib.loads((REPOSITORY / "pyproject.toml").read_text("utf-8"))["project"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def pins(lock: Path) -> dict[str, tuple[Version, int]]:
    """Each pinned package of a lock: its version and how many hashes it carries."""
    found: dict[str, tuple[Version, int]] = {}
    current: str | None = None
    for line in lock.read_text("utf-8").splitlines():
        stripped = line.strip()
        if pin := PIN.match(stripped):
            current = canonicalize_name(pin.group(1))
            assert current not in found, f"{current} pinned twice in {lock.name}"
            found[current] = (Version(pin.group(2)), 0)
        elif stripped.startswith("--hash=sha256:") and current is not None:
            version, hashes = found[current]
            found[current] = (version, hashes + 1)
        elif stripped and not stripped.startswith("#"):
            pytest.fail(f"{lock.name}: not a pin or a hash: {line}")
    return found


def requirements(*extras: str) -> list[Requirement]:
    listed = list(PROJECT["dependencies"])
    for extra in extras:
        listed += PROJECT["optional-dependencies"][extra]
    return [Requirement(spec) for spec in listed]


@pytest.mark.parametrize(
    ("lock", "extras"), [(RUNTIME_LOCK, ()), (DEV_LOCK, ("dev", "local"))], ids=["runtime", "dev"]
)
def test_the_lock_pins_every_requirement_of_pyproject_within_its_bounds(
    lock: Path, extras: tuple[str, ...]
) -> None:
    pinned = pins(lock)
    for requirement in requirements(*extras):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{name} is in pyproject.toml but not in {lock.name}: make lock"
        version, _ = pinned[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock.name} pins {name}=={version}, outside {requirement}: make lock"
        )


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, DEV_LOCK], ids=["runtime", "dev"])
def test_every_pin_carries_hashes_and_no_index_is_named(lock: Path) -> None:
    pinned = pins(lock)
    assert pinned
    assert all(hashes for _, hashes in pinned.values()), "pip --require-hashes needs them all"
    text = lock.read_text("utf-8")
    assert not re.search(r"^\s*(--index-url|--extra-index-url|--find-links|-i )", text, re.M)


def test_the_runtime_lock_has_no_extra_and_agrees_with_the_dev_lock() -> None:
    """The images install the runtime lock: nothing of the dev or local extras, and the same
    versions the tests ran against."""
    runtime, dev = pins(RUNTIME_LOCK), pins(DEV_LOCK)
    extras_only = {
        canonicalize_name(r.name)
        for r in requirements("dev", "local")[len(PROJECT["dependencies"]) :]
    } - {canonicalize_name(r.name) for r in requirements()}
    assert not extras_only & set(runtime)
    for name, (version, _) in runtime.items():
        assert name in dev and dev[name][0] == version, f"{name}: {version} vs {dev.get(name)}"


def test_make_installs_from_the_lock_and_reinstalls_when_it_changes() -> None:
    makefile = (REPOSITORY / "Makefile").read_text("utf-8")
    stamp = re.search(r"^\$\(STAMP\):(.*)$", makefile, re.M)
    assert stamp is not None and "$(LOCK)" in stamp.group(1)
    assert re.search(r"^LOCK := requirements/dev\.txt$", makefile, re.M)
    assert "pip install --quiet --require-hashes -r $(LOCK)" in makefile
    assert re.search(r"^lock:.*## ", makefile, re.M), "make help lists `make lock`"
