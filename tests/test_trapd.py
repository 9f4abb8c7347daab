"""The trap receiver's state in state_dir: our engine ID and boot count, operator MIBs."""

from __future__ import annotations

from pathlib import Path

from snmpkit import TEST_MIB
from tocsin.snmp.settings import SnmpConfig
from tocsin.trapd import engine_identity, load_mibs


def test_the_engine_id_is_made_once_and_its_boots_grow_per_start(tmp_path: Path) -> None:
    """Test our engine identity: a made ID kept across starts, boots 1, 2, 3 for it."""
    made, boots = engine_identity(SnmpConfig(), tmp_path)
    assert made[:5] == b"\x80\x00\x00\x00\x05"
    assert len(made) == 17
    assert boots == 1
    assert [engine_identity(SnmpConfig(), tmp_path) for _ in range(2)] == [(made, 2), (made, 3)]
    assert not list(tmp_path.glob(".*.tmp"))  # written by rename, nothing left behind


def test_a_configured_engine_id_counts_its_own_boots(tmp_path: Path) -> None:
    """Test that a configured ID wins, starts its own count, and keeps it across starts."""
    engine_identity(SnmpConfig(), tmp_path)
    configured = bytes.fromhex("8000000001020304")
    config = SnmpConfig(engine_id=configured)
    assert engine_identity(config, tmp_path) == (configured, 1)
    assert engine_identity(config, tmp_path) == (configured, 2)


def test_an_unreadable_engine_file_makes_a_new_identity(tmp_path: Path) -> None:
    """Test a damaged file: a new engine ID (senders discover it again), boots from 1."""
    made, _ = engine_identity(SnmpConfig(), tmp_path)
    (tmp_path / "snmp-engine.json").write_text("{not json")
    fresh, boots = engine_identity(SnmpConfig(), tmp_path)
    assert fresh != made
    assert boots == 1


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
