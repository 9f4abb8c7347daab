"""A real mosquitto per test (own process, port and persistence dir), a paho publisher, a test PKI."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tocsin.mqtt.settings import BrokerConfig
from tocsin.sources.mqtt import BrokerLink, Delivery

__all__ = [
    "WAIT",
    "Broker",
    "Pki",
    "Publisher",
    "Tls",
    "collect",
    "free_port",
    "link_config",
    "make_pki",
    "needs_mosquitto",
    "payloads",
    "refusing_subscriptions",
    "running_broker",
    "running_link",
]

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
DYNSEC = next(Path("/usr/lib").glob("*/mosquitto_dynamic_security.so"), None)

WAIT = 10.0  # seconds one awaited thing may take before a test fails

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
    users: dict[str, str] = field(default_factory=dict)  # name -> password; none: anonymous
    acl: str = ""  # acl_file text (mosquitto's `user`/`topic` lines)
    extra: str = ""  # more mosquitto.conf lines
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def config(self) -> Path:
        """Write mosquitto.conf; unlimited in-flight and queued messages, unlike the defaults."""
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        lines = [
            "per_listener_settings false",
            f"allow_anonymous {'false' if self.users else 'true'}",
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
        if self.users:
            lines.append(f"password_file {self._password_file()}")
        if self.acl:
            acl = self.root / "acl"
            acl.write_text(self.acl)
            lines.append(f"acl_file {acl}")
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

    def _password_file(self) -> Path:
        """Write the users' hashed passwords with mosquitto_passwd."""
        path = self.root / "passwords"
        path.unlink(missing_ok=True)
        for name, password in self.users.items():
            create = [] if path.exists() else ["-c"]
            subprocess.run(
                [MOSQUITTO_PASSWD, *create, "-b", str(path), name, password],
                check=True,
                capture_output=True,
            )
        return path

    def forget_sessions(self) -> None:
        """Delete the persistence file of a stopped broker: it starts with no sessions."""
        assert self.proc is None, "stop it first"
        (self.root / "data" / "mosquitto.db").unlink()

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
        """Queue messages once connected; paho resends unacknowledged ones after a reconnect."""
        deadline = time.monotonic() + 30
        while not self.client.is_connected():
            if time.monotonic() > deadline:
                raise AssertionError("the publisher did not connect")
            time.sleep(0.01)
        return [self.client.publish(topic, payload, qos, retain) for topic, payload in messages]

    @staticmethod
    def wait(infos: list[paho.MQTTMessageInfo], timeout: float = 30.0) -> None:
        """Wait until the broker acknowledged every one (messages queued while the
        connection was down count too: paho sends them after it reconnects)."""
        deadline = time.monotonic() + timeout
        for info in infos:
            while not info._published:  # is_published() raises for NO_CONN
                if time.monotonic() > deadline:
                    raise AssertionError(f"message {info.mid} was not acknowledged in time")
                time.sleep(0.005)


def refusing_subscriptions(root: Path, *patterns: str) -> str:
    """Return mosquitto.conf lines that refuse anonymous subscriptions matching `patterns`.

    mosquitto's acl_file grants every subscription and filters at delivery; its dynamic
    security plugin can refuse one in the SUBACK.
    """
    if DYNSEC is None:
        pytest.skip("mosquitto's dynamic security plugin is not installed")
    root.mkdir(parents=True, exist_ok=True)
    acls = [{"acltype": "subscribePattern", "topic": p, "allow": False} for p in patterns]
    config = {
        "defaultACLAccess": {
            "publishClientSend": True,
            "publishClientReceive": True,
            "subscribe": True,
            "unsubscribe": True,
        },
        "clients": [],
        "groups": [{"groupname": "anonymous", "roles": [{"rolename": "limited"}]}],
        "roles": [{"rolename": "limited", "acls": acls}],
        "anonymousGroup": "anonymous",
    }
    path = root / "dynamic-security.json"
    path.write_text(json.dumps(config))
    return f"plugin {DYNSEC}\nplugin_opt_config_file {path}\n"


def link_config(port: int, **changes: object) -> BrokerConfig:
    """Return a broker config for 127.0.0.1:`port` with test-sized timings; `changes` replace."""
    config = BrokerConfig(
        name="test",
        host="127.0.0.1",
        port=port,
        version="5",
        client_id=f"tocsin-test-{os.getpid()}",
        keepalive=30,
        session_expiry=600,
        receive_maximum=65535,
        username=None,
        password=None,
        tls=None,
        reconnect_min=0.02,
        reconnect_max=0.2,
        outbox_limit=1000,
    )
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running_link(link: BrokerLink, *, connect: bool = True) -> AsyncIterator[BrokerLink]:
    """Run the link for the block (connected first, unless `connect` is false)."""
    task = asyncio.create_task(link.run())
    try:
        if connect:
            async with asyncio.timeout(WAIT):
                await link.connected()
        yield link
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(WAIT):  # a link that ignores its cancel fails the test
                await task


async def collect(link: BrokerLink, count: int, *, ack: bool = True) -> list[Delivery]:
    """Take `count` deliveries, acknowledging QoS 1 ones as they are taken unless `ack` is off."""
    taken: list[Delivery] = []
    async with asyncio.timeout(WAIT):
        while len(taken) < count:
            await link.wait()
            batch = link.take(count - len(taken))
            if ack:
                link.ack([(d[0], d[1]) for d in batch if d[2]])
            taken += batch
    return taken


def payloads(deliveries: list[Delivery]) -> list[bytes]:
    """Return the payloads of deliveries."""
    return [d[6] for d in deliveries]


@dataclass(frozen=True)
class Pki:
    """PEM files of a test CA, a server cert it signed (127.0.0.1, localhost), a client cert,
    and an unrelated CA that signed nothing here."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path

    def tls(self, *, require_client_cert: bool = False) -> Tls:
        """Return the broker side of this PKI."""
        return Tls(self.ca, self.server_cert, self.server_key, require_client_cert)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    """Sign a certificate for `key` by `issuer` (name and key), or self-signed if None."""
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return path


def make_pki(root: Path) -> Pki:
    """Write a fresh test CA, server and client certificates and a second CA under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    ca_key, other_key, server_key, client_key = (
        ec.generate_private_key(ec.SECP256R1()) for _ in range(4)
    )
    authority = [(x509.BasicConstraints(ca=True, path_length=None), True)]
    ca = _certificate("tocsin test CA", ca_key, None, authority)
    other = _certificate("some other CA", other_key, None, authority)
    signer = (ca.subject, ca_key)
    leaf: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=False, path_length=None), True)
    ]
    names = x509.SubjectAlternativeName(
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    )
    server = _certificate("127.0.0.1", server_key, signer, [*leaf, (names, False)])
    client = _certificate("tocsin test client", client_key, signer, leaf)
    return Pki(
        ca=_write(root / "ca.pem", ca, None),
        server_cert=_write(root / "server.pem", server, server_key),
        server_key=root / "server.key",
        client_cert=_write(root / "client.pem", client, client_key),
        client_key=root / "client.key",
        other_ca=_write(root / "other-ca.pem", other, None),
    )
