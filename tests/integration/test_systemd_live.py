"""The real daemon started the way systemd starts tocsin.service: it says when it is ready,
what it is doing, that it is alive and that it stops, over a real $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemon import RULES, Daemon, ssh_line, wait_until

from snmpkit import link_trap

pytestmark = pytest.mark.integration

TRAP_RULE = """
  - id: trap-link-down
    match: {source: snmp, fields.trap: IF-MIB::linkDown}
    key: "{{ event.host }}:{{ fields.vars.ifIndex }}"
    actions:
      - incident: {title: "trap: interface {{ fields.vars.ifIndex }} down", impact: high, urgency: high}
"""

# What systemd does between fork and exec for tocsin.service: WATCHDOG_PID is the service's own
# pid, and with MemoryDenyWriteExecute=yes systemd >= 254 asks the kernel to refuse memory
# that is made writable and executable (prctl PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN).
AS_SYSTEMD = """
import ctypes, os, sys
if sys.argv[1] == "refuse-wx" and ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0):
    sys.exit(f"PR_SET_MDWE failed: {os.strerror(ctypes.get_errno())}")
os.environ["WATCHDOG_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable, "-m", "tocsin", *sys.argv[2:]])
"""


def kernel_refuses_wx() -> bool:
    """True when this kernel has PR_SET_MDWE (Linux 6.3 and later)."""
    probe = "import ctypes, sys; sys.exit(ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) != 0)"
    return subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0


class NotifySocket:
    """The socket systemd listens on for a service's notifications, and what arrived."""

    def __init__(self, folder: Path) -> None:
        self.path = str(folder / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.messages: list[str] = []

    def wait_for(
        self, found: Callable[[str], bool], what: str, proc: subprocess.Popen[bytes]
    ) -> str:
        """Read notifications until one satisfies `found`; fail if the daemon exits first."""
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            try:
                message = self.sock.recv(4096).decode()
            except TimeoutError:
                if proc.poll() is not None:
                    break
                continue
            self.messages.append(message)
            if found(message):
                return message
        raise AssertionError(f"no {what} among {self.messages}")

    def drain(self) -> None:
        """Take whatever else is waiting."""
        self.sock.setblocking(False)
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    folder = Path(tempfile.mkdtemp(prefix="sd"))  # short: a socket path has at most 107 bytes
    listener = NotifySocket(folder)
    yield listener
    listener.sock.close()
    shutil.rmtree(folder)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_under_systemd_it_is_ready_after_its_sources_reports_pings_and_stops(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """Test that READY=1 comes once the API, the trap port and the log file are up, STATUS=
    lines follow the incidents, WATCHDOG=1 arrives every half WATCHDOG_USEC, and SIGTERM
    brings STOPPING=1, with W+X memory refused as MemoryDenyWriteExecute=yes does."""
    trap_port = free_udp_port()
    daemon = Daemon(
        tmp_path,
        start_at="end",
        rules=RULES + TRAP_RULE,
        sources=f'  snmp:\n    listen: ["127.0.0.1:{trap_port}"]\n'
        "    communities: [{community: public}]\n",
    )
    log_file = tmp_path / "logs" / "syslog.log"
    log_file.write_text(ssh_line(1, "192.0.2.1"))  # before the start: skipped (start_at: end)
    daemon.runs += 1
    output = (tmp_path / f"daemon-{daemon.runs}.log").open("wb")
    daemon.proc = subprocess.Popen(
        [sys.executable, "-c", AS_SYSTEMD, "refuse-wx" if kernel_refuses_wx() else "-",
         "run", "--config", str(tmp_path / "tocsin.yaml")],
        stdout=output,
        stderr=subprocess.STDOUT,
        env={
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "NOTIFY_SOCKET": notify_socket.path,
            "WATCHDOG_USEC": "200000",  # a ping every 0.1 s
        },
    )  # fmt: skip
    output.close()

    ready = notify_socket.wait_for(lambda m: m.startswith("READY=1"), "READY=1", daemon.proc)
    # Everything READY=1 promises is there now, without waiting: the API ...
    assert daemon.get("/healthz")["status"] == "ok"
    # ... the trap port (a trap to a port not yet bound would be lost) ...
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(link_trap(b"public", 7), ("127.0.0.1", trap_port))
    # ... and the log file, opened at its end (a line written now is read).
    with log_file.open("a") as appending:
        appending.write(ssh_line(2, "192.0.2.2"))
    assert ready == "READY=1\nSTATUS=running: 2 sources, 4 rules, 0 queued, 0 open incidents"

    def both() -> list[str] | None:
        titles = sorted(i["title"] for i in daemon.incidents("open"))
        return titles if len(titles) >= 2 else None  # one may come a moment after the other

    opened = wait_until(both, what="the trap's and the line's incidents")
    assert opened == ["SSH failures from 192.0.2.2", "trap: interface 7 down"]

    status = notify_socket.wait_for(
        lambda m: m.startswith("STATUS=") and "2 open incidents" in m,
        "a STATUS= line with both incidents",
        daemon.proc,
    )
    assert status == "STATUS=running: 2 sources, 4 rules, 0 queued, 2 open incidents"
    pings_before = notify_socket.messages.count("WATCHDOG=1")
    time.sleep(0.5)  # the daemon idles: its loop still pings
    notify_socket.drain()
    assert notify_socket.messages.count("WATCHDOG=1") >= pings_before + 3

    assert daemon.stop(signal.SIGTERM) == 0
    notify_socket.drain()
    messages = notify_socket.messages
    stopping = [m for m in messages if m.startswith("STOPPING=1")]
    assert stopping == ["STOPPING=1\nSTATUS=stopping: finishing 0 queued events"]
    assert messages.index(ready) < messages.index(status) < messages.index(stopping[0])
    assert "WATCHDOG=1" not in messages[: messages.index(ready)]
    assert messages.count("WATCHDOG=1") >= 10  # 0.1 s apart over more than a second
    assert "sd_notify_failed" not in daemon.output()
