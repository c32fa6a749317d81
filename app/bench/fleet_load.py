"""A bounded fleet on loopback: N simulated devices, the central broker and the fleet page, measured.

    python -m bench.fleet_load --devices 1000 --duration-s 60

Each simulated device is its own MQTT connection to the central broker, as a device's bridge is:
it has a Last Will of `offline` on `available`, says `online`, and publishes its retained
`state` `--state-hz` times a second and `enter`/`exit` events as people come and go (about one
visitor every `--visit-every-s`), all made by contract.py's builders (testsupport/fleet_stack.py's
SimDevice). The state's `ts` is the moment of publishing.

The devices are shared among `--processes` generator processes (2 by default), each driving its
paho clients from one asyncio loop (no thread per client).

Measured over the window of `--duration-s`, after every device has connected:
- the broker's and the fleet page's CPU (a share of one core) and their peak RSS (psutil, by PID);
- the delay from a device's publish to the fleet page's live update: a separate process reads the
  page's SSE stream and takes, for each (device, state ts) the first time it arrives, its age;
- what the generator itself achieved (messages a second, its processes' CPU, how late it sent its
  states): on 2 cores it competes with what it measures, so its own share is printed too.

Everything runs on 127.0.0.1 and is stopped by its own PID at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import platform
import random
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil

from people_counter.contract import AVAILABLE_ONLINE, payload
from testsupport.fleet_stack import FleetProcess, SimDevice, device_client
from testsupport.live_stack import short_tmp
from testsupport.mosquitto_broker import MosquittoBroker

MAX_DEVICES = 10_000
MAX_DURATION_S = 600.0
MAX_STATE_HZ = 5.0


@dataclass
class Figures:
    devices: int
    duration_s: float
    messages_per_s: float
    page_received_per_s: float
    """The messages a second the page's MQTT client took from the broker (its /healthz count)."""
    broker_cpu: float
    """A share of one core."""
    broker_rss_mb: float
    fleet_cpu: float
    fleet_rss_mb: float
    delay_p50_s: float | None
    delay_p99_s: float | None
    delay_samples: int
    generator_cpu: float
    generator_lag_p99_s: float | None
    """How late the generator sent its states: a large figure means it, not the page, was short of CPU."""
    connect_s: float


