"""The shipped unit, checked by systemd's own tools: no warnings, exposure at most 2.0."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tocsin.cli import EXIT_USAGE

SYSTEMD = Path(__file__).resolve().parents[1] / "systemd"
UNIT = SYSTEMD / "tocsin.service"
ANALYZE = shutil.which("systemd-analyze")
STOCK_UNITS = [Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")]
MAX_EXPOSURE = 2.0

pytestmark = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is missing (scripts/bootstrap test installs systemd)"
)


def setting(key: str) -> str:
    """Return the value of `key` in the unit (set once there)."""
    [value] = [
        line.split("=", 1)[1]
        for line in UNIT.read_text().splitlines()
        if line.startswith(f"{key}=")
    ]
    return value


def commands() -> list[list[str]]:
    """Return the argv of every Exec*= line of the unit, without the prefixes (-, @, +, !, :)."""
    found = []
    for line in UNIT.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.startswith("Exec"):
            argv = shlex.split(value)
            found.append([argv[0].lstrip("-@+!:"), *argv[1:]])
    return found


def host_tree(root: Path, *, stand_ins: bool = True) -> Path:
    """Lay out what the unit finds on a host under `root`: itself (byte for byte), the stock
    targets it orders against, and executable stand-ins for the programs it runs (verify
    checks that they exist). Return the unit's path inside the tree."""
    installed = root / "etc" / "systemd" / "system" / UNIT.name
    installed.parent.mkdir(parents=True)
    shutil.copyfile(UNIT, installed)
    stock = next(folder for folder in STOCK_UNITS if (folder / "sysinit.target").exists())
    targets = root / "usr" / "lib" / "systemd" / "system"
    targets.mkdir(parents=True)
    for target in stock.glob("*.target"):
        shutil.copyfile(target, targets / target.name)
    if stand_ins:
        for argv in commands():
            program = root / argv[0].lstrip("/")
            program.parent.mkdir(parents=True, exist_ok=True)
            program.write_text("#!/bin/sh\nexit 0\n")
            program.chmod(0o755)
    return Path("/") / installed.relative_to(root)


def verify(root: Path, unit: Path) -> tuple[int, str]:
    """Run `systemd-analyze verify` on the unit inside `root`; return its status and output."""
    assert ANALYZE is not None
    done = subprocess.run(
        [ANALYZE, "verify", f"--root={root}", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).strip()


def test_the_unit_verifies_without_a_single_warning(tmp_path: Path) -> None:
    """Test that systemd-analyze verify accepts the shipped unit and prints nothing."""
    assert verify(tmp_path, host_tree(tmp_path)) == (0, "")


def test_verify_would_catch_a_missing_program(tmp_path: Path) -> None:
    """Test that the check above can fail: without the programs, verify names ExecStart's."""
    status, output = verify(tmp_path, host_tree(tmp_path, stand_ins=False))
    assert status != 0
    assert "/opt/tocsin/bin/tocsin is not executable" in output


def test_the_exposure_is_at_most_two() -> None:
    """Test that systemd-analyze security rates the unit's exposure 2.0 or lower."""
    assert ANALYZE is not None
    done = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for tocsin\.service: (\d+\.\d+)", done.stdout)
    assert found is not None, done.stdout + done.stderr
    assert float(found[1]) <= MAX_EXPOSURE, done.stdout


def test_exec_start_is_a_command_line_tocsin_accepts() -> None:
    """Test that ExecStart's subcommand and options parse: tocsin then fails only because
    /etc/tocsin/tocsin.yaml is missing here, not with a usage error."""
    [start] = [argv for argv in commands() if argv[0].endswith("/tocsin")]
    missing = "/nonexistent/tocsin.yaml"
    args = [missing if arg == "/etc/tocsin/tocsin.yaml" else arg for arg in start[1:]]
    assert missing in args  # the config is where docs/install.md puts it
    done = subprocess.run(
        [sys.executable, "-m", "tocsin", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode not in (0, EXIT_USAGE), done.stderr
    assert missing in done.stderr


def test_sysusers_makes_the_user_and_group_the_unit_runs_as(tmp_path: Path) -> None:
    """Test that systemd-sysusers, given tocsin.sysusers.conf on a host without them, would
    create exactly the User= and Group= of the unit."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\nadm:x:4:\n")
    done = subprocess.run(
        [
            "systemd-sysusers",
            "--dry-run",
            f"--root={tmp_path}",
            str(SYSTEMD / "tocsin.sysusers.conf"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    made = re.findall(r"Creating (user|group) '([^']+)'", done.stdout + done.stderr)
    assert sorted(made) == [("group", setting("Group")), ("user", setting("User"))]


@pytest.mark.skipif(os.geteuid() != 0, reason="systemd-tmpfiles needs root to chown")
def test_tmpfiles_makes_the_config_folder_readable_by_tocsin_only(tmp_path: Path) -> None:
    """Test that tocsin.tmpfiles.conf makes /etc/tocsin owned by root, group the unit's, with
    the unit's ConfigurationDirectoryMode (else systemd warns at every start)."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\n")
    (tmp_path / "etc" / "shadow").touch()
    (tmp_path / "etc" / "gshadow").touch()
    for tool, conf in [("sysusers", "tocsin.sysusers.conf"), ("tmpfiles", "tocsin.tmpfiles.conf")]:
        extra = ["--create"] if tool == "tmpfiles" else []
        subprocess.run(
            [f"systemd-{tool}", f"--root={tmp_path}", *extra, str(SYSTEMD / conf)],
            capture_output=True,
            timeout=60,
            check=True,
        )
    group = {
        line.split(":")[0]: int(line.split(":")[2])
        for line in (tmp_path / "etc" / "group").read_text().splitlines()
    }
    folder = (tmp_path / "etc" / setting("ConfigurationDirectory")).stat()
    assert folder.st_uid == 0
    assert folder.st_gid == group[setting("Group")]
    assert stat.S_IMODE(folder.st_mode) == int(setting("ConfigurationDirectoryMode"), 8)
