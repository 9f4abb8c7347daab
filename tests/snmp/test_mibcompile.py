"""The MIB compiler: operator MIBs through pysmi into the compact format, failures reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from snmpkit import TEST_MIB
from tocsin.snmp.mibcompile import SHIPPED_SOURCES, CompileReport, compile_mibs
from tocsin.snmp.mibs import SHIPPED, MibIndex, MibProblem

V1_MIB = """\
TOCSIN-V1-MIB DEFINITIONS ::= BEGIN
IMPORTS
    enterprises FROM RFC1155-SMI
    OBJECT-TYPE FROM RFC-1212
    TRAP-TYPE FROM RFC-1215
    ifIndex FROM RFC1213-MIB;

tocsinV1 OBJECT IDENTIFIER ::= { enterprises 99998 }

V1Level ::= INTEGER { low(1), high(2) }

v1Level OBJECT-TYPE
    SYNTAX V1Level
    ACCESS read-only
    STATUS mandatory
    DESCRIPTION "A level, through a type assignment."
    ::= { tocsinV1 1 }

v1Broken TRAP-TYPE
    ENTERPRISE tocsinV1
    VARIABLES { v1Level, ifIndex }
    DESCRIPTION "An enterprise-specific SMIv1 trap."
    ::= 7
END
"""

BROKEN_MIB = """\
BROKEN-MIB DEFINITIONS ::= BEGIN
IMPORTS
    OBJECT-TYPE, enterprises FROM SNMPv2-SMI;
