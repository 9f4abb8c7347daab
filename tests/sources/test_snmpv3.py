"""The SNMPv3 receiver against net-snmp's snmptrap and snmpinform over real loopback UDP."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto.mpmod.rfc3412 import SNMPv3Message
from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters

from tocsin.engine.clock import ManualClock
from tocsin.snmp.settings import SnmpUser
from tocsin.sources.snmpv3 import (
    AUTH_PROTOCOLS,
    PRIV_PROTOCOLS,
    V3Notification,
    V3Receiver,
)

SNMPTRAP = shutil.which("snmptrap")
SNMPINFORM = shutil.which("snmpinform")
pytestmark = pytest.mark.integration

OURS = bytes.fromhex("80001f8880aabbccddeeff")  # the receiver's engine ID
SENDER = bytes.fromhex("8000000001020304")  # the trap sender's engine ID
STRANGER = bytes.fromhex("8000000001029999")
LINK_DOWN = "1.3.6.1.6.3.1.1.5.3"
IF_INDEX = "1.3.6.1.2.1.2.2.1.1.3"
AUTH_KEY = "authpass123"
PRIV_KEY = "privpass123"


def user(
    auth: str | None = "SHA",
    priv: str | None = "AES",
    *,
    name: str = "alice",
    engine_id: bytes | None = SENDER,
    min_level: str = "authNoPriv",
) -> SnmpUser:
    """Build a user with this file's passphrases."""
    return SnmpUser(
        name=name,
        auth=auth,
        auth_key=AUTH_KEY if auth else "",
        priv=priv,
        priv_key=PRIV_KEY if priv else "",
        engine_ids=() if engine_id is None else (engine_id,),
        min_level=min_level,
    )


def security(
    level: str, auth: str = "SHA", priv: str = "AES", *, auth_key: str = AUTH_KEY, **more: str
) -> list[str]:
    """Return net-snmp's command-line security options for a level, as alice by default."""
    args = ["-u", more.get("name", "alice"), "-l", level]
    if level != "noAuthNoPriv":
        args += ["-a", auth, "-A", auth_key]
    if level == "authPriv":
        args += ["-x", priv, "-X", more.get("priv_key", PRIV_KEY)]
    return args


