"""pins.yml is the one source of the pins: the app and the roles read it, and no other copy exists."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from people_counter.pins import PINS_FILE, pins
from people_counter.prepare import ffmpeg, sample
from people_counter.prepare.model_catalog import CATALOG, ModelPins

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = REPO / "app" / "pyproject.toml"
SHA256 = re.compile(r"^[0-9a-f]{64}$")
ROLES_READING_PINS = ("ffmpeg", "openvino", "people_counter")


def _leaves(node: object, key: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for name, value in node.items():
            yield from _leaves(value, str(name))
    elif isinstance(node, list):
        for value in node:
            yield from _leaves(value, key)
    else:
        yield key, str(node)


def pinned_values() -> list[str]:
    """What must be written nowhere but pins.yml.

    Every sha256, every archive name, and every version: alone where it is distinctive (x.y.z),
    as the requirement a registry is asked for where it is short (a model's "0.2").
    """
    data = yaml.safe_load(PINS_FILE.read_text(encoding="utf-8"))
    values = {value for key, value in _leaves(data) if SHA256.match(value) or key == "archive"}
    values |= {value for key, value in _leaves(data) if key.endswith("version") and value.count(".") >= 2}
    for model in data["models"].values():
        separator = "==" if model["registry"] == "pypi" else "@"
        values.add(f"{model['package']}{separator}{model['version']}")
    return sorted(values)


def _as_found(value: str) -> re.Pattern[str]:
    # A version stands alone: 1.2.3 in "n1.2.3-g4567" or "-v1.2.3" counts, 11.2.3 or 1.2.34 does not.
    return re.compile(rf"(?<![0-9.]){re.escape(value)}(?![0-9.])")


def _repository_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    return [REPO / name for name in listed if name]


def _is_prose(path: Path) -> bool:
    relative = path.relative_to(REPO)
    return path.suffix == ".md" or relative.parts[0] == "docs"


def test_the_app_takes_its_pins_from_the_file() -> None:
    assert pins().ffmpeg.version == ffmpeg.FFMPEG_VERSION
    assert pins().ffmpeg.wheel_version == ffmpeg.WHEEL_VERSION
    assert pins().ffmpeg.wheel_sha256 == ffmpeg.WHEEL_SHA256
    assert pins().ffmpeg.device_path == ffmpeg.DEVICE_FFMPEG
    assert pins().sample.sha256 == sample.SAMPLE_SHA256
    assert pins().sample.member == sample.SAMPLE_MEMBER
    assert set(pins().ffmpeg.wheel_sha256) == {"x86_64", "aarch64"}
    for value in pinned_values():
        assert value.strip(), "an empty pin"


def test_the_model_catalog_takes_its_pins_from_the_file() -> None:
    assert set(CATALOG) == set(pins().models)
    for name, model in CATALOG.items():
        assert model.pins == pins().models[name]
        assert set(model.pins) == set(ModelPins.__annotations__)
        assert model.graph_member in model.pins["members"]
        assert all(SHA256.match(sha) for sha in [model.pins["archive_sha256"], *model.pins["members"].values()])


def test_the_app_requires_the_pinned_openvino() -> None:
    """pyproject.toml must name the runtime (a wheel's metadata cannot read pins.yml): the same version."""
    dependencies = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["dependencies"]
    assert f"openvino=={pins().openvino_version}" in dependencies


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="not in the repository")
def test_no_pin_is_written_anywhere_else() -> None:
    """Every sha256 and version of pins.yml, searched in the whole tree but prose (*.md, docs/)."""
    allowed = {(PYPROJECT, f'"openvino=={pins().openvino_version}",')}
    patterns = {value: _as_found(value) for value in pinned_values()}
    found = []
    for path in _repository_files():
        if path == PINS_FILE or _is_prose(path) or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for value, pattern in patterns.items():
                if pattern.search(line) and (path, line.strip()) not in allowed:
                    found.append(f"{path.relative_to(REPO)}:{number}: {value}")
    assert found == [], "pins belong in app/people_counter/pins.yml alone; read them from there"


@pytest.mark.skipif(not (REPO / "roles").is_dir(), reason="not in the repository")
@pytest.mark.parametrize("role", ROLES_READING_PINS)
def test_the_roles_read_the_pins_file(role: str) -> None:
    """Each role's <role>_pins_file default runs this Python code; it must name the package's pins.yml."""
    defaults = yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text(encoding="utf-8"))
    code = re.search(r"-c \"([^\"]+)\"", defaults[f"{role}_pins_file"])
    assert code is not None
    done = subprocess.run([sys.executable, "-c", code.group(1)], capture_output=True, text=True, check=True)
    assert Path(done.stdout.strip()) == PINS_FILE
    role_vars = (REPO / "roles" / role / "vars" / "main.yml").read_text(encoding="utf-8")
    assert f"lookup('ansible.builtin.file', {role}_pins_file)" in role_vars
