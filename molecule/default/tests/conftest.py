"""The fleet under test: its hosts, their credentials, and the helpers every test uses.

The hosts come from Molecule's inventory (MOLECULE_INVENTORY_FILE): the edge devices are the
group `devices`, the central broker the group `central_broker`. The passwords the roles
generated are read from the inventory's credentials/ directory on the controller, the way an
operator reads them. Every failing test gets the journal of the units it touched on every
host it used (`journalctl -u UNIT -n 100`), as sections of its report.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.cookiejar import Cookie, CookieJar
from pathlib import Path
from typing import Any, TypeVar

import pytest
import testinfra
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret
from testinfra.backend.base import CommandResult
from testinfra.host import Host

PROJECT_DIR = Path(__file__).resolve().parents[3]
# The app's test support (testsupport/: Chromium's launch, its certificate switch), shared with
# the app's own browser tests.
sys.path.insert(0, str(PROJECT_DIR / "app"))
INVENTORY_FILE = Path(
    os.environ.get("MOLECULE_INVENTORY_FILE", "/nonexistent/ansible_inventory.yml")
)
INVENTORY_DIR = INVENTORY_FILE.parent
# Beside the inventory directory, not in it (group_vars/molecule_fleet.yml says why).
CREDENTIALS_DIR = INVENTORY_DIR.parent / "credentials"
LAUNCHER = PROJECT_DIR / "molecule" / "launcher" / "nspawn_hosts.py"
VAULT_PASSWORD_FILE = PROJECT_DIR / "molecule" / "default" / "vault-password"

MOSQUITTO = "mosquitto.service"
DASHBOARD = "people-counter-dashboard.service"
STREAM = "people-counter-stream.service"
COUNTER = "people-counter.service"
TARGET = "people-counter.target"
APP_UNITS = (DASHBOARD, STREAM, COUNTER)
DEVICE_UNITS = (MOSQUITTO, *APP_UNITS)
FLEET = "people-counter-fleet.service"
CENTRAL_UNITS = (MOSQUITTO, FLEET)

COUNTER_USER = "people-counter"
WEB_USER = "people-counter-web"
FLEET_READER = "fleet-reader"
DASHBOARD_PORT = 8443
DASHBOARD_HTTP_PORT = 8080
DASHBOARD_CERT = "/etc/people-counter/tls/dashboard.crt"
# Node.local_https: the device's python3, as there is no curl on a device.
LOCAL_HTTPS = f"""
import json, ssl, sys, urllib.error, urllib.parse, urllib.request
base, path, form, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
context = ssl.create_default_context(cafile="{DASHBOARD_CERT}")
data = urllib.parse.urlencode(json.loads(form)).encode() if form else None
request = urllib.request.Request(base + path, data=data, headers={{"Origin": base}} if data else {{}})
try:
    with urllib.request.urlopen(request, context=context, timeout=timeout) as answer:
        print(answer.status); print(answer.read().decode(errors="replace"))
except urllib.error.HTTPError as error:
    print(error.code); print(error.read().decode(errors="replace"))
except OSError as error:
    print(0); print(error)
"""

T = TypeVar("T")


def _load_inventory() -> dict[str, Any]:
    if not INVENTORY_FILE.is_file():
        return {}
    data = yaml.safe_load(INVENTORY_FILE.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


INVENTORY = _load_inventory()


def group_hosts(group: str) -> list[str]:
    hosts = (INVENTORY.get(group) or {}).get("hosts") or {}
    return sorted(hosts)


DEVICE_NAMES = group_hosts("devices")
CENTRAL_NAMES = group_hosts("central_broker")


def role_default(role: str, name: str) -> Any:
    """A role's default, read from roles/<role>/defaults/main.yml: the pin the tests check."""
    defaults = yaml.safe_load(
        (PROJECT_DIR / "roles" / role / "defaults" / "main.yml").read_text(
            encoding="utf-8"
        )
    )
    return defaults[name]


