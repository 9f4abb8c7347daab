"""The trap receiver's state in state_dir: our engine ID and boot count, operator MIBs."""

from __future__ import annotations

from pathlib import Path

from snmpkit import TEST_MIB
from tocsin.snmp.settings import SnmpConfig
from tocsin.trapd import load_mibs, local_engine_id, next_boots


def test_the_engine_id_is_made_once_and_kept(tmp_path: Path) -> None:
    """Test that a made engine ID survives restarts, and that a configured one wins."""
    made = local_engine_id(SnmpConfig(), tmp_path)
    assert made[:5] == b"\x80\x00\x00\x00\x05"
    assert len(made) == 17
    assert local_engine_id(SnmpConfig(), tmp_path) == made
    configured = bytes.fromhex("8000000001020304")
    assert local_engine_id(SnmpConfig(engine_id=configured), tmp_path) == configured
    (tmp_path / "snmp-engine-id").write_text("not hex\n")
    assert local_engine_id(SnmpConfig(), tmp_path) not in (made, b"")


def test_boots_grow_by_one_per_start(tmp_path: Path) -> None:
    """Test snmpEngineBoots: 1, 2, 3 across starts; an unreadable file starts again at 1."""
    assert [next_boots(tmp_path) for _ in range(3)] == [1, 2, 3]
    (tmp_path / "snmp-engine-boots").write_text("garbage")
    assert next_boots(tmp_path) == 1


def test_operator_mib_folders_are_compiled_into_state_dir(tmp_path: Path) -> None:
    """Test load_mibs: a folder of MIB sources is compiled and its names resolve."""
    folder = tmp_path / "mibs-src"
    folder.mkdir()
    (folder / "vendor.txt").write_text(TEST_MIB)
    (folder / "broken.txt").write_text("BROKEN-MIB DEFINITIONS ::= BEGIN oops END\n")
    index = load_mibs(SnmpConfig(mib_dirs=(folder,)), tmp_path)
    assert str(index.resolve("1.3.6.1.4.1.99999.0.1")) == "TOCSIN-TEST-MIB::tocsinAlarm"
    assert (tmp_path / "mibs" / "TOCSIN-TEST-MIB.json").exists()
    assert index.label("1.3.6.1.4.1.99999.1.1", 3) == "critical"
