"""The sources.snmp config section: good configs parse, bad ones name file:line and why."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from tocsin.config import load_config
from tocsin.snmp.access import Community
from tocsin.snmp.settings import SnmpUser
from tocsin.yamlsrc import SourceError


def config_with(tmp_path: Path, snmp: str) -> Path:
    path = tmp_path / "tocsin.yaml"
    path.write_text("state_dir: state\nsources:\n  snmp:\n" + snmp)
    return path


def test_a_full_section_parses(tmp_path: Path) -> None:
    """Test every option: addresses, sizes, engine IDs, communities, users and MIB folders."""
    config = load_config(
        config_with(
            tmp_path,
            """\
    listen: ["127.0.0.1:1162", "[::1]:1162", 2162]
    receive_buffer: 16MiB
    engine_id: "0x8000000001020304"
    mibs: [mibs]
    communities:
      - {community: public}
      - {community: ops, networks: [10.0.0.0/8, "2001:db8::/32"]}
    users:
      - name: alice
        auth: sha-256
        auth_key: authpass123
        priv: AES-256
        priv_key: privpass123
        engine_id: ["80:00:00:00:01:02:03:04", "0x800000000a0b0c0d"]
      - {name: bob, auth: MD5, auth_key: bobspass1, min_level: authNoPriv}
""",
        )
    )
    snmp = config.snmp
    assert snmp is not None
    assert snmp.listen == (("127.0.0.1", 1162), ("::1", 1162), ("0.0.0.0", 2162))
    assert snmp.receive_buffer == 16 << 20
    assert snmp.engine_id == bytes.fromhex("8000000001020304")
    assert snmp.mib_dirs == (tmp_path / "mibs",)
    assert snmp.communities == (
        Community(b"public"),
        Community(
            b"ops", (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32"))
        ),
    )
    assert snmp.users == (
        SnmpUser(
            name="alice",
            auth="SHA-256",
            auth_key="authpass123",
            priv="AES-256",
            priv_key="privpass123",
            engine_ids=(bytes.fromhex("8000000001020304"), bytes.fromhex("800000000a0b0c0d")),
            min_level="authPriv",  # a user with privacy keys must use them unless told otherwise
        ),
        SnmpUser(name="bob", auth="MD5", auth_key="bobspass1", min_level="authNoPriv"),
    )


def test_defaults(tmp_path: Path) -> None:
    """Test an empty section: port 162 on all IPv4 addresses, 8 MiB buffer, nobody allowed."""
    snmp = load_config(config_with(tmp_path, "    {}\n")).snmp
    assert snmp is not None
    assert snmp.listen == (("0.0.0.0", 162),)
    assert snmp.receive_buffer == 8 << 20
    assert (snmp.communities, snmp.users, snmp.engine_id) == ((), (), None)
    assert load_config(tmp_path / "tocsin.yaml").snmp is not None
    (tmp_path / "none.yaml").write_text("state_dir: s\n")
    assert load_config(tmp_path / "none.yaml").snmp is None


@pytest.mark.parametrize(
    ("snmp", "line", "message"),
    [
        ("    listen: ['localhost:162']\n", 4, "listen host 'localhost' is not an IP address"),
        ("    listen: ['1.2.3.4:99999']\n", 4, "port 99999 is not 0 to 65535"),
        ("    listen: []\n", 4, "sources.snmp.listen needs at least one address"),
        ("    receive_buffer: 1KiB\n", 4, "receive_buffer must be between 4KiB and 1GiB"),
        (
            "    receive_buffer: lots\n",
            4,
            "receive_buffer must be bytes, or a size like 512KiB or 8MiB",
        ),
        ("    engine_id: 0x80zz\n", 4, "engine_id '0x80zz' is not hex"),
        ("    engine_id: 0x8000000001\n", 4, "quote the engine_id ('0x8000...')"),
        ("    engine_id: 80000009030000000001\n", 4, "quote the engine_id ('0x8000...')"),
        ("    engine_id: '0x8000'\n", 4, "engine_id is 2 bytes; it must be 5 to 32"),
        ("    communitys: []\n", 4, "unknown sources.snmp option 'communitys'"),
        ("    communities: [{community: ''}]\n", 4, "community must not be empty"),
        (
            "    communities:\n      - community: x\n        networks: [10.0.0.0/33]\n",
            6,
            "bad network '10.0.0.0/33'",
        ),
        (
            "    users:\n      - {name: a, auth: SHA, auth_key: short}\n",
            5,
            "user 'a': auth_key must be at least 8 characters",
        ),
        (
            "    users:\n      - {name: a, auth: SHA1, auth_key: longenough}\n",
            5,
            "unknown auth protocol 'SHA1'; use one of MD5, SHA, SHA-224",
        ),
        (
            "    users:\n      - {name: a, priv: AES, priv_key: longenough}\n",
            5,
            "user 'a': privacy needs authentication ('auth')",
        ),
        ("    users:\n      - {name: a, auth: SHA}\n", 5, "user 'a': SHA needs 'auth_key'"),
        (
            "    users:\n      - {name: a, priv_key: longenough}\n",
            5,
            "user 'a': priv_key given without its protocol",
        ),
        (
            "    users:\n      - {name: a, engine_id: '0x8000'}\n",
            5,
            "engine_id is 2 bytes; it must be 5 to 32",
        ),
        (
            "    users:\n      - {name: a, auth: SHA, auth_key: longenough, min_level: authPriv}\n",
            5,
            "user 'a': min_level authPriv needs keys the user does not have",
        ),
        (
            "    users:\n      - {name: a}\n      - {name: a}\n",
            6,
            "SNMPv3 user 'a' is listed twice (first as user 1)",
        ),
    ],
)
def test_bad_sections_name_the_line_and_problem(
    tmp_path: Path, snmp: str, line: int, message: str
) -> None:
    """Test that each mistake is refused with its line and a clear message."""
    with pytest.raises(SourceError) as caught:
        load_config(config_with(tmp_path, snmp))
    assert message in str(caught.value)
    assert f"tocsin.yaml:{line}:" in str(caught.value)
