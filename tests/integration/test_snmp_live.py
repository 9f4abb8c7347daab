"""Traps from net-snmp's own snmptrap and snmpinform, into the real daemon, out as incidents."""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from daemon import RUNNING, Daemon, wait_until

from snmpkit import LINK_DOWN_OID, LINK_UP_OID, TEST_MIB, link_trap, net_snmp

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ENGINE = "0x8000000001020304"  # the trap senders' engine ID, as configured for their users
OTHER_ENGINE = "0x80000000090a0b0c"
IF_INDEX, IF_DESCR, IF_OPER = "1.3.6.1.2.1.2.2.1.1", "1.3.6.1.2.1.2.2.1.2", "1.3.6.1.2.1.2.2.1.8"
TRAP_ADDRESS = "1.3.6.1.6.3.18.1.3.0"

EVERY_TRAP = """
rules:
  - id: every-trap
    match: {source: snmp}
    continue: true
    actions:
      - log:
          level: warning
          message: >-
            TRAP v={{ fields.version }} pdu={{ fields.pdu }} trap={{ fields.trap }}
            host={{ event.host }} who={{ fields.community or fields.user }}
            vars={{ fields.vars | tojson }}
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def trapd(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One daemon for the module: communities, v3 users, the bundled SNMP rules."""
    if shutil.which("snmptrap") is None:
        pytest.skip(
            "snmptrap is not installed (Debian package 'snmp'; scripts/bootstrap installs it)"
        )
    root = tmp_path_factory.mktemp("trapd")
    port = free_udp_port()
    daemon = Daemon(
        root,
        entries=[],
        rules=EVERY_TRAP,
        sources=f"""\
  snmp:
    listen: ["127.0.0.1:{port}"]
    engine_id: "0x80000000050a0b0c0d0e0f"
    mibs: [mibs]
    communities:
      - {{community: public}}
      - {{community: ops, networks: [10.0.0.0/8]}}
    users:
      - {{name: alice, auth: SHA-256, auth_key: alicepass1, priv: AES, priv_key: aliceprivk,
          engine_id: "{ENGINE}"}}
      - {{name: bob, auth: MD5, auth_key: bobspass12, engine_id: "{ENGINE}"}}
      - {{name: carol, auth: SHA-512, auth_key: carolpass1, priv: AES-256, priv_key: carolpriv1}}
      - {{name: dave, auth: SHA, auth_key: davepass12, priv: DES, priv_key: davepriv12,
          engine_id: "{ENGINE}"}}
""",
    )
    (root / "mibs").mkdir()
    (root / "mibs" / "TOCSIN-TEST-MIB.txt").write_text(TEST_MIB)
    RUNNING.remove(daemon)  # it serves the whole module: not stopped after each test
    shutil.copy(REPO / "rules" / "snmp.yaml", root / "rules" / "zz-snmp.yaml")
    daemon.start()
    try:
        yield daemon, f"127.0.0.1:{port}"
    finally:
        if daemon.stop() != 0:
            pytest.fail(f"the daemon did not stop cleanly: {daemon.output()[-2000:]}")


def traps_logged(daemon: Daemon) -> list[str]:
    return [
        json.loads(line)["event"]
        for line in daemon.output().splitlines()
        if line.startswith("{") and '"TRAP v=' in line
    ]


def wait_for_trap(daemon: Daemon, pattern: str) -> str:
    """Wait until the every-trap rule logged a trap whose text matches `pattern`."""
    regex = re.compile(pattern)
    found: str = wait_until(
        lambda: next((t for t in traps_logged(daemon) if regex.search(t)), None),
        timeout=10,
        what=f"a trap matching {pattern!r}",
    )
    return found


def dropped(daemon: Daemon, reason: str) -> float:
    match = re.search(
        r'^tocsin_snmp_packets_dropped_total\{reason="' + re.escape(reason) + r'"\} (\S+)$',
        daemon.metrics(),
        re.MULTILINE,
    )
    return float(match[1]) if match else 0.0


