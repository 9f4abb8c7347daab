"""The MIB index: shipped names, longest-prefix resolution, labels, operator folders, bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tocsin.snmp.ber import SNMP_TRAP_OID, SYS_UPTIME
from tocsin.snmp.mibs import SHIPPED, MibIndex, MibModule, MibNode, MibProblem, Resolved

IF_OPER_STATUS = "1.3.6.1.2.1.2.2.1.8"
LINK_DOWN = "1.3.6.1.6.3.1.1.5.3"


@pytest.fixture(scope="module")
def index() -> MibIndex:
    """Return the index of the shipped MIBs, which must load without a problem."""
    loaded, problems = MibIndex.load()
    assert problems == []
    return loaded


def write(folder: Path, name: str, text: str) -> Path:
    """Write one compiled file into `folder` and return its path."""
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("oid", "text"),
    [
        ("1.3.6.1.6.3.1.1.5.1", "SNMPv2-MIB::coldStart"),
        ("1.3.6.1.6.3.1.1.5.2", "SNMPv2-MIB::warmStart"),
        ("1.3.6.1.6.3.1.1.5.3", "IF-MIB::linkDown"),
        ("1.3.6.1.6.3.1.1.5.4", "IF-MIB::linkUp"),
        ("1.3.6.1.6.3.1.1.5.5", "SNMPv2-MIB::authenticationFailure"),
        (SNMP_TRAP_OID, "SNMPv2-MIB::snmpTrapOID.0"),
        (SYS_UPTIME, "SNMPv2-MIB::sysUpTime.0"),
        ("1.3.6.1.2.1.2.2.1.1.3", "IF-MIB::ifIndex.3"),
        ("1.3.6.1.2.1.31.1.1.1.18.12", "IF-MIB::ifAlias.12"),
        ("1.3.6.1.4.1.9.9.41.2.0.1", "SNMPv2-SMI::enterprises.9.9.41.2.0.1"),
    ],
)
def test_shipped_names(index: MibIndex, oid: str, text: str) -> None:
    """Test that the generic traps and the usual varbinds resolve to their shipped names."""
    found = index.resolve(oid)
    assert found is not None
    assert str(found) == text


def test_resolved_parts(index: MibIndex) -> None:
    """Test that a resolution names the node, its module and the instance arcs after it."""
    assert index.resolve(f"{IF_OPER_STATUS}.3") == Resolved(
        "IF-MIB", "ifOperStatus", "3", IF_OPER_STATUS
    )
    assert index.resolve(LINK_DOWN) == Resolved("IF-MIB", "linkDown", "", LINK_DOWN)


@pytest.mark.parametrize("oid", ["1.2.840.10045.2.1", "2.25.7", "7", ""])
def test_unknown_oid_is_none(index: MibIndex, oid: str) -> None:
    """Test that an OID none of whose prefixes a MIB knows resolves to None."""
    assert index.resolve(oid) is None


def test_longest_prefix_wins(tmp_path: Path) -> None:
    """Test that the deepest known node is chosen, not a shallower one above it."""
    module = MibModule(
        "TOCSIN-TEST-MIB",
        {
            "1.3.6.1.4.1.99999": MibNode("tocsinTestMIB"),
            "1.3.6.1.4.1.99999.1.1": MibNode("tocsinSeverity"),
        },
    )
    write(tmp_path / "mibs", "TOCSIN-TEST-MIB.json", module.dumps())
    loaded, problems = MibIndex.load([tmp_path / "mibs"])
    assert problems == []
    assert str(loaded.resolve("1.3.6.1.4.1.99999.1.1.0")) == "TOCSIN-TEST-MIB::tocsinSeverity.0"
    assert str(loaded.resolve("1.3.6.1.4.1.99999.1.2.0")) == "TOCSIN-TEST-MIB::tocsinTestMIB.1.2.0"
    assert str(loaded.resolve("1.3.6.1.4.1.99999")) == "TOCSIN-TEST-MIB::tocsinTestMIB"
    assert str(loaded.resolve("1.3.6.1.4.1.999990")) == "SNMPv2-SMI::enterprises.999990"


@pytest.mark.parametrize(
    ("node", "value", "label"),
    [
        (IF_OPER_STATUS, 2, "down"),
        (IF_OPER_STATUS, 1, "up"),
        (IF_OPER_STATUS, 7, "lowerLayerDown"),
        (IF_OPER_STATUS, 99, None),
        ("1.3.6.1.2.1.2.2.1.7", 2, "down"),  # ifAdminStatus
        ("1.3.6.1.2.1.2.2.1.3", 6, "ethernetCsmacd"),  # ifType: IANAifType, a TC of another MIB
        ("1.3.6.1.2.1.31.1.1.1.16", 1, "true"),  # ifPromiscuousMode: TruthValue (SNMPv2-TC)
        ("1.3.6.1.2.1.2.2.1.1", 1, None),  # ifIndex: an integer, not an enumeration
        ("1.3.6.1.4.1.99999.1", 1, None),  # no such node
    ],
)
def test_labels(index: MibIndex, node: str, value: int, label: str | None) -> None:
    """Test that INTEGER values get their enumeration label, also through a TC, else None."""
    assert index.label(node, value) == label


def test_later_folder_wins(tmp_path: Path) -> None:
    """Test that an OID defined again in a later folder takes the later name and labels."""
    oid = "1.3.6.1.4.1.99999.1.1"
    first = MibModule("A-MIB", {oid: MibNode("old", {1: "one"})})
    second = MibModule("B-MIB", {oid: MibNode("new")})
    write(tmp_path / "a", "A-MIB.json", first.dumps())
    write(tmp_path / "b", "B-MIB.json", second.dumps())
    loaded, _ = MibIndex.load([tmp_path / "a", tmp_path / "b"])
    assert str(loaded.resolve(oid)) == "B-MIB::new"
    assert loaded.label(oid, 1) is None
    loaded, _ = MibIndex.load([tmp_path / "b", tmp_path / "a"])
    assert str(loaded.resolve(oid)) == "A-MIB::old"
    assert loaded.label(oid, 1) == "one"


def test_operator_folder_overrides_shipped(tmp_path: Path, index: MibIndex) -> None:
    """Test that an operator's module replaces a shipped node and adds its own nodes."""
    module = MibModule("MY-IF-MIB", {IF_OPER_STATUS: MibNode("myOperStatus", {2: "gone"})})
    write(tmp_path / "mibs", "MY-IF-MIB.json", module.dumps())
    loaded, problems = MibIndex.load([tmp_path / "mibs"])
    assert problems == []
    assert str(loaded.resolve(f"{IF_OPER_STATUS}.1")) == "MY-IF-MIB::myOperStatus.1"
    assert loaded.label(IF_OPER_STATUS, 2) == "gone"
    assert len(loaded) == len(index)