brokenRoot OBJECT IDENTIFIER ::= { enterprises 99997 }
brokenObject OBJECT-TYPE
    SYNTAX INTEGER { a(1)
    MAX-ACCESS read-only
    STATUS current
    DESCRIPTION "The enumeration is not closed."
    ::= { brokenRoot 1 }
END
"""

NEEDY_MIB = """\
NEEDY-MIB DEFINITIONS ::= BEGIN
IMPORTS
    OBJECT-TYPE FROM SNMPv2-SMI
    vendorRoot FROM VENDOR-SMI;
needyObject OBJECT-TYPE
    SYNTAX INTEGER { a(1) }
    MAX-ACCESS read-only
    STATUS current
    DESCRIPTION "Under a root from a MIB nobody has."
    ::= { vendorRoot 1 }
END
"""

CRASHY_MIB = """\
CRASHY-MIB DEFINITIONS ::= BEGIN
IMPORTS
    enterprises FROM RFC1155-SMI
    TRAP-TYPE FROM RFC-1215;
crashy OBJECT IDENTIFIER ::= { enterprises 99995 }
crashyTrap TRAP-TYPE
    ENTERPRISE crashy
    VARIABLES { crashy, crash(2) crashy }
    DESCRIPTION "pysmi 2.0 raises AttributeError on the stray crash(2)."
    ::= 1
END
"""


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, CompileReport]:
    """Compile an operator folder of good and bad MIBs; return (sources, out, report)."""
    root = tmp_path_factory.mktemp("mibcompile")
    sources = root / "mibs"
    sources.mkdir()
    (sources / "tocsin-test.my").write_text(TEST_MIB)  # the file name need not be the module's
    (sources / "TOCSIN-V1-MIB.txt").write_text(V1_MIB)
    (sources / "BROKEN-MIB.txt").write_text(BROKEN_MIB)
    (sources / "NEEDY-MIB.txt").write_text(NEEDY_MIB)
    (sources / "README").write_text("Our vendor MIBs.\n")
    (sources / "RFC1213-MIB.txt").write_text("RFC1213-MIB DEFINITIONS ::= BEGIN\nEND\n")
    out = root / "compiled"
    out.mkdir()
    (out / "GONE-MIB.json").write_text("{}")
    return sources, out, compile_mibs([sources], out)


def test_report(compiled: tuple[Path, Path, CompileReport]) -> None:
    """Test that the report lists what was written, what was left out and each failure."""
    sources, out, report = compiled
    assert report.compiled == ("TOCSIN-TEST-MIB", "TOCSIN-V1-MIB")
    assert sorted(path.name for path in out.iterdir()) == [
        "TOCSIN-TEST-MIB.json",
        "TOCSIN-V1-MIB.json",
    ]
    assert report.skipped == (
        MibProblem(
            sources / "RFC1213-MIB.txt", "RFC1213-MIB not written: pysmi maps it to SNMPv2 modules"
        ),
    )
    problems = {(problem.file.name, problem.reason) for problem in report.problems}
    assert ("README", "no MIB module in it (NAME DEFINITIONS ::= BEGIN)") in problems
    assert ("NEEDY-MIB.txt", "imports VENDOR-SMI, which is in no MIB folder") in problems
    assert len(problems) == 4


def test_broken_mib_is_reported_with_its_line(compiled: tuple[Path, Path, CompileReport]) -> None:
    """Test that a MIB with a syntax error is a problem naming its file, line and reason."""
    sources, _, report = compiled
    [broken] = [problem for problem in report.problems if problem.file.name == "BROKEN-MIB.txt"]
    assert broken.file == sources / "BROKEN-MIB.txt"
    assert broken.reason.startswith("line 7: Bad grammar")


def test_failed_import_is_reported(compiled: tuple[Path, Path, CompileReport]) -> None:
    """Test that a MIB whose import is missing is reported as not compiled, besides the import."""
    _, _, report = compiled
    reasons = [
        problem.reason for problem in report.problems if problem.file.name == "NEEDY-MIB.txt"
    ]
    assert len(reasons) == 2
    assert any("VENDOR-SMI" in reason and "NEEDY-MIB" in reason for reason in reasons)


def test_compiled_mibs_resolve(compiled: tuple[Path, Path, CompileReport]) -> None:
    """Test that an operator's compiled MIBs load next to the shipped ones and translate."""
    _, out, _ = compiled
    index, problems = MibIndex.load([out])
    assert problems == []
    assert str(index.resolve("1.3.6.1.4.1.99999.0.1")) == "TOCSIN-TEST-MIB::tocsinAlarm"
    assert str(index.resolve("1.3.6.1.4.1.99999.1.1.0")) == "TOCSIN-TEST-MIB::tocsinSeverity.0"
    assert str(index.resolve("1.3.6.1.4.1.99998.0.7")) == "TOCSIN-V1-MIB::v1Broken"
    assert str(index.resolve("1.3.6.1.6.3.1.1.5.3")) == "IF-MIB::linkDown"
    assert index.label("1.3.6.1.4.1.99999.1.1", 3) == "critical"  # its own TC
    assert index.label("1.3.6.1.4.1.99999.1.2", 2) == "false"  # TruthValue, from SNMPv2-TC
    assert index.label("1.3.6.1.4.1.99999.1.3", 1) is None  # BITS
    assert index.label("1.3.6.1.4.1.99998.1", 2) == "high"  # an SMIv1 type assignment


def test_later_folder_wins(tmp_path: Path) -> None:
    """Test that a module in two folders is taken from the later one, the other reported."""
    older, newer = tmp_path / "older", tmp_path / "newer"
    older.mkdir()
    newer.mkdir()
    (older / "TOCSIN-TEST-MIB.txt").write_text(TEST_MIB)
    (newer / "TOCSIN-TEST-MIB.txt").write_text(TEST_MIB.replace("tocsinAlarm", "tocsinAlert"))
    report = compile_mibs([older, newer], tmp_path / "out")
    assert report.compiled == ("TOCSIN-TEST-MIB",)
    assert report.problems == (
        MibProblem(
            older / "TOCSIN-TEST-MIB.txt",
            f"TOCSIN-TEST-MIB is also in {newer / 'TOCSIN-TEST-MIB.txt'}, which is used",
        ),
    )
    index, _ = MibIndex.load([tmp_path / "out"])
    assert str(index.resolve("1.3.6.1.4.1.99999.0.1")) == "TOCSIN-TEST-MIB::tocsinAlert"


def test_pysmi_crash_is_a_problem(tmp_path: Path) -> None:
    """Test that a MIB on which pysmi raises a stray exception is reported, the rest compiled."""
    (tmp_path / "CRASHY-MIB.txt").write_text(CRASHY_MIB)
    (tmp_path / "TOCSIN-TEST-MIB.txt").write_text(TEST_MIB)
    report = compile_mibs([tmp_path], tmp_path / "out")
    assert report.compiled == ("TOCSIN-TEST-MIB",)
    assert report.problems == (
        MibProblem(
            tmp_path / "CRASHY-MIB.txt",
            "pysmi failed on it: AttributeError(\"'tuple' object has no attribute 'replace'\")",
        ),
    )


def test_missing_folder_is_a_problem(tmp_path: Path) -> None:
    """Test that a source folder that does not exist is a problem, not an exception."""
    report = compile_mibs([tmp_path / "absent"], tmp_path / "out")
    assert report.compiled == ()
    assert [problem.file for problem in report.problems] == [tmp_path / "absent"]
    assert report.problems[0].reason.startswith("cannot list: ")


def test_shipped_json_is_reproducible(tmp_path: Path) -> None:
    """Test that compiling the shipped sources gives the shipped JSON, byte for byte."""
    report = compile_mibs([SHIPPED_SOURCES], tmp_path)
    assert report.problems == report.skipped == ()
    shipped = {path.name: path.read_text() for path in SHIPPED.glob("*.json")}
    assert {path.name: path.read_text() for path in tmp_path.glob("*.json")} == shipped
    assert "IF-MIB.json" in shipped


def test_unwritable_out_is_a_problem(tmp_path: Path) -> None:
    """Test that an output folder that cannot be made is a problem, not an exception."""
    (tmp_path / "mibs").mkdir()
    (tmp_path / "mibs" / "TOCSIN-TEST-MIB.txt").write_text(TEST_MIB)
    (tmp_path / "out").write_text("a file, not a folder")
    report = compile_mibs([tmp_path / "mibs"], tmp_path / "out")
    assert report.compiled == ()
    assert report.problems == (MibProblem(tmp_path / "out", "cannot write: File exists"),)