class _Socketed:
    """paho driven by the asyncio loop (paho's documented external-loop callbacks): no thread per client."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client: mqtt.Client) -> None:
        self.loop = loop
        self.client = client
        self.misc: asyncio.Task[None] | None = None
        client.on_socket_open = self._open
        client.on_socket_close = self._close
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._done_write

    def _open(self, client: mqtt.Client, _u: object, sock: Any) -> None:
        self.loop.add_reader(sock, client.loop_read)
        self.misc = self.loop.create_task(self._misc())

    def _close(self, _c: mqtt.Client, _u: object, sock: Any) -> None:
        self.loop.remove_reader(sock)
        if self.misc is not None:
            self.misc.cancel()

    def _want_write(self, client: mqtt.Client, _u: object, sock: Any) -> None:
        self.loop.add_writer(sock, client.loop_write)

    def _done_write(self, _c: mqtt.Client, _u: object, sock: Any) -> None:
        self.loop.remove_writer(sock)

    async def _misc(self) -> None:
        while self.client.loop_misc() == mqtt.MQTT_ERR_SUCCESS:
            await asyncio.sleep(1)


class SimulatedFleet:
    def __init__(self, host: str, port: int, ids: range, state_hz: float, visit_every_s: float) -> None:
        self.host, self.port = host, port
        self.devices = [SimDevice(f"sim-{i:05d}") for i in ids]
        self.state_hz = state_hz
        self.visit_every_s = visit_every_s
        self.clients: list[mqtt.Client] = []
        self.published = 0
        self.connected = 0
        self.lags: list[float] = []
        self._rng = random.Random(ids.start)

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        for device in self.devices:
            client = device_client(device, client_id=device.device_id)
            _Socketed(loop, client)
            client.on_connect = self._on_connect
            client.user_data_set(device)
            client.connect(self.host, self.port, keepalive=60)
            self.clients.append(client)
            if len(self.clients) % 50 == 0:
                await asyncio.sleep(0.01)  # let the broker answer: no burst of thousands at once
        while self.connected < len(self.devices):
            await asyncio.sleep(0.05)

    def _on_connect(self, client: mqtt.Client, device: SimDevice, _f: object, reason: Any, _p: object) -> None:
        if not reason.is_failure:
            client.publish(device.topics.available, AVAILABLE_ONLINE, qos=1, retain=True)
            self.connected += 1

    def _publish(self, client: mqtt.Client, topic: str, message: dict[str, Any], retain: bool = False) -> None:
        client.publish(topic, payload(message), qos=1, retain=retain)
        self.published += 1

    async def _device(self, client: mqtt.Client, device: SimDevice, until: float) -> None:
        period = 1.0 / self.state_hz
        await asyncio.sleep(self._rng.random() * period)  # devices are not in step
        p_visit = period / self.visit_every_s
        due = time.time()
        while due < until:
            now = time.time()
            self.lags.append(now - due)  # how late the generator is: its own backlog, not the page's
            if self._rng.random() < p_visit:
                self._publish(client, device.topics.event, device.enter(now))
            if device.in_view and self._rng.random() < p_visit:
                left = device.leave(now)
                if left is not None:
                    self._publish(client, device.topics.event, left)
            self._publish(client, device.topics.state, device.state(time.time()), retain=True)
            due += period
            await asyncio.sleep(max(0.0, due - time.time()))

    async def run(self, until: float) -> None:
        await asyncio.gather(*(self._device(c, d, until) for c, d in zip(self.clients, self.devices, strict=True)))

    def close(self) -> None:
        for client in self.clients:
            client.disconnect()


def _generate(conn: Any, host: str, port: int, ids: range, state_hz: float, visit_every_s: float) -> None:
    """A generator process: connect its devices, say so, then publish over the window it is sent."""

    async def work() -> None:
        fleet = SimulatedFleet(host, port, ids, state_hz, visit_every_s)
        await fleet.connect()
        conn.send("connected")
        since, until = await asyncio.to_thread(conn.recv)
        runner = asyncio.create_task(fleet.run(until))
        await asyncio.sleep(max(0.0, since - time.time()))
        published0 = fleet.published
        fleet.lags.clear()
        await runner
        conn.send((fleet.published - published0, fleet.lags))
        fleet.close()

    asyncio.run(work())


def _read_delays(port: int, cookie: str, since: float, until: float, out: Any) -> None:
    """In its own process: the page's SSE stream; for each (device, state ts) its first arrival's age, to `out`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/events", headers={"Cookie": cookie})
    stream = conn.getresponse()
    seen: set[tuple[str, float]] = set()
    delays: list[float] = []
    while time.time() < until + 5:
        line = stream.readline()
        if not line:
            break
        if not line.startswith(b"data:"):
            continue
        arrived = time.time()
        for row in json.loads(line[5:]).get("devices", []):
            ts = row.get("ts")
            if isinstance(ts, float | int) and since <= ts <= until and (row["device"], ts) not in seen:
                seen.add((row["device"], ts))
                delays.append(arrived - ts)
    conn.close()
    out.send(delays)


