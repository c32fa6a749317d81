"""The wheel holds the product alone: the people_counter package with its data files, no test or bench tooling."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

APP_DIR = Path(__file__).resolve().parents[1]
PACKAGE_DIR = APP_DIR / "people_counter"
DATA_FILES = {"people_counter/py.typed", "people_counter/pins.yml", "people_counter/mqtt_topics.yml"}
SCRIPTS = {"people-counter", "people-counter-stream", "people-counter-dashboard", "people-counter-fleet"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    """The app built as pip builds it, from a copy: an in-tree build would leave build/ and egg-info behind."""
    top = tmp_path_factory.mktemp("wheel")
    source = top / "src"
    shutil.copytree(
        APP_DIR,
        source,
        ignore=shutil.ignore_patterns("__pycache__", ".*_cache", "build", "dist", "*.egg-info"),
    )
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--disable-pip-version-check"]
    done = subprocess.run(
        [*pip_wheel, "--wheel-dir", str(top / "out"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (built,) = (top / "out").glob("people_counter-*.whl")
    archive = zipfile.ZipFile(built)
    yield archive
    archive.close()


def _names(wheel: zipfile.ZipFile) -> set[str]:
    return {name for name in wheel.namelist() if not name.endswith("/")}


def test_the_wheel_holds_the_package_alone(wheel: zipfile.ZipFile) -> None:
    names = _names(wheel)
    outside = {name for name in names if name.split("/")[0] != "people_counter" and ".dist-info/" not in name}
    assert outside == set(), "only people_counter/ and its dist-info belong in the wheel"
    tooling = {name for name in names if {"testsupport", "bench", "tests"} & set(name.split("/")[:-1])}
    assert tooling == set(), "test servers, benchmarks and tests stay out of the wheel"
    assert not any(name.endswith((".pyc", ".orig", ".rej")) for name in names)
    (top_level,) = (name for name in names if name.endswith(".dist-info/top_level.txt"))
    assert wheel.read(top_level).decode().split() == ["people_counter"]


def test_the_wheel_has_every_module_and_data_file(wheel: zipfile.ZipFile) -> None:
    names = _names(wheel)
    modules = {
        path.relative_to(APP_DIR).as_posix() for path in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in path.parts
    }
    assert modules - names == set(), "modules of the package missing from the wheel"
    for page in ("dashboard", "fleet"):
        static = {path.relative_to(APP_DIR).as_posix() for path in (PACKAGE_DIR / page / "static").iterdir()}
        assert static, f"the {page} has static files"
        assert static - names == set(), f"the {page}'s static files"
    assert DATA_FILES - names == set(), "py.typed and the contract's and the pins' data files"


def test_the_wheel_installs_its_programs(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = (name for name in _names(wheel) if name.endswith(".dist-info/entry_points.txt"))
    text = wheel.read(entry_points).decode()
    section = text.split("[console_scripts]")[1].split("[")[0]
    scripts = {line.split("=")[0].strip() for line in section.splitlines() if "=" in line}
    assert scripts == SCRIPTS