def unvault(data: bytes) -> str:
    """The plaintext of a file the roles wrote with the scenario's vault password."""
    secret = VaultSecret(VAULT_PASSWORD_FILE.read_bytes().strip())
    return VaultLib([("default", secret)]).decrypt(data).decode("utf-8").strip()


def wait_for(
    what: str, probe: Callable[[], T | None], timeout_s: float, every_s: float = 1.0
) -> T:
    """Call probe until it returns something other than None (or False); fail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while True:
        last = probe()
        if last is not None and last is not False:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


@dataclass
class Node:
    """One test host: a device or the central broker."""

    name: str
    address: str
    ssh_key: Path
    units: tuple[str, ...]
    _host: Host | None = field(default=None, repr=False)

    @property
    def host(self) -> Host:
        if self._host is None:
            self._host = testinfra.get_host(
                f"ssh://root@{self.address}",
                ssh_identity_file=str(self.ssh_key),
                ssh_extra_args=(
                    "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "
                    "-o ConnectTimeout=5 -o ServerAliveInterval=5"
                ),
            )
        return self._host

    def reconnect(self) -> None:
        """Forget the ssh connection (after the host rebooted)."""
        self._host = None

    def run(self, command: str) -> CommandResult:
        return self.host.run(command)

    def check(self, command: str) -> str:
        result = self.host.run(command)
        assert result.rc == 0, (
            f"{self.name}: `{command}` exited {result.rc}: {result.stderr.strip()}"
        )
        return result.stdout

    def secret(self, name: str) -> str:
        """A password the roles generated and keep on the controller, Vault-encrypted."""
        return unvault((CREDENTIALS_DIR / self.name / name).read_bytes())

    def mqtt_password(self, user: str) -> str:
        return self.secret(f"mqtt-{user}")

    def journal(self, units: tuple[str, ...] | None = None, lines: int = 100) -> str:
        parts = []
        for unit in units or self.units:
            result = self.host.run(
                f"journalctl -u {shlex.quote(unit)} -n {lines} --no-pager -o short-precise"
            )
            parts.append(
                f"$ journalctl -u {unit} -n {lines}\n{result.stdout}{result.stderr}"
            )
        return "\n".join(parts)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """`systemctl show UNIT -p ...` as a dict."""
        args = " ".join(f"-p {p}" for p in properties)
        out = self.check(f"systemctl show {shlex.quote(unit)} {args}")
        values = {}
        for line in out.splitlines():
            key, _, value = line.partition("=")
            values[key] = value
        return values

    def main_pid(self, unit: str) -> int:
        return int(self.show(unit, "MainPID")["MainPID"])

    # MQTT, through the node's own broker on loopback (the only listener by default).

    def mqtt_sub(
        self,
        topic: str,
        user: str | None,
        password: str | None,
        *,
        count: int = 1,
        wait_s: float = 5,
        verbose: bool = False,
        client_id: str | None = None,
        persistent: bool = False,
        qos: int = 0,
        retained_only: bool = False,
    ) -> CommandResult:
        args = [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            "1883",
            "-t",
            topic,
            "-C",
            str(count),
        ]
        args += ["-W", str(int(wait_s)), "-q", str(qos)]
        if user is not None:
            args += ["-u", user]
        if password is not None:
            args += ["-P", password]
        if verbose:
            args.append("-v")
        if client_id:
            args += ["-i", client_id]
        if persistent:
            args.append("-c")
        if retained_only:
            args.append("--retained-only")
        return self.host.run(shlex.join(args))

    def mqtt_pub(
        self,
        topic: str,
        message: str,
        user: str | None,
        password: str | None,
        *,
        qos: int = 1,
    ) -> CommandResult:
        args = [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            "1883",
            "-t",
            topic,
            "-m",
            message,
            "-q",
            str(qos),
        ]
        args += ["-V", "mqttv5"]
        if user is not None:
            args += ["-u", user]
        if password is not None:
            args += ["-P", password]
        return self.host.run(shlex.join(args))

    def url(self, path: str) -> str:
        return f"https://{self.address}:{DASHBOARD_PORT}{path}"

    def local_https(
        self, path: str, form: dict[str, str] | None = None, timeout_s: float = 5
    ) -> tuple[int, str]:
        """A request to the dashboard from the device itself (loopback: another address than
        the controller's), trusting the device's certificate; (0, why) when none came back."""
        result = self.host.run(
            shlex.join(
                [
                    "python3",
                    "-c",
                    LOCAL_HTTPS,
                    f"https://127.0.0.1:{DASHBOARD_PORT}",
                    path,
                    json.dumps(form) if form is not None else "",
                    str(timeout_s),
                ]
            )
        )
        status, _, body = result.stdout.partition("\n")
        return int(status or 0), body

    def tls_context(self) -> ssl.SSLContext:
        """Trusts the device's self-signed dashboard certificate, and nothing else."""
        return ssl.create_default_context(cadata=self.check(f"cat {DASHBOARD_CERT}"))

    def browser(self) -> Browser:
        return Browser(self.url(""), self.tls_context())


def device_state(
    node: Node, device: str | None = None, via: Node | None = None
) -> dict[str, Any] | None:
    """The retained state of a device, read from `via`'s broker (default: the device's own)."""
    device = device or node.name
    broker = via or node
    if broker is node:
        user, password = WEB_USER, node.mqtt_password(WEB_USER)
    else:
        user, password = FLEET_READER, broker.mqtt_password(FLEET_READER)
    result = broker.mqtt_sub(
        f"people_counter/{device}/state", user, password, wait_s=4, retained_only=True
    )
    if result.rc != 0 or not result.stdout.strip():
        return None
    state = json.loads(result.stdout.strip().splitlines()[0])
    assert isinstance(state, dict)
    return state


def state_after(
    node: Node, ts: float, timeout_s: float, via: Node | None = None
) -> dict[str, Any]:
    """Wait for a state of `node` newer than ts (Unix seconds)."""

    def probe() -> dict[str, Any] | None:
        state = device_state(node, via=via)
        return state if state is not None and float(state["ts"]) > ts else None

    where = f" at {via.name}" if via else ""
    return wait_for(
        f"a state of {node.name}{where} newer than {ts:.1f}", probe, timeout_s
    )


def publish_refused(node: Node, topic: str, user: str, password: str) -> bool:
    """Whether the node's broker refuses this user's PUBLISH on topic: MQTT v5 at QoS 1, the
    broker says so in the PUBACK; mosquitto_pub warns, yet exits 0."""
    result = node.mqtt_pub(topic, "{}", user, password)
    return "not authori" in (result.stderr + result.stdout).lower()


def node_now(node: Node) -> float:
    return float(node.check("date +%s.%N"))


class Browser:
    """A minimal client of the dashboard from the controller: cookies, no redirects hidden."""

    def __init__(self, base: str, context: ssl.SSLContext) -> None:
        self.base = base
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar),
            urllib.request.HTTPSHandler(context=context),
        )

    def get(
        self, path: str, timeout_s: float = 10
    ) -> tuple[int, dict[str, str], bytes]:
        try:
            with self.opener.open(self.base + path, timeout=timeout_s) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def login(self, password: str) -> tuple[int, bytes]:
        return self.post(
            "/login", urllib.parse.urlencode({"password": password}).encode()
        )

    def post(self, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """A form POST from the dashboard's own page (its Origin, as a browser sends)."""
        request = urllib.request.Request(
            self.base + path, data=body, headers={"Origin": self.base}
        )
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def set_cookie(self, name: str, value: str, domain: str) -> None:
        self.jar.set_cookie(
            Cookie(
                0,
                name,
                value,
                None,
                False,
                domain,
                False,
                False,
                "/",
                True,
                True,
                None,
                False,
                None,
                None,
                {},
            )
        )

    def first_bytes(
        self, path: str, size: int, timeout_s: float = 15
    ) -> tuple[str, bytes]:
        """Content type and the first `size` bytes of a stream (the MJPEG never ends)."""
        with self.opener.open(self.base + path, timeout=timeout_s) as response:
            data = b""
            deadline = time.monotonic() + timeout_s
            while len(data) < size and time.monotonic() < deadline:
                chunk = response.read1(65536)
                if not chunk:
                    break
                data += chunk
            return response.headers.get("Content-Type", ""), data


def exposure(node: Node, unit: str) -> float:
    out = node.run(f"systemd-analyze security --no-pager {shlex.quote(unit)}")
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out.stdout)
    assert match, (
        f"{node.name}: no exposure level for {unit}: {out.stdout[-500:]} {out.stderr}"
    )
    return float(match.group(1))