def link(if_index: int, *, up: bool, descr: str) -> list[str]:
    """snmptrap arguments for a linkDown/linkUp notification (numeric: no MIBs on the sender)."""
    return [
        LINK_UP_OID if up else LINK_DOWN_OID,
        f"{IF_INDEX}.{if_index}", "i", str(if_index),
        f"{IF_DESCR}.{if_index}", "s", descr,
        f"{IF_OPER}.{if_index}", "i", "1" if up else "2",
    ]  # fmt: skip


def test_v2c_linkdown_then_linkup_opens_and_resolves_an_incident(trapd: Any) -> None:
    """Test the bundled pair: linkDown opens an incident keyed by host+ifIndex, linkUp resolves it."""
    daemon, target = trapd
    sent = net_snmp(
        "snmptrap", "-v", "2c", "-c", "public", target, "", *link(3, up=False, descr="ge-0/0/3")
    )
    assert sent.returncode == 0, sent.stderr
    text = wait_for_trap(daemon, r"trap=IF-MIB::linkDown .*ifIndex\": 3")
    assert "v=2c pdu=trap" in text
    assert "host=127.0.0.1 who=public" in text
    assert '"ifDescr": "ge-0/0/3"' in text
    assert '"ifOperStatus": "down"' in text  # the enumeration's label, from IF-MIB
    incident = wait_until(
        lambda: next((i for i in daemon.incidents() if i["rule"] == "snmp-link-down"), None),
        what="the link-down incident",
    )
    assert incident["title"] == "Interface ge-0/0/3 down on 127.0.0.1"
    assert incident["key"] == "127.0.0.1:3"
    assert incident["state"] == "new"
    sent = net_snmp(
        "snmptrap", "-v", "2c", "-c", "public", target, "", *link(3, up=True, descr="ge-0/0/3")
    )
    assert sent.returncode == 0, sent.stderr
    wait_until(
        lambda: (
            next(i for i in daemon.incidents() if i["id"] == incident["id"])["state"] == "resolved"
        ),
        what="linkUp to resolve the incident",
    )


