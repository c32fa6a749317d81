"""Config errors: one line naming the field and the reason, exit status 2, no traceback."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import tempfile
import types
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from people_counter.cli import main
from people_counter.config import (
    Config,
    CountingConfig,
    describe_validation_error,
    load_config,
    parse_config,
    validate_document,
)
from people_counter.dashboard.config import DashboardConfig
from people_counter.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(text)
    return path


def test_defaults_load_from_an_empty_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.model.device == "CPU"
    assert config.store.retention_days == 30
    assert config.mqtt.heartbeat_s <= 5


def test_a_full_file_loads(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
device_id: door-1
state_dir: /tmp/pc
input: {source: "rtsp://user:pw@cam/stream", loop: false}
model: {device: AUTO, score_threshold: 0.4, tiles: none}
counting:
  line: [[0.1, 0.2], [0.9, 0.2]]
  occupancy_max: 5
  daily_reset: "03:30"
mqtt: {host: broker.local, port: 8883, username: counter, tls: {ca_file: /etc/ssl/ca.pem}}
""",
        )
    )
    assert config.device_id == "door-1"
    assert config.counting.line == ((0.1, 0.2), (0.9, 0.2))
    assert config.counting.daily_reset is not None and config.counting.daily_reset.hour == 3
    assert config.mqtt.tls is not None
    assert config.input.substream is None


def test_a_substream_is_a_stream_url_of_the_camera_whose_source_is_one(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "input: {source: rtsp://cam/main, substream: ' rtsp://cam/sub '}"))
    assert (config.input.source, config.input.substream) == ("rtsp://cam/main", "rtsp://cam/sub")