def _received(fleet: FleetProcess) -> int:
    _, _, body = fleet.request("GET", "/healthz")
    return int(json.loads(body)["received_messages"])


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(devices: int, duration_s: float, state_hz: float, visit_every_s: float, processes: int) -> Figures:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * devices + 1024)), hard))
    with MosquittoBroker() as broker, short_tmp("fleet-bench-") as run:
        defaults = {"push_interval_s": 0.25, "flush_interval_s": 5.0, "max_devices": MAX_DEVICES}
        with FleetProcess(run, broker, extra=defaults) as fleet:
            started = time.monotonic()
            share = -(-devices // processes)
            generators = []
            for start in range(0, devices, share):
                mine, theirs = multiprocessing.Pipe()
                ids = range(start, min(devices, start + share))
                args = (theirs, broker.host, broker.port, ids, state_hz, visit_every_s)
                process = multiprocessing.Process(target=_generate, args=args, daemon=True)
                process.start()
                generators.append((process, mine))
            for _, pipe in generators:
                if not pipe.poll(300) or pipe.recv() != "connected":
                    raise RuntimeError("a generator process did not connect its devices in 300 s")
            connect_s = time.monotonic() - started
            warm_up_s = 5.0
            since = time.time() + warm_up_s
            until = since + duration_s
            for _, pipe in generators:
                pipe.send((since, until))
            receive, send = multiprocessing.Pipe(duplex=False)
            reader = multiprocessing.Process(
                target=_read_delays, args=(fleet.port, fleet.cookie(), since, until, send), daemon=True
            )
            reader.start()
            time.sleep(max(0.0, since - time.time()))
            procs = {"broker": psutil.Process(broker.pid), "fleet": psutil.Process(fleet.pid)}
            workers = [psutil.Process(process.pid) for process, _ in generators]
            cpu0 = {name: _cpu(p) for name, p in procs.items()}
            workers0, t0 = sum(_cpu(p) for p in workers), time.monotonic()
            received0 = _received(fleet)
            rss = dict.fromkeys(procs, 0)
            while time.time() < until:
                for name, p in procs.items():
                    rss[name] = max(rss[name], p.memory_info().rss)
                time.sleep(1.0)
            page_received = _received(fleet) - received0
            page_window = time.monotonic() - t0
            results = [pipe.recv() for _, pipe in generators]
            window = time.monotonic() - t0
            cpu = {name: (_cpu(p) - cpu0[name]) / window for name, p in procs.items()}
            generator_cpu = (sum(_cpu(p) for p in workers) - workers0) / window
            rate = sum(published for published, _ in results) / window
            lags = [lag for _, worker_lags in results for lag in worker_lags]
            delays = receive.recv()
            for process, _ in generators:
                process.join(10)
            reader.join(10)
    return Figures(
        devices=devices,
        duration_s=round(window, 1),
        messages_per_s=round(rate),
        page_received_per_s=round(page_received / page_window),
        broker_cpu=round(cpu["broker"], 3),
        broker_rss_mb=round(rss["broker"] / 2**20, 1),
        fleet_cpu=round(cpu["fleet"], 3),
        fleet_rss_mb=round(rss["fleet"] / 2**20, 1),
        delay_p50_s=None if not delays else round(statistics.median(delays), 3),
        delay_p99_s=None if (p99 := _percentile(delays, 0.99)) is None else round(p99, 3),
        delay_samples=len(delays),
        generator_cpu=round(generator_cpu, 3),
        generator_lag_p99_s=None if (lag := _percentile(lags, 0.99)) is None else round(lag, 3),
        connect_s=round(connect_s, 1),
    )


def _bounded(kind: type, low: float, high: float) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}")
        return value

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet_load", description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=_bounded(int, 1, MAX_DEVICES), default=100)
    parser.add_argument("--duration-s", type=_bounded(float, 5, MAX_DURATION_S), default=60.0)
    parser.add_argument("--state-hz", type=_bounded(float, 0.1, MAX_STATE_HZ), default=1.0)
    parser.add_argument("--visit-every-s", type=_bounded(float, 1, 3600), default=20.0)
    parser.add_argument("--processes", type=_bounded(int, 1, 8), default=2, help="generator processes")
    parser.add_argument("--json", type=Path, help="append the figures to this file as one JSON line")
    args = parser.parse_args(argv)
    figures = measure(args.devices, args.duration_s, args.state_hz, args.visit_every_s, args.processes)
    row = asdict(figures)
    row["machine"] = f"{platform.machine()}, {psutil.cpu_count()} cores, {platform.python_version()}"
    row["date"] = time.strftime("%Y-%m-%d", time.gmtime())
    print(json.dumps(row))
    if args.json is not None:
        with args.json.open("a", encoding="utf-8") as out:
            out.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
