"""A real mosquitto per test (own process, port and persistence dir) and a paho publisher."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest

__all__ = ["Broker", "Publisher", "free_port", "needs_mosquitto"]

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"

needs_mosquitto = pytest.mark.skipif(
    not Path(MOSQUITTO).exists(), reason="mosquitto is not installed (scripts/bootstrap test)"
)


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Tls:
    """Files for a TLS listener: the CA that signed the server cert, and whether clients need one."""

    ca: Path
    cert: Path
    key: Path
    require_client_cert: bool = False


@dataclass
class Broker:
    """One mosquitto process; persistence on, so a stop and start keeps sessions and queues."""

    root: Path
    port: int = field(default_factory=free_port)
    tls: Tls | None = None
    tls_port: int = field(default_factory=free_port)
    extra: str = ""  # more mosquitto.conf lines
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def config(self) -> Path:
        """Write mosquitto.conf; unlimited in-flight and queued messages, unlike the defaults."""
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        lines = [
            "per_listener_settings false",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {data}/",
            "max_inflight_messages 0",
            "max_queued_messages 0",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            f"listener {self.port} 127.0.0.1",
        ]
        if os.geteuid() == 0:
            lines.insert(0, "user root")  # else it drops to `mosquitto`, who cannot write data/
        if self.tls is not None:
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.cert}",
                f"keyfile {self.tls.key}",
                f"require_certificate {'true' if self.tls.require_client_cert else 'false'}",
            ]
        path = self.root / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n" + self.extra)
        return path

    def start(self, timeout: float = 10.0) -> None:
        """Start mosquitto and wait until it accepts connections."""
        assert self.proc is None, "already running"
        self.root.mkdir(parents=True, exist_ok=True)
        log = (self.root / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config())], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log()[-2000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGTERM saves the persistence file first; SIGKILL does not)."""
        if self.proc is None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same port with the same persistence."""
        self.stop()
        self.start()

    def log(self) -> str:
        """Return what mosquitto wrote so far."""
        path = self.root / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def running_broker(root: Path, **options: object) -> Iterator[Broker]:
    """Run a broker for the block; always stopped afterwards."""
    broker = Broker(root, **options)  # type: ignore[arg-type]
    broker.start()
    try:
        yield broker
    finally:
        broker.stop(signal.SIGKILL)


class Publisher:
    """A paho client on its own network thread, for sending test traffic."""

    def __init__(self, port: int, *, client_id: str = "", version: int = paho.MQTTv311) -> None:
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=version,
            clean_session=not client_id if version != paho.MQTTv5 else None,
        )
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.05, 0.5)
        self.port = port

    def __enter__(self) -> Publisher:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def send(
        self, messages: Iterable[tuple[str, bytes | str]], *, qos: int = 1, retain: bool = False
    ) -> list[paho.MQTTMessageInfo]:
        """Queue messages for sending; returns their infos."""
        return [self.client.publish(topic, payload, qos, retain) for topic, payload in messages]

    @staticmethod
    def wait(infos: list[paho.MQTTMessageInfo], timeout: float = 30.0) -> None:
        """Wait until the broker acknowledged every one."""
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.01, deadline - time.monotonic()))