TOPIC_LEVEL_ERROR = "must be a plain topic level without wildcards or edge slashes"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mqtt: {prot: 1883}", "mqtt.prot: unknown key"),
        ("mqtt: {port: 70000}", "mqtt.port: Input should be less than or equal to 65535"),
        ("mqtt: {port: abc}", "mqtt.port: Input should be a valid integer"),
        ("model: {device: TPU}", "model.device: Input should be 'CPU', 'GPU', 'NPU' or 'AUTO'"),
        ("counting: {line: [[0, 0], [0, 0]]}", "counting: Value error, line: the two points must differ"),
        (
            "counting: {line: [[0, 0], [1.5, 0]]}",
            "counting.line.1.0: Input should be less than or equal to 1",
        ),
        ("device_id: a/b", "device_id: Value error, must be non-empty with no '/'"),
        *(
            (f"mqtt: {{topic_prefix: '{prefix}'}}", f"mqtt.topic_prefix: Value error, {TOPIC_LEVEL_ERROR}")
            for prefix in ("", "a#", "a+b", "/a", "a/")
        ),
        ("mqtt: {homeassistant: {prefix: ha/#}}", f"mqtt.homeassistant.prefix: Value error, {TOPIC_LEVEL_ERROR}"),
        (
            "input: {source: rtsp://cam/main, substream: rtp://cam/sub}",
            "input.substream: Value error, unsupported URL scheme 'rtp' (expected rtsp, rtsps, http, https)",
        ),
        ("input: {source: rtsp://cam/main, substream: sub.mp4}", "input.substream: Value error, not a URL"),
        ("input: {source: '0', substream: rtsp://cam/sub}", "input: Value error, substream: a camera's sub-stream"),
        ("- just\n- a list", "the top level must be a mapping"),
        ("mqtt: {port: [1883", "invalid YAML"),
    ],
)
def test_bad_values_name_the_field(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message


def test_a_topic_prefix_may_have_levels_inside() -> None:
    assert parse_config({"mqtt": {"topic_prefix": "site-3/people"}}, "config.yml").mqtt.topic_prefix == "site-3/people"


def section_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every section (a field whose type is a model, optional or not) of `model`, nested ones too,
    read from the model itself: a section added later is covered without touching this file."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            candidates: tuple[object, ...] = typing.get_args(annotation)
        else:
            candidates = (annotation,)
        for candidate in candidates:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                yield (*prefix, name)
                yield from section_paths(candidate, (*prefix, name))


def with_unknown_key(document: dict[str, object], path: tuple[str, ...]) -> dict[str, object]:
    """A copy of `document` with the key `colour` added to the section at `path` (the top level for ())."""
    data = copy.deepcopy(document)
    section = data
    for name in path:
        section = typing.cast(dict[str, object], section.setdefault(name, {}))
    section["colour"] = "blue"
    return data


COUNTER_SECTIONS = [(), *section_paths(Config)]
DASHBOARD_MINIMAL: dict[str, object] = {
    "auth": {"password_hash": "scrypt$16384$8$1$c2FsdA==$a2V5"},
    "tls": {"cert_file": "/etc/cert.pem", "key_file": "/etc/key.pem"},
}
"""The least a dashboard config needs (the required fields), with the optional tls section present."""
DASHBOARD_SECTIONS = [(), *section_paths(DashboardConfig)]


def test_every_section_is_listed() -> None:
    """The generator itself: it finds the sections, nested and optional ones included."""
    assert {("input",), ("model",), ("tracker",), ("counting",), ("mqtt",), ("mqtt", "tls")} <= set(COUNTER_SECTIONS)
    assert {("store",), ("stream",)} <= set(COUNTER_SECTIONS)
    assert {("listen",), ("auth",), ("tls",), ("mqtt",)} <= set(DASHBOARD_SECTIONS)


@pytest.mark.parametrize("path", COUNTER_SECTIONS, ids=lambda path: ".".join(path) or "top-level")
def test_an_unknown_key_is_refused_in_every_section_of_the_counter_config(path: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(with_unknown_key({}, path), "config.yml")
    assert str(caught.value) == f"config.yml: {'.'.join([*path, 'colour'])}: unknown key"


@pytest.mark.parametrize("path", DASHBOARD_SECTIONS, ids=lambda path: ".".join(path) or "top-level")
def test_an_unknown_key_is_refused_in_every_section_of_the_dashboard_config(path: tuple[str, ...]) -> None:
    validate_document(DashboardConfig, DASHBOARD_MINIMAL, "dashboard.yml")  # valid without the key
    with pytest.raises(ConfigError) as caught:
        validate_document(DashboardConfig, with_unknown_key(DASHBOARD_MINIMAL, path), "dashboard.yml")
    assert str(caught.value) == f"dashboard.yml: {'.'.join([*path, 'colour'])}: unknown key"


def write_bytes(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "config.yml"
    path.write_bytes(data)
    return path


def test_a_yaml_error_names_the_line_and_the_problem(tmp_path: Path) -> None:
    path = write_bytes(tmp_path, b"device_id: shop\nmqtt:\n\tport: 1883\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: invalid YAML at line 3: found character '\\t' that cannot start any token"


def test_a_yaml_error_without_a_place_is_still_one_line(tmp_path: Path) -> None:
    """A control character is refused by YAML's reader, whose error has no line and no problem: its reason."""
    path = write_bytes(tmp_path, b"device_id: shop\x07\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: invalid YAML: special characters are not allowed"


def test_unreadable_config_files_are_one_line_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert str(caught.value) == f"{missing}: no such config file"
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert str(caught.value) == f"{tmp_path}: cannot read: [Errno 21] Is a directory: '{tmp_path}'"
    latin1 = write_bytes(tmp_path, "device_id: café\n".encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_config(latin1)
    assert str(caught.value).startswith(f"{latin1}: cannot read: 'utf-8' codec can't decode byte 0xe9")


def test_a_document_without_a_file_is_named_config() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"mqtt": {"port": 0}})
    assert str(caught.value) == "config: mqtt.port: Input should be greater than or equal to 1"
    assert parse_config(None) == parse_config({})  # an empty file is the defaults


def test_an_error_of_a_whole_section_is_named_top_level() -> None:
    """A section's own check (not a field's) has an empty location when the section is validated alone."""
    with pytest.raises(ValidationError) as caught:
        CountingConfig.model_validate({"line": [[0, 0], [0, 0]]})
    assert describe_validation_error(caught.value) == "(top level): Value error, line: the two points must differ"


def test_check_config_exit_status_and_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "device_id: shop\n")
    assert main(["check-config", str(good)]) == 0
    bad = tmp_path / "bad.yml"
    bad.write_text("store: {retention_days: 0}\n")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"people-counter: {bad}: store.retention_days: Input should be greater than or equal to 1"]


def test_missing_config_file_through_the_real_command(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    done = subprocess.run(
        [sys.executable, "-m", "people_counter.cli", "check-config", str(missing)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"people-counter: {missing}: no such config file"
    assert "Traceback" not in done.stderr


def test_the_readme_config_reference_is_the_defaults() -> None:
    """The README's config block parses as a config, and every value it shows is the default."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Config reference", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    shown = yaml.safe_load(block)
    shown.pop("device_id")  # "<host name>": the machine's, not a constant
    defaults = Config().model_dump(mode="json", exclude={"device_id"})
    assert parse_config(shown).model_dump(mode="json", exclude={"device_id"}) == defaults
    assert shown == defaults


def check_files(config: Path, *user: str) -> subprocess.CompletedProcess[str]:
    """`people-counter check-config --files`, as `user` (setpriv's options) when given."""
    return subprocess.run(
        [*user, sys.executable, "-m", "people_counter.cli", "check-config", "--files", str(config)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )


def test_check_config_files_names_the_key_and_the_path_of_a_missing_file(tmp_path: Path) -> None:
    video, model, password = tmp_path / "in.avi", tmp_path / "model.xml", tmp_path / "mqtt-password"
    for path in (video, model, password):
        path.write_text("x")
    good = f"input: {{source: {video}}}\nmodel: {{path: {model}}}\nmqtt: {{password_file: {password}}}\n"
    config = write(tmp_path, good)
    assert check_files(config).returncode == 0
    for key, path in (("input.source", video), ("model.path", model), ("mqtt.password_file", password)):
        path.unlink()
        done = check_files(config)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.splitlines() == [
            f"people-counter: {config}: {key}: " + done.stderr.split(f"{key}: ", 1)[1].strip()
        ]
        assert f"{path} does not exist" in done.stderr
        path.write_text("x")
    # Where the files are not (the controller), the config alone is checked.
    video.unlink()
    assert main(["check-config", str(config)]) == 0
    # A camera or a stream names no file.
    assert (
        check_files(write(tmp_path, f"input: {{source: 'rtsp://cam/1'}}\nmodel: {{path: {model}}}\n")).returncode == 0
    )


def test_check_config_files_finds_the_catalog_model_and_leaves_unit_credentials_to_systemd(
    tmp_path: Path,
) -> None:
    """model.name's IR under state_dir is a file the config names too; a /run/credentials path
    exists only inside its running unit, and systemd itself refuses a missing credential."""
    state = tmp_path / "state"
    config = write(
        tmp_path,
        f"state_dir: {state}\ninput: {{source: 'rtsp://cam/1'}}\n"
        "mqtt: {password_file: /run/credentials/people-counter.service/mqtt-password}\n",
    )
    done = check_files(config)
    assert done.returncode == 2
    assert f"model.name: {state}/models/nanodet/model.xml does not exist" in done.stderr
    (state / "models" / "nanodet").mkdir(parents=True)
    (state / "models" / "nanodet" / "model.xml").write_text("x")
    assert check_files(config).returncode == 0, check_files(config).stderr


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_unreadable_files_are_one_line_errors_for_the_user_who_cannot_read_them() -> None:
    """As a user who may not read them: as root (CI is), through setpriv as `nobody`, since root
    reads a mode-0 file."""
    user = NOBODY if os.geteuid() == 0 else []
    # pytest's tmp_path sits under a private directory; `nobody` needs a path it can reach.
    with tempfile.TemporaryDirectory(prefix="config-ro-", dir="/var/tmp") as top:
        Path(top).chmod(0o755)
        video, password, model = Path(top) / "in.avi", Path(top) / "mqtt-password", Path(top) / "model.xml"
        config = Path(top) / "config.yml"
        config.write_text(
            f"input: {{source: {video}}}\nmodel: {{path: {model}}}\nmqtt: {{password_file: {password}}}\n"
        )
        config.chmod(0o644)
        for path in (video, password, model):
            path.write_text("x")
            path.chmod(0o644)
        assert check_files(config, *user).returncode == 0
        for key, path, why in (
            ("input.source", video, f"input file {video} is not readable"),
            ("mqtt.password_file", password, f"{password} is not readable"),
        ):
            path.chmod(0)
            done = check_files(config, *user)
            assert done.returncode == 2, done.stderr
            assert done.stderr.strip() == f"people-counter: {config}: {key}: {why}"
            path.chmod(0o644)
        config.chmod(0)
        done = check_files(config, *user)
        assert done.returncode == 2
        assert done.stderr.strip() == f"people-counter: {config}: cannot read: [Errno 13] Permission denied: '{config}'"