def run_playbook(
    playbook: str,
    *extra_vars: str,
    limit: str | None = None,
    verbose: bool = False,
    result_format: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook playbooks/PLAYBOOK on the scenario's inventory, as an operator runs it
    (`result_format` json: each task's result on one line, so that no message is folded)."""
    env = dict(os.environ)
    ephemeral = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
    if ephemeral:
        env["ANSIBLE_CONFIG"] = str(Path(ephemeral) / "ansible.cfg")
    env.update(
        ANSIBLE_ROLES_PATH=str(PROJECT_DIR / "roles"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        NO_COLOR="1",
    )
    if result_format:
        env["ANSIBLE_CALLBACK_RESULT_FORMAT"] = result_format
    argv = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        str(INVENTORY_DIR),
    ]
    for value in extra_vars:
        argv += ["-e", value]
    if limit:
        argv += ["-l", limit]
    if verbose:
        argv.append("-v")
    argv.append(str(PROJECT_DIR / "playbooks" / playbook))
    return subprocess.run(
        argv, capture_output=True, text=True, env=env, timeout=900, check=False
    )


def launcher(*args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the launcher on this fleet's state dir (the directory of the hosts' ssh key)."""
    if not DEVICE_NAMES:
        pytest.fail("no inventory")
    state_dir = _make_node(DEVICE_NAMES[0]).ssh_key.parent
    argv = [sys.executable, str(LAUNCHER), *args, "--state-dir", str(state_dir)]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    assert result.returncode == 0, (
        f"{shlex.join(argv)} exited {result.returncode}:\n{result.stderr[-2000:]}"
    )
    return result


def _make_node(name: str) -> Node:
    hostvars = (INVENTORY.get("all") or {}).get("hosts", {}).get(name) or {}
    units = DEVICE_UNITS if name in DEVICE_NAMES else CENTRAL_UNITS
    return Node(
        name,
        str(hostvars["ansible_host"]),
        Path(hostvars["ansible_private_key_file"]),
        units,
    )


_NODES: dict[str, Node] = {}


def node(name: str) -> Node:
    if name not in _NODES:
        _NODES[name] = _make_node(name)
    return _NODES[name]


@pytest.fixture(params=DEVICE_NAMES)
def device(request: pytest.FixtureRequest) -> Node:
    """Each edge device in turn."""
    return node(str(request.param))


@pytest.fixture
def devices() -> list[Node]:
    return [node(name) for name in DEVICE_NAMES]


@pytest.fixture
def central() -> Node:
    if not CENTRAL_NAMES:
        pytest.skip("no central broker in this scenario")
    return node(CENTRAL_NAMES[0])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "units(*names): the units whose journal a failure prints"
    )


def _nodes_of(item: pytest.Item) -> Iterator[Node]:
    seen = set()
    for value in getattr(item, "funcargs", {}).values():
        for candidate in value if isinstance(value, list) else [value]:
            if isinstance(candidate, Node) and candidate.name not in seen:
                seen.add(candidate.name)
                yield candidate


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when != "call" or not report.failed:
        return
    marker = item.get_closest_marker("units")
    for failed_node in _nodes_of(item):
        units = (
            tuple(u for u in marker.args if u in failed_node.units)
            if marker
            else failed_node.units
        )
        try:
            text = failed_node.journal(units or failed_node.units)
        except Exception as error:  # noqa: BLE001 - the host may be down; say so instead
            text = f"(no journal: {error})"
        report.sections.append((f"journal of {failed_node.name}", text))