class Listener:
    """A loopback UDP socket that feeds what it receives to a V3Receiver and sends its replies."""

    def __init__(
        self, users: list[SnmpUser], scratch: Path, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.scratch = scratch
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.lose_replies = 0  # how many of the next replies to drop, as a lossy network would
        self.packets: list[bytes] = []
        self.notifications: list[V3Notification] = []
        self.receiver = V3Receiver(users=users, engine_id=OURS, send=self.send, clock=clock)

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send a reply from the receiving socket, unless this one is to be lost."""
        if self.lose_replies:
            self.lose_replies -= 1
            return
        self.sock.sendto(data, addr)

    def pump(self, until: Callable[[], bool], timeout: float = 5.0) -> None:
        """Receive and feed packets until `until()` holds; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, "timed out waiting for packets"
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.packets.append(data)
            self.notifications += self.receiver.feed(data, addr)

    def trap(self, *args: str, engine_id: bytes = SENDER) -> None:
        """Send one SNMPv3 trap with snmptrap and feed it."""
        count = len(self.packets)
        code, output = finish(self.run(SNMPTRAP, "-e", f"0x{engine_id.hex()}", *args))
        assert code == 0, output
        self.pump(lambda: len(self.packets) > count)

    def inform(self, *args: str) -> subprocess.Popen[str]:
        """Start snmpinform; it discovers our engine ID, then waits for the Response."""
        return self.run(SNMPINFORM, *args)

    def run(self, tool: str | None, *args: str) -> subprocess.Popen[str]:
        """Start a net-snmp tool sending linkDown to us, with no MIBs and none of its config."""
        scratch = str(self.scratch)
        target = f"127.0.0.1:{self.port}"
        payload = ("", LINK_DOWN, IF_INDEX, "i", "3")  # "": net-snmp fills in its sysUpTime
        assert tool is not None
        return subprocess.Popen(
            [tool, "-m", "", "-M", scratch, "-v", "3", *args, target, *payload],
            env={"SNMPCONFPATH": scratch, "SNMP_PERSISTENT_DIR": scratch},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listen(tmp_path: Path) -> Iterator[Callable[..., Listener]]:
    """Return a function that opens a Listener for some users; all are closed after the test."""
    if SNMPTRAP is None or SNMPINFORM is None:
        pytest.skip("net-snmp's snmptrap/snmpinform are not installed (Debian package snmp)")
    opened: list[Listener] = []

    def open_listener(*users: SnmpUser, **kwargs: Callable[[], float]) -> Listener:
        opened.append(Listener(list(users), tmp_path, **kwargs))
        return opened[-1]

    yield open_listener
    for listener in opened:
        listener.close()


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    """Wait for a net-snmp tool; return its exit code and output."""
    output, _ = process.communicate(timeout=15)
    return process.returncode, output


def assert_link_down(notification: V3Notification, *, level: str, pdu: str = "v2-trap") -> None:
    """Check that a notification is the linkDown this file sends, as alice."""
    varbinds = dict(notification.varbinds)
    assert notification.user == "alice"
    assert notification.level == level
    assert notification.pdu == pdu
    assert varbinds["1.3.6.1.6.3.1.1.4.1.0"] == ("ObjectIdentifier", LINK_DOWN)
    assert varbinds[IF_INDEX] == ("Integer", 3)
    assert varbinds["1.3.6.1.2.1.1.3.0"][0] == "TimeTicks"


@pytest.mark.parametrize("auth", sorted(AUTH_PROTOCOLS))
def test_trap_authenticated_with_each_auth_protocol(
    listen: Callable[..., Listener], auth: str
) -> None:
    """Test that an authNoPriv trap is accepted with every auth protocol net-snmp offers."""
    listener = listen(user(auth, None))
    listener.trap(*security("authNoPriv", auth))
    [notification] = listener.notifications
    assert_link_down(notification, level="authNoPriv")
    assert notification.engine_id == SENDER
    assert not listener.receiver.rejected


# AES-192/256 with MD5 or SHA-1 need their keys extended (Blumenthal, as net-snmp does);
# SHA-256 and longer digests give enough key bytes without it.
@pytest.mark.parametrize(
    ("priv", "auth"),
    [
        ("DES", "MD5"),
        ("DES", "SHA-512"),
        ("AES", "SHA"),
        ("AES", "SHA-224"),
        ("AES-192", "MD5"),
        ("AES-192", "SHA"),
        ("AES-256", "SHA"),
        ("AES-256", "MD5"),
        ("AES-256", "SHA-384"),
    ],
)
def test_trap_decrypted_with_each_priv_protocol(
    listen: Callable[..., Listener], priv: str, auth: str
) -> None:
    """Test that an authPriv trap is decrypted with every privacy protocol net-snmp offers."""
    assert priv in PRIV_PROTOCOLS
    listener = listen(user(auth, priv, min_level="authPriv"))
    listener.trap(*security("authPriv", auth, priv))
    [notification] = listener.notifications
    assert_link_down(notification, level="authPriv")
    assert not listener.receiver.rejected


@pytest.mark.parametrize(
    ("protocols", "min_level", "sent", "accepted"),
    [
        ((None, None), "noAuthNoPriv", "noAuthNoPriv", True),
        (("SHA", None), "noAuthNoPriv", "noAuthNoPriv", True),
        (("SHA", None), "authNoPriv", "noAuthNoPriv", False),
        (("SHA", "AES"), "authNoPriv", "authNoPriv", True),
        (("SHA", "AES"), "authPriv", "authNoPriv", False),
        (("SHA", "AES"), "authPriv", "authPriv", True),
    ],
)
def test_trap_security_level_against_min_level(
    listen: Callable[..., Listener],
    protocols: tuple[str | None, str | None],
    min_level: str,
    sent: str,
    accepted: bool,
) -> None:
    """Test that a trap below its user's min_level is rejected and one at or above it is not."""
    listener = listen(user(*protocols, min_level=min_level))
    listener.trap(*security(sent))
    if accepted:
        [notification] = listener.notifications
        assert_link_down(notification, level=sent)
    else:
        assert listener.notifications == []
        assert listener.receiver.rejected == {"security level too low": 1}


@pytest.mark.parametrize(
    ("options", "engine_id", "reason"),
    [
        (security("authPriv", name="mallory"), SENDER, "unknown user"),
        (security("authPriv"), STRANGER, "unknown engine id"),
        (security("authPriv", auth_key="wrongpass123"), SENDER, "authentication failure"),
        (security("authPriv", priv_key="wrongpass123"), SENDER, "decryption failure"),
        (security("authNoPriv", "MD5"), SENDER, "authentication failure"),  # alice uses SHA
    ],
    ids=["unknown-user", "unknown-engine", "wrong-auth-key", "wrong-priv-key", "wrong-auth"],
)
def test_trap_rejected_with_its_reason(
    listen: Callable[..., Listener], options: list[str], engine_id: bytes, reason: str
) -> None:
    """Test that a trap failing a USM check gives no notification and counts exactly why."""
    listener = listen(user(), user("SHA", "AES", name="bob", engine_id=STRANGER))
    listener.trap(*options, engine_id=engine_id)
    assert listener.notifications == []
    assert listener.receiver.rejected == {reason: 1}


def test_inform_is_answered_only_by_ack(listen: Callable[..., Listener]) -> None:
    """Test that snmpinform times out unless ack() is called, and succeeds when it is."""
    listener = listen(user(engine_id=None))
    waiting = listener.inform(*security("authPriv"), "-r", "0", "-t", "1")
    listener.pump(lambda: len(listener.notifications) == 1)
    code, output = finish(waiting)
    assert code != 0
    assert "Timeout" in output

    answered = listener.inform(*security("authPriv"), "-r", "0", "-t", "2")
    listener.pump(lambda: len(listener.notifications) == 2)
    notification = listener.notifications[1]
    assert_link_down(notification, level="authPriv", pdu="inform")
    assert notification.engine_id == OURS
    listener.receiver.ack(notification)
    assert finish(answered)[0] == 0
    assert not listener.receiver.rejected


def test_retransmitted_inform_is_delivered_once(listen: Callable[..., Listener]) -> None:
    """Test that a retransmission before ack() is held back and the ack answers the sender."""
    listener = listen(user(engine_id=None))
    sending = listener.inform(*security("authPriv"), "-r", "2", "-t", "1")
    listener.pump(lambda: listener.receiver.rejected["duplicate inform"] == 1)
    [notification] = listener.notifications
    listener.receiver.ack(notification)
    assert finish(sending)[0] == 0
    assert len(listener.notifications) == 1


def test_acked_inform_whose_response_was_lost_is_answered_again(
    listen: Callable[..., Listener],
) -> None:
    """Test that a retransmission of an acknowledged inform is answered at once, not delivered."""
    listener = listen(user(engine_id=None))
    sending = listener.inform(*security("authPriv"), "-r", "2", "-t", "1")
    listener.pump(lambda: len(listener.notifications) == 1)
    listener.lose_replies = 1
    listener.receiver.ack(listener.notifications[0])
    count = len(listener.packets)
    listener.pump(lambda: len(listener.packets) > count)  # the retransmission
    assert finish(sending)[0] == 0
    assert len(listener.notifications) == 1
    assert listener.receiver.rejected == {"duplicate inform": 1}  # answered again, counted


def test_inform_below_min_level_is_not_answered(listen: Callable[..., Listener]) -> None:
    """Test that an inform below its user's min_level is rejected and never acknowledged."""
    listener = listen(user(engine_id=None, min_level="authPriv"))
    sending = listener.inform(*security("authNoPriv"), "-r", "0", "-t", "1")
    listener.pump(lambda: listener.receiver.rejected["security level too low"] == 1)
    code, output = finish(sending)
    assert code != 0
    assert "Timeout" in output
    assert listener.notifications == []


def test_inform_for_trap_only_engine_registration(listen: Callable[..., Listener]) -> None:
    """Test that informs authenticate under our engine ID even for a user listed for traps."""
    listener = listen(user())
    sending = listener.inform(*security("authPriv"), "-r", "0", "-t", "2")
    listener.pump(lambda: len(listener.notifications) == 1)
    listener.receiver.ack(listener.notifications[0])
    assert finish(sending)[0] == 0


def test_inform_level_must_match_its_users_protocols(listen: Callable[..., Listener]) -> None:
    """Test that pysnmp refuses an authNoPriv inform from a user with privacy (RFC 3414 3.2.5)."""
    listener = listen(user(engine_id=None))
    sending = listener.inform(*security("authNoPriv"), "-r", "0", "-t", "1")
    listener.pump(lambda: listener.receiver.rejected["unsupported security level"] == 1)
    assert finish(sending)[0] != 0
    assert listener.notifications == []


def test_inform_outside_time_window_is_reported_then_accepted(
    listen: Callable[..., Listener],
) -> None:
    """Test that an inform with wrong engine boots/time is refused, and taken after resync."""
    listener = listen(user(engine_id=None))
    stale = ["-e", f"0x{OURS.hex()}", "-Z", "7,100"]  # skip discovery, claim a wrong clock
    sending = listener.inform(*stale, *security("authPriv"), "-r", "1", "-t", "2")
    listener.pump(lambda: len(listener.notifications) == 1)
    listener.receiver.ack(listener.notifications[0])
    assert finish(sending)[0] == 0
    assert listener.receiver.rejected == {"not in time window": 1}


def test_unacknowledged_inform_is_forgotten_after_a_minute(
    listen: Callable[..., Listener], clock: ManualClock
) -> None:
    """Test that an inform never acked is let go, so a later copy is delivered and answered."""
    listener = listen(user(engine_id=None), clock=clock.now)
    sending = listener.inform(*security("authPriv"), "-r", "0", "-t", "1")
    listener.pump(lambda: len(listener.notifications) == 1)
    assert finish(sending)[0] != 0
    inform, sender = listener.packets[-1], ("127.0.0.1", 9)
    assert len(listener.receiver.feed(inform, sender)) == 1
    assert listener.receiver.feed(inform, sender) == []  # held back while unacknowledged
    clock.advance_to(clock.now() + 61)
    [again] = listener.receiver.feed(inform, sender)
    listener.receiver.ack(again)
    assert listener.receiver.rejected == {"duplicate inform": 1}
    listener.receiver._engine._close()  # pysnmp's own check that it holds no per-message state


def test_trap_clock_stale_boots_and_replays_are_refused(
    listen: Callable[..., Listener], clock: ManualClock
) -> None:
    """Test RFC 3414's time window for traps: an older boot, a clock behind, a replay."""
    listener = listen(user(), clock=clock.now)
    level = security("authNoPriv")

    def trap(boots: int, engine_time: int) -> None:
        listener.trap("-Z", f"{boots},{engine_time}", *level)

    trap(5, 1000)
    trap(5, 900)  # behind, but within 150 s: taken (traps may cross on the way)
    trap(5, 840)  # more than 150 s behind the newest
    trap(4, 5000)  # from an earlier boot
    trap(6, 10)  # rebooted: a new clock
    assert len(listener.notifications) == 3
    assert listener.receiver.rejected == {"not in time window": 2}
    replay, sender = listener.packets[-1], ("127.0.0.1", 9)
    clock.advance_to(clock.now() + 100)
    assert len(listener.receiver.feed(replay, sender)) == 1  # 100 s on: still in the window
    clock.advance_to(clock.now() + 60)
    assert listener.receiver.feed(replay, sender) == []  # 160 s on: a replay
    assert listener.receiver.rejected == {"not in time window": 3}


def with_auth_parameters(message: bytes, parameters: bytes) -> bytes:
    """Re-encode an SNMPv3 message with other msgAuthenticationParameters."""
    decoded, rest = decoder.decode(message, asn1Spec=SNMPv3Message())
    assert rest == b""
    usm, rest = decoder.decode(bytes(decoded[2]), asn1Spec=UsmSecurityParameters())
    assert rest == b""
    usm[4] = parameters
    decoded[2] = encoder.encode(usm)
    return bytes(encoder.encode(decoded))


def auth_parameters(message: bytes) -> bytes:
    """Return the msgAuthenticationParameters of an SNMPv3 message."""
    decoded, _ = decoder.decode(message, asn1Spec=SNMPv3Message())
    usm, _ = decoder.decode(bytes(decoded[2]), asn1Spec=UsmSecurityParameters())
    return bytes(usm[4])


@pytest.fixture
def captured(listen: Callable[..., Listener]) -> tuple[Listener, bytes]:
    """Return a listener and the bytes of one valid authNoPriv trap that snmptrap sent it."""
    listener = listen(user("SHA-256", None))
    listener.trap(*security("authNoPriv", "SHA-256"))
    assert len(listener.notifications) == 1
    return listener, listener.packets[-1]


def flip_first(digest: bytes) -> bytes:
    return bytes([digest[0] ^ 0x01]) + digest[1:]


@pytest.mark.parametrize(
    "forge",
    [lambda d: b"", lambda d: d[:1], lambda d: d[:11], flip_first],
    ids=["empty", "one-byte", "truncated-11", "flipped"],
)
def test_forged_authentication_parameters_are_rejected(
    captured: tuple[Listener, bytes], forge: Callable[[bytes], bytes]
) -> None:
    """Test that an emptied, shortened or altered HMAC fails (pysnmp 7.1.21-7.1.27 took empty)."""
    listener, message = captured
    assert with_auth_parameters(message, auth_parameters(message)) == message
    forged = with_auth_parameters(message, forge(auth_parameters(message)))
    assert listener.receiver.feed(forged, ("127.0.0.1", 9)) == []
    assert listener.receiver.rejected == {"authentication failure": 1}
    assert len(listener.receiver.feed(message, ("127.0.0.1", 9))) == 1  # the original still is


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\x30\x03\x02\x01\x03",
        b"\x30\x80\x02\x01\x03\x00\x00",
        bytes.fromhex("3010020103300b02010102020400040102020103"),  # priv without auth
        bytes.fromhex("301302010330060201010201ff0400040400000000"),
        b"\x30\x84\xff\xff\xff\xff\x02\x01\x03",
        b"\x30" + b"\xff" * 40,
    ],
)
def test_garbage_is_malformed(listen: Callable[..., Listener], garbage: bytes) -> None:
    """Test that v3-looking garbage is counted as malformed and raises nothing."""
    receiver = listen(user()).receiver
    assert receiver.feed(garbage, ("127.0.0.1", 9)) == []
    assert receiver.rejected == {"malformed": 1}


def test_mutated_traps_never_raise_nor_pass(captured: tuple[Listener, bytes]) -> None:
    """Test that a thousand byte-level mutations of a valid trap are all rejected and counted."""
    listener, message = captured
    generator = random.Random(4)
    fed = 0
    for _ in range(1000):
        mutated = bytearray(message)
        for _ in range(generator.randint(1, 3)):
            mutated[generator.randrange(len(mutated))] = generator.randrange(256)
        if bytes(mutated) != message:
            assert listener.receiver.feed(bytes(mutated), ("127.0.0.1", 9)) == []
            fed += 1
    assert sum(listener.receiver.rejected.values()) == fed
    listener.receiver._engine._close()  # pysnmp's own check that it holds no per-message state


def test_a_name_listed_twice_is_refused() -> None:
    """Test that a receiver refuses two users of one name (the config refuses them first)."""
    with pytest.raises(ValueError, match=r"^SNMPv3 user 'alice' is listed twice$"):
        V3Receiver(users=[user(), user("SHA-256")], engine_id=OURS, send=lambda data, addr: None)
