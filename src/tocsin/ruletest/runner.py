"""`tocsin test PATH...`: run test files' cases and say what failed; the exit status is for CI
(0 every case passed, 1 some failed, 2 a test file cannot run)."""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import structlog

from tocsin.obs import configure_logging
from tocsin.ruletest.harness import CaseResult, SetupError, prepare, run_case
from tocsin.ruletest.spec import load_test_file
from tocsin.yamlsrc import SourceError

__all__ = ["EXIT_FAILED", "EXIT_PASSED", "EXIT_UNUSABLE", "FileResult", "main", "run_files"]

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_UNUSABLE = 2
SUFFIXES = (".test.yaml", ".test.yml")


@dataclass(slots=True)
class FileResult:
    """One test file: why it cannot run, or how its cases went."""

    path: Path
    problems: list[str] = field(default_factory=list)
    cases: list[CaseResult] = field(default_factory=list)


def find_files(paths: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """Files as given, and every *.test.yaml under the folders given; and the paths missing."""
    found: list[Path] = []
    missing: list[str] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(p for p in path.rglob("*") if p.name.endswith(SUFFIXES) and p.is_file())
            )
        elif path.is_file():
            found.append(path)
        else:
            missing.append(f"{path}: no such file or folder")
    return found, missing


async def run_files(
    paths: Sequence[Path], *, case: re.Pattern[str] | None = None
) -> list[FileResult]:
    """Run the cases of each file in turn (only those whose name `case` finds)."""
    results = []
    for path in paths:
        result = FileResult(path)
        results.append(result)
        try:
            spec = load_test_file(path)
        except SourceError as exc:
            result.problems.append(str(exc))
            continue
        with tempfile.TemporaryDirectory(prefix="tocsin-test-") as scratch:
            try:
                world = prepare(spec, Path(scratch))
            except SourceError as exc:
                result.problems.append(str(exc))
                continue
            except SetupError as exc:
                result.problems.extend(exc.problems)
                continue
            for one in spec.cases:
                if case is not None and case.search(one.name) is None:
                    continue
                try:
                    result.cases.append(await run_case(world, one))
                except Exception as exc:  # noqa: BLE001 - one broken case must not hide the rest
                    crashed = CaseResult(one.name, one.mark)
                    crashed.failures.append(f"{one.mark}: the case crashed: {exc!r}")
                    result.cases.append(crashed)
    return results


def report(results: Sequence[FileResult], out: TextIO, err: TextIO) -> int:
    """Print each case's outcome and the failures' diffs; return the exit status."""
    passed = failed = 0
    for result in results:
        if result.problems:
            out.flush()  # in order, when both go to one place
        for problem in result.problems:
            print(problem, file=err)
        for case in result.cases:
            if case.passed:
                passed += 1
                print(f"ok    {case.mark}: {case.name}", file=out)
                continue
            failed += 1
            print(f"FAIL  {case.mark}: {case.name}", file=out)
            for failure in case.failures:
                print(_indent(failure, "      "), file=out)
            for note in case.notes:
                print(f"      note: {note}", file=out)
    unusable = sum(1 for r in results if r.problems)
    summary = (
        f"{_count(len(results), 'file')}, {_count(passed + failed, 'case')}: "
        f"{passed} passed, {failed} failed"
    )
    if unusable:
        summary += f", {_count(unusable, 'file')} could not run"
    print(summary, file=out)
    if unusable:
        return EXIT_UNUSABLE
    return EXIT_FAILED if failed else EXIT_PASSED


def _count(number: int, what: str) -> str:
    return f"{number} {what}" if number == 1 else f"{number} {what}s"


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def main(paths: Sequence[Path], *, case: str | None = None, log_level: str = "critical") -> int:
    """The `tocsin test` command; the daemon's own log lines (none below `log_level`) go to
    stderr, apart from the report."""
    configure_logging(level=log_level, fmt="console" if sys.stderr.isatty() else "json")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    try:
        pattern = re.compile(case) if case is not None else None
    except re.error as exc:
        print(f"tocsin test: --case is not a valid regex: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    files, missing = find_files(paths)
    for problem in missing:
        print(f"tocsin test: {problem}", file=sys.stderr)
    if missing:
        return EXIT_UNUSABLE
    if not files:
        print("tocsin test: no test files (*.test.yaml) found", file=sys.stderr)
        return EXIT_UNUSABLE
    return report(asyncio.run(run_files(files, case=pattern)), sys.stdout, sys.stderr)