def test_v1_trap_is_converted_and_its_agent_address_is_the_host(trapd: Any) -> None:
    """Test RFC 3584: a v1 generic linkDown from agent 10.1.2.3 becomes IF-MIB::linkDown there."""
    daemon, target = trapd
    sent = net_snmp(
        "snmptrap", "-v", "1", "-c", "public", target,
        "1.3.6.1.4.1.8072.4", "10.1.2.3", "2", "0", "",
        f"{IF_INDEX}.7", "i", "7",
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    text = wait_for_trap(daemon, r"v=1 .*host=10\.1\.2\.3")
    assert "trap=IF-MIB::linkDown" in text
    assert (
        '"snmpTrapEnterprise": "NET-SNMP-MIB' in text
        or '"snmpTrapEnterprise": "1.3.6.1.4.1.8072.4"' in text
    )


def test_enterprise_specific_v1_trap_keeps_its_numeric_oid(trapd: Any) -> None:
    """Test an unknown enterprise trap: enterprise.0.specific, numeric, varbind OIDs numeric."""
    daemon, target = trapd
    sent = net_snmp(
        "snmptrap", "-v", "1", "-c", "public", target,
        "1.3.6.1.4.1.99990.1", "10.9.9.9", "6", "42", "",
        "1.3.6.1.4.1.99990.1.2.0", "s", "hello",
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    text = wait_for_trap(daemon, r"trap=1\.3\.6\.1\.4\.1\.99990\.1\.0\.42 ")
    assert '"1.3.6.1.4.1.99990.1.2.0": "hello"' in text


def test_an_operator_mib_names_its_notifications_and_labels(trapd: Any) -> None:
    """Test sources.snmp.mibs: a MIB folder compiled at start names a vendor trap's values."""
    daemon, target = trapd
    sent = net_snmp(
        "snmptrap", "-v", "2c", "-c", "public", target, "", "1.3.6.1.4.1.99999.0.1",
        "1.3.6.1.4.1.99999.1.1.0", "i", "3", "1.3.6.1.4.1.99999.1.2.0", "i", "1",
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    text = wait_for_trap(daemon, r"trap=TOCSIN-TEST-MIB::tocsinAlarm ")
    assert '"tocsinSeverity": "critical"' in text
    assert '"tocsinAcknowledged": "true"' in text


def test_a_proxied_trap_names_the_original_agent(trapd: Any) -> None:
    """Test that snmpTrapAddress in a v2c trap is the event's host, not the proxy."""
    daemon, target = trapd
    sent = net_snmp(
        "snmptrap", "-v", "2c", "-c", "public", target, "", "1.3.6.1.6.3.1.1.5.1",
        TRAP_ADDRESS, "a", "192.0.2.44",
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    text = wait_for_trap(daemon, r"trap=SNMPv2-MIB::coldStart .*host=192\.0\.2\.44")
    assert "v=2c" in text
    wait_until(
        lambda: any(
            i["title"].startswith("SNMP agent on 192.0.2.44 restarted") for i in daemon.incidents()
        ),
        what="the restart incident",
    )


def test_v2c_inform_is_acknowledged(trapd: Any) -> None:
    """Test that snmpinform succeeds (it waits for our Response) and its event arrives."""
    daemon, target = trapd
    sent = net_snmp(
        "snmpinform", "-v", "2c", "-c", "public", "-t", "3", "-r", "1", target, "",
        "1.3.6.1.6.3.1.1.5.2",
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert "pdu=inform trap=SNMPv2-MIB::warmStart" in wait_for_trap(daemon, r"warmStart")


@pytest.mark.parametrize(
    ("args", "who"),
    [
        (["-l", "authPriv", "-u", "alice", "-a", "SHA-256", "-A", "alicepass1", "-x", "AES", "-X", "aliceprivk"], "alice"),
        (["-l", "authNoPriv", "-u", "bob", "-a", "MD5", "-A", "bobspass12"], "bob"),
        (["-l", "authPriv", "-u", "dave", "-a", "SHA", "-A", "davepass12", "-x", "DES", "-X", "davepriv12"], "dave"),
    ],
)  # fmt: skip
def test_v3_traps_are_authenticated_and_decrypted(trapd: Any, args: list[str], who: str) -> None:
    """Test v3 traps under the sender's engine ID, per user and protocol."""
    daemon, target = trapd
    sent = net_snmp(
        "snmptrap",
        "-v",
        "3",
        "-e",
        ENGINE,
        *args,
        target,
        "",
        *link(9, up=False, descr=f"v3-{who}"),
    )
    assert sent.returncode == 0, sent.stderr
    text = wait_for_trap(daemon, rf"v=3 .*who={who} .*v3-{who}")
    assert "trap=IF-MIB::linkDown" in text


def test_v3_inform_uses_the_daemons_engine_and_is_acknowledged(trapd: Any) -> None:
    """Test snmpinform -v 3 authPriv (SHA-512, AES-256): engine discovery, then our Response."""
    daemon, target = trapd
    sent = net_snmp(
        "snmpinform", "-v", "3", "-l", "authPriv", "-u", "carol", "-a", "SHA-512", "-A", "carolpass1",
        "-x", "AES-256", "-X", "carolpriv1", "-t", "3", "-r", "1", target, "", "1.3.6.1.6.3.1.1.5.1",
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert "pdu=inform" in wait_for_trap(daemon, r"v=3 .*who=carol")


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["-v", "2c", "-c", "nope"], "bad community"),
        (["-v", "1", "-c", "nope"], "bad community"),
        (["-v", "2c", "-c", "ops"], "community not allowed from this network"),
        (["-v", "3", "-e", ENGINE, "-l", "authNoPriv", "-u", "mallory", "-a", "SHA", "-A", "whatever12"], "unknown user"),
        (["-v", "3", "-e", OTHER_ENGINE, "-l", "authNoPriv", "-u", "bob", "-a", "MD5", "-A", "bobspass12"], "unknown engine id"),
        (["-v", "3", "-e", ENGINE, "-l", "authNoPriv", "-u", "bob", "-a", "MD5", "-A", "wrongpass1"], "authentication failure"),
        (["-v", "3", "-e", ENGINE, "-l", "authPriv", "-u", "alice", "-a", "SHA-256", "-A", "alicepass1", "-x", "AES", "-X", "wrongpriv1"], "decryption failure"),
        (["-v", "3", "-e", ENGINE, "-l", "authNoPriv", "-u", "alice", "-a", "SHA-256", "-A", "alicepass1"], "security level too low"),
    ],
)  # fmt: skip
def test_refused_traps_are_counted_by_reason_and_not_processed(
    trapd: Any, args: list[str], reason: str
) -> None:
    """Test every access-control refusal: counted under its reason, no event."""
    daemon, target = trapd
    before = dropped(daemon, reason)
    marker = f"refused-{abs(hash((reason, *args))) % 10**8}"
    varbind = [f"{IF_DESCR}.1", "s", marker]
    if args[:2] == ["-v", "1"]:
        trap = ["1.3.6.1.4.1.8072.4", "10.1.2.3", "2", "0", ""]
    else:
        trap = ["", LINK_DOWN_OID]
    sent = net_snmp("snmptrap", *args, target, *trap, *varbind)
    assert sent.returncode == 0, sent.stderr
    wait_until(lambda: dropped(daemon, reason) > before, what=f"a drop counted as {reason!r}")
    # A trap sent after it arrives, so the refused one had its chance to be processed.
    net_snmp(
        "snmptrap",
        "-v",
        "2c",
        "-c",
        "public",
        target,
        "",
        LINK_DOWN_OID,
        f"{IF_DESCR}.1",
        "s",
        marker + "-ok",
    )
    wait_for_trap(daemon, re.escape(marker + "-ok"))
    assert not [t for t in traps_logged(daemon) if marker + '"' in t]


def metric(daemon: Daemon, name: str, labels: str) -> float:
    match = re.search(
        rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", daemon.metrics(), re.MULTILINE
    )
    return float(match[1]) if match else 0.0


def test_a_storm_beyond_the_receive_buffer_is_counted_not_lost_silently(tmp_path: Path) -> None:
    """Test a blast into a 4 KiB buffer: every trap is accepted or counted as a kernel drop."""
    port = free_udp_port()
    daemon = Daemon(
        tmp_path,
        entries=[],
        rules="rules:\n  - {id: swallow, match: {source: snmp}, actions: [drop]}\n",
        sources=f"""\
  snmp:
    listen: ["127.0.0.1:{port}"]
    receive_buffer: 4KiB
    communities: [{{community: public}}]
""",
    )
    daemon.start()
    packet = link_trap(b"public", 1)
    sent = 20_000
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(sent):
            sender.sendto(packet, ("127.0.0.1", port))

    def accounted() -> tuple[float, float] | None:
        accepted = metric(daemon, "tocsin_snmp_packets_accepted_total", 'version="2c"')
        lost = metric(daemon, "tocsin_snmp_packets_dropped_total", 'reason="receive buffer full"')
        return (accepted, lost) if accepted + lost == sent else None

    accepted, lost = wait_until(accounted, what="every trap accepted or counted as dropped")
    assert lost > 0  # 4 KiB cannot hold a blast from a tight loop
    assert metric(daemon, "tocsin_events_received_total", 'source="snmp"') == accepted
    assert '"snmp_receive_buffer_overflow"' in daemon.output()
    assert daemon.stop() == 0