def test_len_counts_nodes(index: MibIndex) -> None:
    """Test that len() is the number of distinct nodes in the shipped files."""
    oids = set()
    for path in SHIPPED.glob("*.json"):
        oids |= MibModule.loads(path.read_text()).nodes.keys()
    assert len(index) == len(oids) > 150


def test_dumps_loads_round_trip() -> None:
    """Test that the compiled format reads back what was written, labels included."""
    module = MibModule(
        "TOCSIN-TEST-MIB",
        {
            "1.3.6.1.4.1.99999.1.1": MibNode("tocsinSeverity", {-1: "none", 3: "critical"}),
            "1.3.6.1.4.1.99999.0.1": MibNode("tocsinAlarm"),
        },
    )
    text = module.dumps()
    assert MibModule.loads(text) == module
    assert text.splitlines()[1] == '"1.3.6.1.4.1.99999.0.1": {"name": "tocsinAlarm"},'
    assert MibModule.loads(MibModule("EMPTY-MIB", {}).dumps()) == MibModule("EMPTY-MIB", {})


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "{not json",
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        ("[]", "not a JSON object"),
        ('{"format": 2, "module": "X", "nodes": {}}', "format is 2, this tocsin reads 1"),
        ('{"module": "X", "nodes": {}}', "format is None, this tocsin reads 1"),
        ('{"format": 1, "module": "X", "nodes": {}, "extra": 1}', "unknown key 'extra'"),
        ('{"format": 1, "module": "", "nodes": {}}', '"module" must be a non-empty string'),
        ('{"format": 1, "module": "X", "nodes": []}', '"nodes" must be an object'),
        (
            '{"format": 1, "module": "X", "nodes": {".1.3": {"name": "a"}}}',
            "node '.1.3': not a numeric OID",
        ),
        (
            '{"format": 1, "module": "X", "nodes": {"1.03": {"name": "a"}}}',
            "node '1.03': not a numeric OID",
        ),
        ('{"format": 1, "module": "X", "nodes": {"1.3": "a"}}', "node 1.3: must be an object"),
        (
            '{"format": 1, "module": "X", "nodes": {"1.3": {"name": "a", "syntax": 1}}}',
            "node 1.3: unknown key 'syntax'",
        ),
        (
            '{"format": 1, "module": "X", "nodes": {"1.3": {"name": 5}}}',
            'node 1.3: "name" must be a non-empty string',
        ),
        (
            '{"format": 1, "module": "X", "nodes": {"1.3": {"name": "a", "enums": [1]}}}',
            'node 1.3: "enums" must be an object',
        ),
        (
            '{"format": 1, "module": "X", "nodes": {"1.3": {"name": "a", "enums": {"up": "1"}}}}',
            "node 1.3: \"enums\" must map integers to labels, not 'up'",
        ),
    ],
)
def test_bad_compiled_file_is_a_problem(tmp_path: Path, text: str, reason: str) -> None:
    """Test that a bad compiled file is reported with its reason and the good ones still load."""
    bad = write(tmp_path / "mibs", "BAD-MIB.json", text)
    good = MibModule("GOOD-MIB", {"1.3.6.1.4.1.99999": MibNode("good")})
    write(tmp_path / "mibs", "GOOD-MIB.json", good.dumps())
    loaded, problems = MibIndex.load([tmp_path / "mibs"])
    assert problems == [MibProblem(bad, reason)]
    assert str(loaded.resolve("1.3.6.1.4.1.99999.1")) == "GOOD-MIB::good.1"


def test_unreadable_files_are_problems(tmp_path: Path) -> None:
    """Test that a missing folder and a file that is not UTF-8 are problems, not exceptions."""
    bad = write(tmp_path / "mibs", "LATIN-MIB.json", "")
    bad.write_bytes(b'{"format": 1, "module": "\xe9"}')
    _, problems = MibIndex.load([tmp_path / "absent", tmp_path / "mibs"])
    assert [problem.file for problem in problems] == [tmp_path / "absent", bad]
    assert problems[0].reason == "not a folder"
    assert "can't decode byte 0xe9" in problems[1].reason
    assert str(problems[0]) == f"{tmp_path / 'absent'}: not a folder"


def test_cache_is_bounded(index: MibIndex) -> None:
    """Test that resolving many distinct OIDs keeps answering right past the cache size."""
    for port in range(20_000):
        found = index.resolve(f"{IF_OPER_STATUS}.{port}")
        assert found is not None
        assert found.instance == str(port)
    assert len(index._cache) <= 8192
    assert index.resolve(f"{IF_OPER_STATUS}.5") is index.resolve(f"{IF_OPER_STATUS}.5")
